"""A mesoslite master with the real DRF allocator on a loopback server, for the tests of roles,
reservations and quota (which the fakes' first-fit allocator does not model)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from mesoslite.allocator.drf import HierarchicalDRF
from mesoslite.flags import MasterConfig
from mesoslite.http import create_app
from mesoslite.master import MesosliteMaster


@contextlib.asynccontextmanager
async def drf_cluster() -> AsyncIterator[tuple[MesosliteMaster, str]]:
    config = MasterConfig(
        allocation_interval=0.02, heartbeat_interval=60.0, agent_reregister_timeout=0.0
    )
    master = MesosliteMaster(config, HierarchicalDRF())
    server = TestServer(create_app(master), host="127.0.0.1")
    await server.start_server()
    master.port = server.port or 0
    try:
        yield master, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def operator_call(url: str, call: dict[str, Any]) -> tuple[int, Any]:
    """POST /api/v1: (status, JSON body, or the text of an error)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/v1", json=call, headers={"Accept": "application/json"}) as resp,
    ):
        if resp.status == 200 and resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


def by_role(offers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Offers keyed by the role they are allocated to."""
    return {o["allocation_info"]["role"]: o for o in offers}


def amounts(offer: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(name, reservation role or '*') -> scalar amount of an offer's resources."""
    out: dict[tuple[str, str], float] = {}
    for r in offer["resources"]:
        if r["type"] == "SCALAR":
            role = r["reservations"][-1]["role"] if r.get("reservations") else "*"
            out[r["name"], role] = out.get((r["name"], role), 0.0) + r["scalar"]["value"]
    return out

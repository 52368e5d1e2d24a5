"""A scripted mesoslite agent and the smallest allocator, for tests of the mesoslite master.

`FakeAgent` speaks the agent protocol (mesoslite.agent's docstring) over real loopback HTTP and
lets the test write its task updates; `FirstFitAllocator` is the least an Allocator must do, so
that master tests do not depend on the DRF module.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import orjson

from mesoslite.allocator import Grant
from mesoslite.client import SchedulerClient
from mesoslite.http import AGENT_PATH
from mesoslite.protocol import task_status
from mesoslite.recordio import Decoder
from mesoslite.resources import Resources, attributes_to_mesos, parse_attributes

FRAMEWORK = {"user": "test", "name": "unit"}
MIN_CPUS = Resources.of(cpus=0.01)
MIN_MEM = Resources.of(mem=32)


class FirstFitAllocator:
    """The smallest Allocator: each agent's free resources go to the first willing framework."""

    def __init__(self) -> None:
        self.active: dict[str, bool] = {}
        self.total: dict[str, Resources] = {}
        self.held: dict[str, dict[str, Resources]] = {}  # agent -> framework -> resources
        self.filters: list[tuple[str, str, float, Resources]] = []

    def add_framework(self, framework_id: str, role: str, now: float) -> None:
        self.active[framework_id] = True
        self.revive(framework_id)

    def remove_framework(self, framework_id: str) -> None:
        self.active.pop(framework_id, None)

    def set_weight(self, role: str, weight: float) -> None:
        pass

    def add_agent(self, agent_id: str, total: Resources, allocated: dict[str, Resources]) -> None:
        self.total[agent_id] = total
        self.held[agent_id] = dict(allocated)

    def remove_agent(self, agent_id: str) -> None:
        del self.total[agent_id], self.held[agent_id]

    def allocate(self, now: float) -> list[Grant]:
        grants = []
        for aid in sorted(self.total):
            free = self.total[aid]
            for r in self.held[aid].values():
                free = free - r
            if not (free.contains(MIN_CPUS) or free.contains(MIN_MEM)):
                continue
            for fid in sorted(f for f, on in self.active.items() if on):
                if any(
                    f == fid and a == aid and until > now and r.contains(free)
                    for f, a, until, r in self.filters
                ):
                    continue
                grants.append(Grant(fid, aid, free))
                self.held[aid][fid] = self.held[aid].get(fid, Resources()) + free
                break
        return grants

    def recover(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        now: float,
        refuse_seconds: float | None = None,
    ) -> None:
        if agent_id not in self.held:
            return
        self.held[agent_id][framework_id] = self.held[agent_id][framework_id] - resources
        if refuse_seconds:
            self.filters.append((framework_id, agent_id, now + refuse_seconds, resources))

    def suppress(self, framework_id: str) -> None:
        self.active[framework_id] = False

    def revive(self, framework_id: str) -> None:
        self.active[framework_id] = True
        self.filters = [f for f in self.filters if f[0] != framework_id]


class FakeAgent:
    """Registers like a mesoslite agent; the test decides what its tasks do."""

    def __init__(self, url: str) -> None:
        self.url = url + AGENT_PATH
        self.http = aiohttp.ClientSession()
        self.id: str | None = None
        self.session: str | None = None
        self.unread: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.pongs: set[asyncio.Future[int]] = set()

    async def register(
        self,
        resources: str = "cpus:4;mem:4096;ports:[31000-31099]",
        attributes: str = "zone:a",
        agent_id: str | None = None,
        tasks: list[dict[str, Any]] | None = None,
    ) -> None:
        info: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": 5051,
            "resources": Resources.parse(resources).to_mesos(),
            "attributes": attributes_to_mesos(parse_attributes(attributes)),
        }
        if agent_id:
            info["id"] = {"value": agent_id}
        body = {"type": "REGISTER", "register": {"agent_info": info, "tasks": tasks or []}}
        resp = await self.http.post(
            self.url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
        )
        assert resp.status == 200, await resp.text()
        self.session = resp.headers["Mesoslite-Agent-Session"]
        self.reader = asyncio.create_task(self._read(resp))
        registered = await self.next_event("REGISTERED")
        self.id = registered["registered"]["agent_id"]["value"]

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        decoder = Decoder()
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            async for chunk in resp.content.iter_any():
                for event in (orjson.loads(r) for r in decoder.feed(chunk)):
                    if event["type"] == "PING":  # alive: answer at once, like a real agent
                        pong = asyncio.ensure_future(
                            self.post({"type": "PONG", "pong": event["ping"]})
                        )
                        self.pongs.add(pong)
                        pong.add_done_callback(self.pongs.discard)
                    else:
                        self.unread.append(event)
                self.arrived.set()
        resp.release()

    async def next_event(self, kind: str, timeout: float = 3.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for i, event in enumerate(self.unread):
                    if event["type"] == kind:
                        return self.unread.pop(i)
                self.arrived.clear()
                await self.arrived.wait()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.unread if e["type"] == kind]

    async def post(self, call: dict[str, Any]) -> int:
        headers = {
            "Content-Type": "application/json",
            "Mesoslite-Agent-Session": self.session or "",
        }
        body = {**call, "agent_id": {"value": self.id}}
        async with self.http.post(self.url, data=orjson.dumps(body), headers=headers) as resp:
            return resp.status

    async def update(
        self, framework_id: str, task_id: str, state: str, **kw: Any
    ) -> dict[str, Any]:
        status = task_status(task_id, state, agent_id=self.id, source="SOURCE_EXECUTOR", **kw)
        code = await self.post(
            {
                "type": "UPDATE",
                "update": {
                    "updates": [{"framework_id": {"value": framework_id}, "status": status}]
                },
            }
        )
        assert code == 202
        return status

    async def disconnect(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)

    async def close(self) -> None:
        await self.disconnect()
        await self.http.close()


async def offer(client: SchedulerClient) -> dict[str, Any]:
    event = await client.next_event("OFFERS")
    offers: list[dict[str, Any]] = event["offers"]["offers"]
    return offers[0]

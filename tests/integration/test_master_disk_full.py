"""`mantis master` on a full disk: a refused write changes nothing, and the master heals itself.

The master's data folder is a 1 MiB tmpfs. Once it is full, a change answers 507 naming the
store and is not shown by any read; the health check says why it is unhealthy; when space
returns the next change works without a restart, and a restarted master shows exactly what was
acknowledged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.cli.master import MasterProcess, MasterSettings
from tests.fakes import RecordingResourceManager
from tests.integration.disk import fill


def cluster(name: str) -> dict[str, Any]:
    stage = {"numberOfInstances": 1, "machineDefinition": {"cpuCores": 0.5, "memoryMB": 256}}
    return {
        "jobDefinition": {
            "name": name,
            "user": "alice",
            "jobJarFileLocation": f"http://artifacts.example/{name}.zip",
            "version": "1",
            "schedulingInfo": {"stages": {"1": stage}},
            "labels": [{"name": "padding", "value": "x" * 4000}],
        }
    }


async def names(http: aiohttp.ClientSession, url: str) -> list[str]:
    async with http.get(f"{url}/api/v1/jobClusters") as resp:
        body = await resp.json()
    return sorted(c["name"] for c in body["list"])


async def start(data_dir: Path) -> MasterProcess:
    master = MasterProcess(
        MasterSettings(data_dir=data_dir, port=0),
        resource_manager=lambda settings, loop, ids: RecordingResourceManager(),
    )
    await master.start()
    return master


@pytest.mark.timeout(60)
async def test_a_full_disk_refuses_changes_and_the_master_recovers_when_space_returns(
    disk: Path,
) -> None:
    master = await start(disk / "data")
    url = master.url
    try:
        async with aiohttp.ClientSession() as http:
            assert (
                await http.post(f"{url}/api/v1/jobClusters", json=cluster("kept"))
            ).status == 201
            filler = fill(disk)
            refused = []
            for i in range(5):  # a few, in case the first still fits in a page
                async with http.post(f"{url}/api/v1/jobClusters", json=cluster(f"c{i}")) as resp:
                    if resp.status != 201:
                        refused.append(i)
                        body = await resp.json()
                        assert resp.status == 507 and body["field"] == "store", body
                        assert "no space left" in body["error"]
            assert refused, "the full disk took every write"
            shown = await names(http, url)
            assert not {f"c{i}" for i in refused} & set(shown)
            async with http.get(f"{url}/api/v1/healthcheck") as health:
                assert health.status == 503
                assert "no space left" in (await health.json())["failureReason"]
            os.remove(filler)  # space returns: no restart needed
            async with http.post(f"{url}/api/v1/jobClusters", json=cluster("after")) as resp:
                assert resp.status == 201, await resp.text()
            assert (await http.get(f"{url}/api/v1/healthcheck")).status == 200
            acknowledged = await names(http, url)
            assert "after" in acknowledged and "kept" in acknowledged
    finally:
        await master.stop()
    again = await start(disk / "data")
    try:
        async with aiohttp.ClientSession() as http:
            assert await names(http, again.url) == acknowledged
    finally:
        await again.stop()


def test_the_fill_helper_leaves_no_byte(disk: Path) -> None:
    fill(disk)
    try:
        with open(disk / "more", "wb") as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        return
    raise AssertionError("the disk took another byte")

"""Two `mantis master --zk` processes on a real ZooKeeper and mesoslite: one leads, the other
redirects to it, and when the leader is SIGKILLed the other leads with every job kept."""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mesoslite.local import LocalCluster
from tests.eventually import eventually_value
from tests.integration.ha_masters import SESSION_TIMEOUT
from tests.integration.ha_masters import HaMaster as Master

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(tmp_path: Path, zookeeper: str) -> Iterator[tuple[list[Master], LocalCluster]]:
    mesos = LocalCluster(tmp_path / "mesos", 1).start()
    chroot = f"{zookeeper}/ha-{uuid.uuid4().hex[:8]}"
    masters = [Master(tmp_path, chroot, mesos.address) for _ in range(2)]
    try:
        yield masters, mesos
    finally:
        for m in masters:
            m.kill()
        mesos.stop()


async def info(http: aiohttp.ClientSession, master: Master) -> Any:
    try:
        async with http.get(f"{master.url}/api/v1/masterInfo") as resp:
            return await resp.json() if resp.status == 200 else None
    except aiohttp.ClientError:
        return None


async def leader_of(http: aiohttp.ClientSession, masters: list[Master]) -> Master | None:
    """The master that says it leads, once the others name it too."""
    infos = [await info(http, m) for m in masters]
    leading = [m for m, i in zip(masters, infos, strict=True) if i and i.get("isLeader")]
    if len(leading) != 1:
        return None
    others = [i for m, i in zip(masters, infos, strict=True) if m is not leading[0]]
    if all(i and (i.get("leader") or {}).get("url") == leading[0].url for i in others):
        return leading[0]
    return None


# Workers that no agent can take (more memory than it offers): no processes start.
CLUSTER = {"jobDefinition": {"name": "ha", "user": "t", "jobJarFileLocation": "/nonexistent/parked.py",
           "schedulingInfo": {"stages": {"1": {"numberOfInstances": 1,
                                               "machineDefinition": {"cpuCores": 0.1, "memoryMB": 20000}}}}}}  # fmt: skip


async def test_the_follower_redirects_and_takes_over_with_every_job(
    cluster: tuple[list[Master], LocalCluster],
) -> None:
    masters, _ = cluster
    async with aiohttp.ClientSession() as http:
        leader = await eventually_value(lambda: leader_of(http, masters), "one leader", 60)
        follower = next(m for m in masters if m is not leader)
        # a write sent to the follower reaches the leader (307 keeps the method and the body)
        async with http.post(f"{follower.url}/api/v1/jobClusters", json=CLUSTER) as r:
            assert r.status == 201, await r.text()
        async with http.post(f"{follower.url}/api/v1/jobs", json={"name": "ha", "user": "t"}) as r:
            assert r.status == 201, await r.text()
            jid = (await r.json())["jobMetadata"]["jobId"]
        leader.kill()
        killed_at = time.monotonic()
        answers: set[int] = set()

        async def leads() -> Master | None:
            """Asked all along, the follower's port answers: redirects, then 503 while it
            recovers, then as the leader; it never refuses a connection."""
            async with http.get(f"{follower.url}/api/v1/healthcheck") as r:
                answers.add(r.status)
            return await leader_of(http, [follower])

        new = await eventually_value(leads, "the follower leads", 30)
        took = time.monotonic() - killed_at
        assert answers <= {200, 503}, answers
        print(f"failover: {took:.2f} s")
        assert new is follower
        assert took <= SESSION_TIMEOUT + 2 + 3, f"took {took:.1f} s"  # + start-up of the new leader
        async with http.get(f"{follower.url}/api/v1/jobs/{jid}") as r:
            assert r.status == 200, await r.text()
        async with http.post(f"{follower.url}/api/v1/jobs", json={"name": "ha", "user": "t"}) as r:
            assert r.status == 201, await r.text()
            assert (await r.json())["jobMetadata"]["jobId"] != jid


async def test_a_frozen_leader_is_replaced_and_on_waking_writes_nothing_and_steps_down(
    cluster: tuple[list[Master], LocalCluster], zookeeper: str
) -> None:
    masters, _ = cluster
    async with aiohttp.ClientSession() as http:
        leader = await eventually_value(lambda: leader_of(http, masters), "one leader", 60)
        follower = next(m for m in masters if m is not leader)
        async with http.post(f"{leader.url}/api/v1/jobClusters", json=CLUSTER) as r:
            assert r.status == 201, await r.text()
        leader.process.send_signal(signal.SIGSTOP)  # frozen: its session expires meanwhile
        try:
            new = await eventually_value(
                lambda: leader_of(http, [follower]), "the follower leads", 30
            )
            assert new is follower
            async with http.post(
                f"{follower.url}/api/v1/jobs", json={"name": "ha", "user": "t"}
            ) as r:
                assert r.status == 201, await r.text()
        finally:
            leader.process.send_signal(signal.SIGCONT)
        # Awake, the old leader finds its session gone: it stops acting and exits (status 3).
        assert await asyncio.to_thread(leader.process.wait, 20) == 3
        async with http.get(f"{follower.url}/api/v1/jobs") as r:
            jobs = [j["jobMetadata"]["jobId"] for j in (await r.json())["list"]]
        assert jobs == ["ha-1"], "exactly the new leader's one submission"


@pytest.mark.timeout(180)
async def test_acknowledged_submissions_survive_seeded_leader_kills(
    cluster: tuple[list[Master], LocalCluster], tmp_path: Path
) -> None:
    """300 submissions through whichever master answers, the leader SIGKILLed at 3 seeded
    moments (and started again as a candidate): every 201 is kept, no job id repeats."""
    masters, mesos = cluster
    rng = random.Random(12)
    kill_at = sorted(rng.sample(range(20, 280), 3))
    zk = masters[0].zk
    acknowledged: list[str] = []
    async with aiohttp.ClientSession() as http:
        leader = await eventually_value(lambda: leader_of(http, masters), "one leader", 60)
        async with http.post(f"{leader.url}/api/v1/jobClusters", json=CLUSTER) as r:
            assert r.status == 201, await r.text()
        for i in range(300):
            if kill_at and i == kill_at[0]:
                kill_at.pop(0)
                leader = await eventually_value(lambda: leader_of(http, masters), "a leader", 60)
                leader.kill()
                masters.remove(leader)
                masters.append(Master(tmp_path, zk, mesos.address))  # its supervisor restarts it
            while True:  # a client retries on another master until one answers
                target = masters[i % len(masters)]
                try:
                    async with http.post(
                        f"{target.url}/api/v1/jobs", json={"name": "ha", "user": "t"}
                    ) as r:
                        if r.status == 201:
                            acknowledged.append((await r.json())["jobMetadata"]["jobId"])
                            break
                except aiohttp.ClientError:
                    pass
                i += 1
                await asyncio.sleep(0.05)
        leader = await eventually_value(lambda: leader_of(http, masters), "a leader", 60)
        missing = []
        for jid in acknowledged:
            async with http.get(f"{leader.url}/api/v1/jobs/{jid}") as r:
                if r.status != 200:
                    missing.append(jid)
    assert len(acknowledged) == 300 and len(set(acknowledged)) == 300
    assert not missing, f"{len(missing)} acknowledged jobs lost, e.g. {missing[:3]}"

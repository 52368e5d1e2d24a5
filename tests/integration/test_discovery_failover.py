"""Workers and the CLI across a failover: two `mantis master --zk` on a real ZooKeeper and
mesoslite run a three-stage job; the leader is SIGKILLed, and the job's worker processes go on
heartbeating to the new leader (found in ZooKeeper), which keeps them (none replaced), while
`mantis job list --zk` finds the job there.

The job heartbeats every second with a 2 s worker timeout (3 s of tolerance): a worker that
kept calling the dead leader would be Lost and replaced well within the time observed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from mesoslite.local import LocalCluster
from tests.eventually import eventually, eventually_value
from tests.integration.ha_masters import HaMaster as Master
from tests.integration.workers import JOBS, ROOT

pytestmark = pytest.mark.timeout(90)
HEARTBEAT, WORKER_TIMEOUT = 1.0, 2.0
TOLERANCE = WORKER_TIMEOUT * 1.5  # core.control.ControlConfig.heartbeat_tolerance


@pytest.fixture
def cluster(tmp_path: Path, zookeeper: str) -> Iterator[tuple[list[Master], str]]:
    mesos = LocalCluster(tmp_path / "mesos", 1).start()
    chroot = f"{zookeeper}/discovery-{uuid.uuid4().hex[:8]}"
    masters = [Master(tmp_path, chroot, mesos.address, "--tick-secs", "0.2") for _ in range(2)]
    try:
        yield masters, chroot
    finally:
        for m in masters:
            m.kill()
        mesos.stop()


async def leading(http: aiohttp.ClientSession, masters: list[Master]) -> Master | None:
    for m in masters:
        try:
            async with http.get(f"{m.url}/api/v1/masterInfo") as resp:
                if resp.status == 200 and (await resp.json()).get("isLeader"):
                    return m
        except aiohttp.ClientError:
            continue
    return None


async def started(http: aiohttp.ClientSession, url: str) -> dict[int, int]:
    """Worker number -> stage of the job's Started workers, as the master at `url` sees them."""
    try:
        async with http.get(url) as resp:
            job = await resp.json() if resp.status == 200 else None
    except aiohttp.ClientError:
        return {}
    workers = (job or {}).get("workerMetadataList") or []
    return {w["workerNumber"]: w["stageNum"] for w in workers if w["state"] == "Started"}


def worker_processes(job_id: str) -> dict[tuple[int, int, int], int]:
    """(stage, index, number) -> pid of the job's live worker processes (their MANTIS_*)."""
    found: dict[tuple[int, int, int], int] = {}
    for entry in Path("/proc").iterdir():
        try:
            raw = (entry / "environ").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        env = dict(v.split(b"=", 1) for v in raw.split(b"\0") if b"=" in v)
        if env.get(b"MANTIS_JOB_ID") == job_id.encode():
            stage, index, number = (
                int(env[k])
                for k in (b"MANTIS_STAGE", b"MANTIS_WORKER_INDEX", b"MANTIS_WORKER_NUMBER")
            )
            found[(stage, index, number)] = int(entry.name)
    return found


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MANTIS_API_TOKEN", None)
    argv = [sys.executable, "-m", "adapters.cli.main", *args]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


async def test_workers_follow_the_new_leader_and_keep_heartbeating(
    cluster: tuple[list[Master], str],
) -> None:
    masters, zk = cluster
    name = f"disc-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as http:
        leader = await eventually_value(lambda: leading(http, masters), "a leader", 60)
        assert leader is not None
        follower = next(m for m in masters if m is not leader)
        # the CLI finds the leader in ZooKeeper
        create = cli("cluster", "create", name, "--zk", zk, "--artifact", str(JOBS / "counter.py"),
                     "--stages", "1:1,2:1,3:1", "--cpus", "0.2", "--memory", "128",
                     "--param", f"mantis.job.worker.heartbeat.interval.secs={HEARTBEAT:g}",
                     "--param", f"mantis.job.worker.timeout.secs={WORKER_TIMEOUT:g}")  # fmt: skip
        assert create.returncode == 0, create.stderr
        submit = cli("job", "submit", name, "--zk", zk, "--json")
        assert submit.returncode == 0, submit.stderr
        jid = orjson.loads(submit.stdout)["jobMetadata"]["jobId"]
        before = await eventually_value(
            lambda: all_started(http, f"{leader.url}/api/v1/jobs/{jid}"), "3 Started", 60
        )
        pids = worker_processes(jid)
        assert len(pids) == 3

        leader.kill()
        killed_at = time.time()
        await eventually_value(lambda: leading(http, [follower]), "the follower leads", 30)
        leads_at = time.time()
        job_url = f"{follower.url}/api/v1/jobs/{jid}"

        def statuses_since(t: float) -> list[float]:
            return [at for at, status in follower.status_posts() if at > t and status < 300]

        await eventually(lambda: statuses_since(killed_at), "a status at the new leader", 15)
        first = min(statuses_since(killed_at))

        async def kept_until(deadline: float) -> bool:
            """The same workers are Started at the new leader, at every look until `deadline`."""
            assert await started(http, job_url) == before, "a worker was lost or replaced"
            return time.time() >= deadline

        # for twice the heartbeat tolerance after it leads, none is lost or replaced
        watched = 2 * TOLERANCE
        await eventually_value(
            lambda: kept_until(leads_at + watched), "the watch", watched + 10, interval=0.2
        )
        heartbeats = len(statuses_since(leads_at))
        assert heartbeats >= 3 * watched / HEARTBEAT / 2, f"{heartbeats} statuses in {watched} s"
        assert worker_processes(jid) == pids, "the same worker processes"
        print(
            f"leader SIGKILLed; the follower led {leads_at - killed_at:.2f} s later; the first "
            f"status reached it {first - killed_at:.2f} s after the kill; {heartbeats} statuses "
            f"from the 3 workers in the {time.time() - leads_at:.1f} s since it leads"
        )
        listed = cli("job", "list", "--zk", zk, "--json")
        assert listed.returncode == 0, listed.stderr
        assert jid in listed.stdout


async def all_started(http: aiohttp.ClientSession, url: str) -> dict[int, int] | None:
    found = await started(http, url)
    return found if len(found) == 3 else None

"""End to end: `mantis up` in a subprocess (mesoslite, 2 agents, the master), driven over HTTP.

Worker processes are found through /proc (their MANTIS_* environment), the master through the
pid file it writes in the data folder; `mantis up` starts a killed master again. The API needs
the token `mantis up` generated (`<data>/api-token`): the tests' sessions send it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from common.sse_client import sse_payloads
from mesoslite.local import free_port
from tests.eventually import eventually_value, wait_until
from tests.integration.up_process import UpProcess, nothing_left
from tests.integration.workers import JOBS

pytestmark = pytest.mark.timeout(240)

USER = {"user": "e2e"}


def stages(*workers: int, memory: int = 128) -> dict[str, Any]:
    machine = {"cpuCores": 0.2, "memoryMB": memory}
    return {
        "stages": {
            str(n): {"numberOfInstances": k, "machineDefinition": machine}
            for n, k in enumerate(workers, 1)
        }
    }


def cluster(name: str, artifact: str, *workers: int, memory: int = 128) -> dict[str, Any]:
    return {
        "jobDefinition": {
            "name": name,
            "user": "e2e",
            "jobJarFileLocation": artifact,
            "schedulingInfo": stages(*workers, memory=memory),
        }
    }


class Up(UpProcess):
    """A `mantis up` process with two agents, and what the tests need to know of it."""

    def __init__(self, data: Path, *options: str) -> None:
        super().__init__(
            data, free_port(), "--agents", "2", *options, console=data.parent / "up.out"
        )

    def session(self) -> aiohttp.ClientSession:
        """An HTTP session that sends the API token `mantis up` wrote to the data folder."""
        token = (self.data / "api-token").read_text().strip()
        return aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})

    def master_pid(self) -> int:
        return int((self.data / "master.pid").read_text())

    def workers(self, job_id: str) -> dict[tuple[int, int, int], int]:
        """(stage, index, number) -> pid of the job's live worker processes."""
        found: dict[tuple[int, int, int], int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "environ").read_bytes()
            except OSError:
                continue
            env = dict(v.split(b"=", 1) for v in raw.split(b"\0") if b"=" in v)
            if env.get(b"MANTIS_JOB_ID") == job_id.encode():
                key = tuple(
                    int(env[k])
                    for k in (b"MANTIS_STAGE", b"MANTIS_WORKER_INDEX", b"MANTIS_WORKER_NUMBER")
                )
                found[key] = int(entry.name)  # type: ignore[index]
        return found

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    data = tmp_path_factory.mktemp("e2e") / "data"
    cluster_up = Up(data)
    wait_until(lambda: answers_healthy(cluster_up.url), f"{cluster_up.url} healthy", 60)
    yield cluster_up
    assert cluster_up.stop() == 0
    nothing_left(data)


def answers_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/v1/healthcheck", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def healthy(url: str, timeout: float = 60) -> None:
    await eventually_value(
        lambda: asyncio.to_thread(answers_healthy, url), f"{url} healthy", timeout
    )


async def poll(check: Any, what: str, timeout: float = 60) -> Any:
    return await eventually_value(check, what, timeout)


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        return await resp.json() if resp.status == 200 else None


def started(job: Any) -> dict[int, Any]:
    """Worker number -> worker, for the Started workers of a job view."""
    return {w["workerNumber"]: w for w in job["workerMetadataList"] if w["state"] == "Started"}


async def stream(http: aiohttp.ClientSession, url: str, into: list[Any]) -> None:
    async for payloads in sse_payloads(http, url):
        into.extend(orjson.loads(p) for p in payloads)


@pytest.mark.timeout(120)
async def test_submit_stream_and_a_sigkilled_worker_is_replaced(up: Up) -> None:
    async with up.session() as http:
        async with http.post(
            up.url + "/api/v1/jobClusters",
            json=cluster("counter", str(JOBS / "counter.py"), 1, 1, 1),
        ) as r:
            assert r.status == 201, await r.text()
        async with http.post(up.url + "/api/v1/jobs", json={"name": "counter", **USER}) as r:
            assert r.status == 201, await r.text()
            jid = (await r.json())["jobMetadata"]["jobId"]
        job_url = f"{up.url}/api/v1/jobs/{jid}"
        await poll(lambda: _all_started(http, job_url, 3), "3 workers Started")
        got: list[Any] = []
        reader = asyncio.create_task(stream(http, f"{up.url}/jobconnectbyid/{jid}", got))
        await poll(lambda: _true(len(got) > 200), "output")

        pids = up.workers(jid)
        ((sink_key, sink_pid),) = [(k, p) for k, p in pids.items() if k[0] == 3]
        os.kill(sink_pid, signal.SIGKILL)

        async def replaced() -> bool:
            job = await get_json(http, job_url)
            return any(w["stageNum"] == 3 and n > sink_key[2] for n, w in started(job).items())

        await poll(replaced, "a replacement sink worker Started")
        new = max(k[2] for k in up.workers(jid) if k[0] == 3)
        await poll(lambda: _true(any(e["s3"] == new for e in got)), "output through it")
        reader.cancel()


@pytest.mark.timeout(120)
async def test_master_sigkill_keeps_jobs_and_running_workers(up: Up) -> None:
    async with up.session() as http:
        jobs = await get_json(http, up.url + "/api/v1/jobs")
        (job,) = [j for j in jobs["list"] if j["jobMetadata"]["name"] == "counter"]
        jid = job["jobMetadata"]["jobId"]
        before = started(await get_json(http, f"{up.url}/api/v1/jobs/{jid}"))
        pids = up.workers(jid)
        old_master = up.master_pid()
        os.kill(old_master, signal.SIGKILL)
        await poll(lambda: _true(_pid_changed(up, old_master)), "a new master")
        await healthy(up.url)
        # give the master a few heartbeat rounds: nothing may be replaced or killed
        after = await poll(
            lambda: _all_started(http, f"{up.url}/api/v1/jobs/{jid}", 3),
            "the job's workers, recovered",
        )
        assert set(started(after)) == set(before), "the same workers, none replaced"
        assert up.workers(jid) == pids, "the same worker processes"
        got: list[Any] = []
        reader = asyncio.create_task(stream(http, f"{up.url}/jobconnectbyid/{jid}", got))
        await poll(lambda: _true(len(got) > 100), "output after the restart")
        reader.cancel()


@pytest.mark.timeout(200)
async def test_every_acknowledged_submission_survives_random_master_kills(up: Up) -> None:
    rng = random.Random(7)

    async with up.session() as http:
        # workers that cannot be placed (more memory than an agent has): no processes
        async with http.post(
            up.url + "/api/v1/jobClusters",
            json=cluster("parked", str(JOBS / "counter.py"), 1, memory=20000),
        ) as r:
            assert r.status == 201, await r.text()
        acknowledged: list[str] = []
        killed: list[int] = []
        kill_at = sorted(rng.sample(range(10, 290), 4))
        for i in range(300):
            if kill_at and i == kill_at[0]:
                kill_at.pop(0)
                await healthy(up.url)  # kill a serving master, not one still starting
                killed.append(up.master_pid())
                os.kill(killed[-1], signal.SIGKILL)
            try:
                async with http.post(up.url + "/api/v1/jobs", json={"name": "parked", **USER}) as r:
                    if r.status == 201:
                        acknowledged.append((await r.json())["jobMetadata"]["jobId"])
            except (aiohttp.ClientError, ConnectionError):
                await healthy(up.url)  # the master is coming back; go on submitting
        await healthy(up.url)
        assert len(set(killed)) == 4 and up.master_pid() not in killed
        assert len(acknowledged) >= 250 and len(set(acknowledged)) == len(acknowledged)
        missing = [
            j for j in acknowledged if await get_json(http, f"{up.url}/api/v1/jobs/{j}") is None
        ]
        assert not missing, f"{len(missing)} acknowledged jobs lost, e.g. {missing[:3]}"


async def _all_started(http: aiohttp.ClientSession, url: str, n: int) -> Any:
    job = await get_json(http, url)
    return job if job is not None and len(started(job)) == n else None


async def _true(value: bool) -> bool:
    return value


def _pid_changed(up: Up, old: int) -> bool:
    try:
        return up.master_pid() != old
    except (OSError, ValueError):
        return False


@pytest.mark.timeout(120)
async def test_mantis_up_example_prints_the_example_jobs_output(tmp_path: Path) -> None:
    """What `make run` does: the example job's counts per key and second reach stdout."""
    example = Up(tmp_path / "data", "--example")
    try:

        async def counts() -> list[Any]:
            lines = example.console_path.read_bytes().splitlines()
            return [orjson.loads(line) for line in lines if line.startswith(b'{"key"')]

        windows = await poll(counts, "the example's output", timeout=60)
        assert {"key", "count", "start", "end"} <= set(windows[0])
    finally:
        assert example.stop() == 0
    assert b"mantis stopped." in example.console_path.read_bytes()

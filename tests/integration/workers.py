"""A master on loopback with real worker processes, and what tests ask of it.

`LocalMaster` is `adapters.cli.local.ProcessMaster` (the real `MasterService` on a local
agent that runs each worker as a process) plus the questions tests ask: which workers are
Started, which process serves a slot, and `until` to poll with a deadline (tests.eventually).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from adapters.cli.local import ProcessMaster
from adapters.local.agent import HOST, free_port
from common.sse import SseParser
from core.job import JobState
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from tests.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]
JOBS = Path(__file__).resolve().parent / "jobs"
__all__ = ["HOST", "JOBS", "ROOT", "LocalMaster", "free_port", "local_master", "read_sse"]


class LocalMaster(ProcessMaster):
    """See the module docstring; `master` is the service."""

    def __init__(
        self, tmp: Path, heartbeat_secs: float = 0.5, api_token: str | None = None
    ) -> None:
        super().__init__(tmp, heartbeat_secs, api_token, env={"PYTHONPATH": str(ROOT)})
        self.master = self.service
        self.tmp = tmp

    async def counter_job(self, cluster: str = "counter", **request: Any) -> str:
        """Submit jobs/counter.py (3 single-worker stages) and wait until it is Started."""
        jid = self.submit(cluster, JOBS / "counter.py", [1, 1, 1], **request)
        await self.until(lambda: len(self.started(jid)) == 3, f"{jid}: 3 workers Started")
        return jid

    def job_state(self, jid: str) -> JobState:
        return self.master.plane.job(jid).state

    def kill(self, jid: str) -> None:
        """Kill a job (its workers get SIGTERM)."""
        self.master.run(lambda p, now: p.kill_job(jid, "test", "done", now))

    async def until(self, predicate: Any, what: str, timeout: float = 40.0) -> None:
        """Poll until `predicate()` holds; fail with the workers' logs."""
        await eventually(predicate, what, timeout, describe=self.logs)


@contextlib.asynccontextmanager
async def local_master(tmp: Path, api_token: str | None = None) -> AsyncIterator[LocalMaster]:
    """A started LocalMaster, closed (its workers stopped) on the way out."""
    master = LocalMaster(tmp, api_token=api_token)
    await master.start()
    try:
        yield master
    finally:
        await master.close()


async def read_sse(
    session: aiohttp.ClientSession, url: str, into: list[Any], stop: asyncio.Event | None = None
) -> None:
    """Append the JSON events of an SSE stream to `into` until it ends (or `stop`)."""
    parser = SseParser()
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        assert resp.status == 200, await resp.text()
        async for chunk in resp.content.iter_any():
            into.extend(orjson.loads(data) for data in parser.feed(chunk))
            if stop is not None and stop.is_set():
                return


def scalable_cluster(name: str, artifact: Path) -> JobClusterDefinition:
    """A cluster of `artifact`: one stage-1 worker, then a scalable stage of three."""
    info = SchedulingInfo(
        (
            StageSchedulingInfo(1, MachineDefinition(0.1, 64)),
            StageSchedulingInfo(3, MachineDefinition(0.1, 64), scalable=True),
        )
    )
    config = JobClusterConfig("job.py", "1", time.time(), info, job_jar_url=str(artifact))
    return JobClusterDefinition(name, (config,))

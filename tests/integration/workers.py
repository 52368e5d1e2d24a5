"""A master on loopback with real worker processes: the real service on a local agent.

`LocalMaster` runs `service.master.MasterService` (the same master `mantis master` runs) with
an in-memory store, the HTTP adapter on loopback, and `LocalAgent` as its resource manager:
one agent on this machine that runs each worker (`python -m runtime.worker`) as a process.
A background task steps the agent every 20 ms; tests wait by polling (`until`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from adapters.http.app import create_app, serve
from adapters.store.memory import MemoryStore
from core.job import JobState
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    ParameterValue,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.worker import WorkerState
from service.master import MasterService
from service.worker_task import WorkerTaskSettings
from tests.integration.local_agent import HOST, LocalAgent, LocalTask, free_port

ROOT = Path(__file__).resolve().parents[2]
JOBS = Path(__file__).resolve().parent / "jobs"
__all__ = ["HOST", "JOBS", "ROOT", "LocalMaster", "free_port", "read_sse"]


@dataclass
class LocalMaster:
    """The master's service and HTTP API on loopback, with workers as local processes."""

    tmp: Path
    heartbeat_secs: float = 0.5
    api_token: str | None = None
    agent: LocalAgent = field(init=False)
    master: MasterService = field(init=False)
    url: str = ""
    _runner: web.AppRunner | None = None
    _stepper: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.agent = LocalAgent(self.tmp, env={"PYTHONPATH": str(ROOT)})
        self.master = MasterService(MemoryStore(), self.agent)

    async def start(self) -> None:
        app = create_app(self.master, heartbeat_secs=1.0, api_token=self.api_token)
        self._runner, port = await serve(app, HOST)
        self.url = f"http://{HOST}:{port}"
        self.master.worker_tasks = WorkerTaskSettings(
            master_url=self.url, command=f"{sys.executable} -m runtime.worker",
            artifact_cache=self.tmp / "artifact-cache", api_token=self.api_token or "",
            heartbeat_secs=self.heartbeat_secs,
        )  # fmt: skip
        self.master.start()
        self._stepper = asyncio.create_task(self._step_forever())

    async def _step_forever(self) -> None:
        while True:
            self.agent.step()
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._stepper is not None:
            self._stepper.cancel()
        self.agent.close()
        self.master.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def processes(self) -> dict[str, LocalTask]:
        return self.agent.tasks

    # -- jobs ----------------------------------------------------------------------------------

    def submit(
        self, cluster: str, artifact: str | Path, stages: list[int],
        parameters: Mapping[str, Any] | None = None, **request: Any,
    ) -> str:  # fmt: skip
        """Create `cluster` (if new) with one stage per entry (its worker count) and submit a
        job running `artifact` (more JobRequest fields in `request`); returns the job id."""
        plane = self.master.plane
        if cluster not in plane.clusters:
            info = SchedulingInfo(tuple(
                StageSchedulingInfo(n, MachineDefinition(0.1, 64)) for n in stages
            ))  # fmt: skip
            config = JobClusterConfig("job.py", "1", time.time(), info, job_jar_url=str(artifact))
            definition = JobClusterDefinition(cluster, (config,))
            self.master.run(lambda p, now: p.create_cluster(definition, now))
        params = tuple(ParameterValue(k, str(v)) for k, v in (parameters or {}).items())
        job_request = JobRequest(parameters=params, job_jar_url=str(artifact), **request)
        outcome = self.master.run(lambda p, now: p.submit_job(cluster, job_request, "test", now))
        assert outcome.job_id is not None
        return outcome.job_id

    async def counter_job(self, cluster: str = "counter", **request: Any) -> str:
        """Submit jobs/counter.py (3 single-worker stages) and wait until it is Started."""
        jid = self.submit(cluster, JOBS / "counter.py", [1, 1, 1], **request)
        await self.until(lambda: len(self.started(jid)) == 3, f"{jid}: 3 workers Started")
        return jid

    def kill(self, jid: str) -> None:
        """Kill a job (its workers get SIGTERM)."""
        self.master.run(lambda p, now: p.kill_job(jid, "test", "done", now))

    def workers(self, jid: str, state: WorkerState | None = None) -> list[Any]:
        return [w for w in self.master.plane.workers.values()
                if w.job_id == jid and (state is None or w.state is state)]  # fmt: skip

    def started(self, jid: str, stage: int | None = None) -> list[Any]:
        return [w for w in self.workers(jid, WorkerState.Started)
                if stage is None or w.stage == stage]  # fmt: skip

    def job_state(self, jid: str) -> JobState:
        return self.master.plane.job(jid).state

    def process(self, jid: str, stage: int, index: int) -> LocalTask:
        """The live process of a job's (stage, index)."""
        for w in self.workers(jid):
            if w.stage == stage and w.index == index and not w.terminal:
                return self.processes[w.worker_id]
        raise KeyError(f"no live worker for {jid} stage {stage} index {index}")

    def logs(self) -> str:
        """Every worker's output, for assertion messages."""
        return "\n".join(f"--- {p.task_id}\n{p.log.read_text()[-3000:]}"
                         for p in self.processes.values())  # fmt: skip

    async def until(self, predicate: Any, what: str, timeout: float = 40.0) -> None:
        """Poll until `predicate()` holds; fail with the workers' logs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if predicate():
                return
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            await asyncio.sleep(0.02)


async def read_sse(
    session: aiohttp.ClientSession, url: str, into: list[Any], stop: asyncio.Event | None = None
) -> None:
    """Append the JSON events of an SSE stream to `into` until it ends (or `stop`)."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if line.startswith(b"data: "):
                into.append(orjson.loads(line[6:]))
            if stop is not None and stop.is_set():
                return

"""A master on loopback with real worker processes, for runtime tests before `mantis up`.

`LocalMaster` serves the HTTP adapter on a real ControlPlane and plays the agent: it launches
`python -m runtime.worker` for every launch request (respecting its back-off), reports a
process's exit as a Mesos task status, and turns kill effects into SIGTERM. Tests drive it
by polling (`until`) while a background task steps the agent every 20 ms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from adapters.cli.master import task_environment
from adapters.http.app import create_app, serve
from adapters.http.master_api import MasterApi
from core.control import ControlPlane
from core.effects import KillTask, LaunchRequest
from core.job import JobState
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    Parameter,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.ports import TaskStatus
from core.worker import WorkerState

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
JOBS = Path(__file__).resolve().parent / "jobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    worker_id: str
    popen: subprocess.Popen[bytes]
    log: Path
    reported: bool = False


@dataclass
class LocalMaster:
    """The master's HTTP API on loopback, plus worker processes launched as it asks."""

    tmp: Path
    heartbeat_secs: float = 0.5
    api_token: str | None = None
    master: MasterApi = field(default_factory=lambda: MasterApi(ControlPlane()))
    processes: dict[str, Process] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None
    _stepper: asyncio.Task[None] | None = None
    _waiting: list[LaunchRequest] = field(default_factory=list)

    async def start(self) -> None:
        app = create_app(self.master, heartbeat_secs=1.0, api_token=self.api_token)
        self._runner, port = await serve(app, HOST)
        self.url = f"http://{HOST}:{port}"
        self._stepper = asyncio.create_task(self._step_forever())

    async def _step_forever(self) -> None:
        while True:
            self.step()
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._stepper is not None:
            self._stepper.cancel()
        for p in self.processes.values():
            if p.popen.poll() is None:
                p.popen.kill()
        for p in self.processes.values():
            p.popen.wait(timeout=10)
        self.master.close()
        if self._runner is not None:
            await self._runner.cleanup()

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
        params = tuple(Parameter(k, str(v)) for k, v in (parameters or {}).items())
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
        """Kill a job (its workers get SIGTERM on the next step)."""
        self.master.run(lambda p, now: p.kill_job(jid, "test", "done", now))

    def workers(self, jid: str, state: WorkerState | None = None) -> list[Any]:
        return [w for w in self.master.plane.workers.values()
                if w.job_id == jid and (state is None or w.state is state)]  # fmt: skip

    def started(self, jid: str, stage: int | None = None) -> list[Any]:
        return [w for w in self.workers(jid, WorkerState.Started)
                if stage is None or w.stage == stage]  # fmt: skip

    def job_state(self, jid: str) -> JobState:
        return self.master.plane.job(jid).state

    # -- the agent's part ----------------------------------------------------------------------

    def step(self) -> None:
        """Carry out the master's effects and report processes that ended."""
        effects, self.master.effects[:] = list(self.master.effects), []
        for effect in effects:
            if isinstance(effect, LaunchRequest):
                self._waiting.append(effect)
            elif isinstance(effect, KillTask):
                p = self.processes.get(effect.worker_id)
                if p is not None and p.popen.poll() is None:
                    p.popen.send_signal(signal.SIGTERM)
        now = time.time()
        for request in [r for r in self._waiting if r.ready_at <= now]:
            self._waiting.remove(request)
            self._launch(request)
        for p in self.processes.values():
            rc = p.popen.poll()
            if rc is None or p.reported:
                continue
            p.reported = True
            state = "TASK_FINISHED" if rc == 0 else "TASK_FAILED"
            status = TaskStatus(p.worker_id, state, "local", f"exit status {rc}")
            self.master.run(lambda plane, now: plane.task_status(status, now))  # noqa: B023

    def _launch(self, r: LaunchRequest) -> None:
        port = free_port()
        self.master.run(lambda p, now: p.worker_launched(r.worker_id, "local", HOST, (port,), now))
        job = self.master.plane.job(r.job_id)
        env = task_environment(
            job, r, HOST, (port,), self.url, job.definition.job_jar_url,
            self.tmp / "artifact-cache", self.api_token or "",
        )
        env = dataclasses.replace(env, heartbeat_secs=self.heartbeat_secs)
        log = self.tmp / f"{r.worker_id}.log"
        environ = {**os.environ, **env.environ(), "PYTHONPATH": str(ROOT)}
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "runtime.worker"], env=environ, cwd=self.tmp,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.processes[r.worker_id] = Process(r.worker_id, popen, log)

    def process(self, jid: str, stage: int, index: int) -> Process:
        """The live process of a job's (stage, index)."""
        for w in self.workers(jid):
            if w.stage == stage and w.index == index and not w.terminal:
                return self.processes[w.worker_id]
        raise KeyError(f"no live worker for {jid} stage {stage} index {index}")

    def logs(self) -> str:
        """Every worker's output, for assertion messages."""
        return "\n".join(f"--- {p.worker_id}\n{p.log.read_text()[-3000:]}"
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

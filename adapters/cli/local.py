"""A master whose workers are local processes: `MasterService` on `LocalAgent`, no Mesos.

The composition the test harness and the benchmarks run: the real service with an in-memory
store, the HTTP API on loopback, and one local agent stepped every 20 ms.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.http.app import create_app, serve
from adapters.local.agent import HOST, LocalAgent, LocalTask
from adapters.store.memory import MemoryStore
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    ParameterValue,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.worker import Worker, WorkerState
from service.master import MasterService
from service.worker_task import WorkerTaskSettings

STEP_SECS = 0.02


class ProcessMaster:
    """See the module docstring. `env` is added to every worker's environment."""

    def __init__(
        self,
        work_dir: Path,
        heartbeat_secs: float = 0.5,
        api_token: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.heartbeat_secs = heartbeat_secs
        self.api_token = api_token
        self.agent = LocalAgent(work_dir, env=dict(env or {}))
        self.service = MasterService(MemoryStore(), self.agent)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._stepper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = create_app(self.service, heartbeat_secs=1.0, api_token=self.api_token)
        self._runner, port = await serve(app, HOST)
        self.url = f"http://{HOST}:{port}"
        self.service.worker_tasks = WorkerTaskSettings(
            master_url=self.url,
            command=f"{sys.executable} -m runtime.worker",
            artifact_cache=self.work_dir / "artifact-cache",
            api_token=self.api_token or "",
            heartbeat_secs=self.heartbeat_secs,
        )
        self.service.start()
        self._stepper = asyncio.create_task(self._step_forever())

    async def _step_forever(self) -> None:
        while True:
            self.agent.step()
            await asyncio.sleep(STEP_SECS)

    async def close(self) -> None:
        if self._stepper is not None:
            self._stepper.cancel()
        self.agent.close()
        self.service.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def submit(
        self,
        cluster: str,
        artifact: str | Path,
        stages: list[int],
        parameters: Mapping[str, Any] | None = None,
        **request: Any,
    ) -> str:
        """Create `cluster` (if new) with one stage per entry (its worker count) and submit a
        job running `artifact` (more JobRequest fields in `request`); returns the job id."""
        if cluster not in self.service.plane.clusters:
            info = SchedulingInfo(
                tuple(StageSchedulingInfo(n, MachineDefinition(0.1, 64)) for n in stages)
            )
            config = JobClusterConfig("job.py", "1", time.time(), info, job_jar_url=str(artifact))
            definition = JobClusterDefinition(cluster, (config,))
            self.service.run(lambda p, now: p.create_cluster(definition, now))
        params = tuple(ParameterValue(k, str(v)) for k, v in (parameters or {}).items())
        job_request = JobRequest(parameters=params, job_jar_url=str(artifact), **request)
        outcome = self.service.run(lambda p, now: p.submit_job(cluster, job_request, "test", now))
        assert outcome.job_id is not None
        return outcome.job_id

    @property
    def processes(self) -> dict[str, LocalTask]:
        return self.agent.tasks

    def workers(self, jid: str, state: WorkerState | None = None) -> list[Worker]:
        return [
            w
            for w in self.service.plane.workers.values()
            if w.job_id == jid and (state is None or w.state is state)
        ]

    def started(self, jid: str, stage: int | None = None) -> list[Worker]:
        return [
            w for w in self.workers(jid, WorkerState.Started) if stage is None or w.stage == stage
        ]

    def process(self, jid: str, stage: int, index: int) -> LocalTask:
        """The live process of a job's (stage, index)."""
        for w in self.workers(jid):
            if w.stage == stage and w.index == index and not w.terminal:
                return self.processes[w.worker_id]
        raise KeyError(f"no live worker for {jid} stage {stage} index {index}")

    def logs(self) -> str:
        """Every worker's output, for assertion messages."""
        return "\n".join(
            f"--- {p.task_id}\n{p.log.read_text()[-3000:]}" for p in self.processes.values()
        )

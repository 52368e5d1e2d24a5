"""`mantis master`: the control plane, its store, a resource manager and the HTTP API on one loop.

The composition (ARCHITECTURE.md "Processes"): a `ControlPlane` replayed from the file store
(`adapters.store.EventLog` in the data folder), the pymesos `ResourceManager` (to mesoslite, or
to a real Mesos master with `--mesos`), and the aiohttp API (`adapters.http`), all on one
asyncio loop. Every input goes through `MasterApi.call`: the plane decides, the events are
committed (group commit, fsync) and only then are effects carried out.

Start-up: replay the store, `recover(now)` (running workers get a fresh heartbeat window,
Accepted ones are queued again), subscribe to Mesos with the framework id kept in the data
folder (so the framework's tasks survive a master restart), and on `registered` reconcile
every task the plane thinks is running. A timer calls `tick(now)` every `tick_secs`.

Effects: `LaunchTask`s go out in one ACCEPT per agent, `DeclineOffers` as DECLINE, `KillTask`
as KILL, a `LaunchRequest` (a worker needs resources) as REVIVE. pymesos' calls are
synchronous HTTP, so they run on one executor thread, in order, off the loop. A task status is
acknowledged to Mesos only after its events are durable, so an update is never lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from adapters.http.app import create_app, serve
from adapters.http.artifacts import ArtifactStore
from adapters.http.master_api import MasterApi
from adapters.mesos.resource_manager import PymesosResourceManager
from adapters.store.log import EventLog, StoreCorrupted
from core.control import ControlPlane
from core.effects import DeclineOffers, KillTask, LaunchRequest, LaunchTask
from core.job import Job
from core.model import DurationType
from core.ports import ResourceManager, TaskStatus
from core.scheduling import Offer
from runtime.worker import TaskEnvironment

log = structlog.get_logger()

DEFAULT_PORT = 8100
DEFAULT_SUBSCRIPTION_TIMEOUT_SECS = 300.0  # Mantis' ephemeral.job.unsubscribed.timeout.secs


@dataclass(frozen=True)
class MasterSettings:
    data_dir: Path
    mesos: str = "127.0.0.1:5050"
    """The Mesos (or mesoslite) master, ``host:port`` or ``zk://...``."""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str = ""
    """How workers reach this API (default ``http://host:port``)."""
    api_token: str | None = None
    worker_command: str = f"{sys.executable} -m runtime.worker"
    tick_secs: float = 1.0
    framework_name: str = "mantis"
    recover_from_snapshot: bool = False
    """Open a store whose log is damaged from its last good snapshot (see adapters.store)."""


def artifact_location(definition: Any, artifacts: ArtifactStore, master_url: str) -> str:
    """Where a job's workers fetch its artifact: its jobJarUrl if given, else the uploaded
    artifact of that name from this master, else the name itself (a path or module)."""
    if definition.job_jar_url:
        return str(definition.job_jar_url)
    name = str(definition.artifact_name)
    with contextlib.suppress(Exception):  # not a safe artifact name: not an uploaded one
        if artifacts.path(name).is_file():
            return f"{master_url}/api/v1/jobArtifacts/{name}"
    return name


def task_environment(
    job: Job, request: LaunchRequest, hostname: str, ports: tuple[int, ...], master_url: str,
    artifact: str, artifact_cache: Path, api_token: str = "",
) -> TaskEnvironment:  # fmt: skip
    """What a worker is told: who it is, where the master and artifact are, its job's
    parameters and timings; a transient job's sink workers also get its subscription timeout."""
    d = job.definition
    last_stage = request.stage == len(job.stages)
    timeout = 0.0
    if d.job_sla.duration_type is DurationType.Transient and last_stage:
        timeout = float(d.subscription_timeout_secs or DEFAULT_SUBSCRIPTION_TIMEOUT_SECS)
    return TaskEnvironment(
        job_id=request.job_id, stage=request.stage, index=request.index, number=request.number,
        master_url=master_url, artifact=artifact, ports=ports, job_name=job.cluster,
        stage_workers=len(job.stages.get(request.stage, ())) or 1,
        parameters={p.name: p.value for p in d.parameters},
        heartbeat_secs=job.heartbeat_interval_secs, host=hostname, hostname=hostname,
        artifact_cache=artifact_cache, subscription_timeout_secs=timeout,
        min_runtime_secs=float(d.job_sla.min_runtime_secs), api_token=api_token,
    )  # fmt: skip


class Master:
    """The running master; implements `core.ports.ResourceManagerEvents` for the RM."""

    def __init__(
        self,
        settings: MasterSettings,
        resource_manager: Callable[[Master, asyncio.AbstractEventLoop], ResourceManager] | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.artifacts = ArtifactStore(self.data_dir / "artifacts")
        self._make_rm = resource_manager or self._pymesos
        self.store: EventLog | None = None
        self.api: MasterApi | None = None
        self.rm: ResourceManager | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="resource-manager")
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts.folder.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.store = store = EventLog(
            self.data_dir / "store", recover_from_snapshot=s.recover_from_snapshot
        )
        events = store.load()
        plane = ControlPlane.replay(events)
        log.info("master_recovered", events=len(events), jobs=len(plane.jobs),
                 active=len(plane.active_jobs()), seconds=round(time.monotonic() - t0, 3))  # fmt: skip
        self.api = api = MasterApi(plane, append=store.append, commit=store.commit,
                                   archive=store.archived_job_events)  # fmt: skip
        app = create_app(api, artifacts=self.artifacts, api_token=s.api_token)
        self._runner, port = await serve(app, s.host, s.port)
        self.url = s.public_url.rstrip("/") or f"http://{s.host}:{port}"
        api.apply(plane.recover(time.time()))
        (self.data_dir / "master.pid").write_text(str(os.getpid()))
        loop = asyncio.get_running_loop()
        self.rm = self._make_rm(self, loop)
        self._tasks = [
            asyncio.create_task(self._carry_out_effects(), name="effects"),
            asyncio.create_task(self._ticks(), name="ticks"),
        ]
        self.rm.start(self)
        log.info("master_listening", url=self.url, mesos=s.mesos, data_dir=str(self.data_dir))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def stop(self) -> None:
        """Stop serving; the framework stays registered in Mesos so its tasks keep running."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.rm is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.rm.stop)
        self._executor.shutdown(wait=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            self.store.close()
        log.info("master_stopped")

    def _pymesos(self, master: Master, loop: asyncio.AbstractEventLoop) -> ResourceManager:
        s = self.settings
        id_file = self.data_dir / "framework_id"
        framework_id = id_file.read_text().strip() if id_file.exists() else None
        return PymesosResourceManager(
            s.mesos, s.framework_name, task_command=self.task_command, loop=loop,
            framework_id=framework_id or None,
        )  # fmt: skip

    # -- the workers' command -------------------------------------------------------------------

    def task_command(self, task: LaunchTask) -> dict[str, Any]:
        """Mesos CommandInfo for a worker: the worker command with its MANTIS_* environment."""
        env = self.worker_environment(task)
        variables = [{"name": k, "value": v} for k, v in env.items()]
        return {"shell": True, "value": self.settings.worker_command,
                "environment": {"variables": variables}}  # fmt: skip

    def worker_environment(self, task: LaunchTask) -> dict[str, str]:
        assert self.api is not None
        r, a = task.request, task.assignment
        job = self.api.plane.job(r.job_id)
        env = task_environment(
            job, r, a.hostname, a.ports, self.url,
            artifact_location(job.definition, self.artifacts, self.url),
            self.data_dir / "artifact-cache", self.settings.api_token or "",
        )  # fmt: skip
        return env.environ()

    # -- ResourceManagerEvents (on the loop) ------------------------------------------------

    def registered(self, framework_id: str) -> None:
        (self.data_dir / "framework_id").write_text(framework_id)
        assert self.api is not None
        plane = self.api.plane
        running = [(w.worker_id, w.agent_id) for w in plane.workers.values()
                   if w.running and w.agent_id and not plane.jobs[w.job_id].terminal]  # fmt: skip
        log.info("master_reconciling", tasks=len(running))
        self._rm_soon(lambda rm: rm.reconcile(running))
        self._rm_soon(lambda rm: rm.reconcile([]))
        self._rm_soon(lambda rm: rm.revive())

    def offers(self, offers: Sequence[Offer]) -> None:
        self._spawn(self._call(lambda p, now: p.on_offers(offers, now)), "offers")

    def rescinded(self, offer_id: str) -> None:
        pass  # offers are used within the call that receives them

    def task_status(self, status: TaskStatus) -> None:
        async def handle() -> None:
            await self._call(lambda p, now: p.task_status(status, now))
            self._rm_soon(lambda rm: rm.acknowledge(status))  # after the events are durable

        self._spawn(handle(), "task_status")

    # -- internals ------------------------------------------------------------------------------

    async def _call(self, command: Callable[[ControlPlane, float], Any]) -> None:
        assert self.api is not None
        await self.api.call(command)

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks.append(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("master_task_failed", task=task.get_name(), error=repr(task.exception()))

    def _rm_soon(self, call: Callable[[ResourceManager], None]) -> None:
        rm = self.rm
        if rm is not None:
            asyncio.get_running_loop().run_in_executor(self._executor, call, rm)

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_secs)
            try:
                await self._call(lambda p, now: p.tick(now))
            except Exception as e:  # a bug in one tick must not stop the timers
                log.error("master_tick_failed", error=repr(e))

    async def _carry_out_effects(self) -> None:
        api = self.api
        assert api is not None
        while True:
            await api.effects_ready.wait()
            api.effects_ready.clear()
            effects, api.effects[:] = list(api.effects), []
            launches = [e for e in effects if isinstance(e, LaunchTask)]
            if launches:
                self._rm_soon(lambda rm: rm.launch(launches))  # noqa: B023 - run before the next drain
            for e in effects:
                if isinstance(e, DeclineOffers):
                    self._rm_soon(partial(_decline, e))
                elif isinstance(e, KillTask) and e.agent_id:
                    self._rm_soon(partial(_kill, e))
            if any(isinstance(e, LaunchRequest) for e in effects):
                self._rm_soon(lambda rm: rm.revive())


def _decline(effect: DeclineOffers, rm: ResourceManager) -> None:
    rm.decline(effect.offer_ids, effect.refuse_seconds)


def _kill(effect: KillTask, rm: ResourceManager) -> None:
    rm.kill(effect.worker_id, effect.agent_id)


async def run_master(settings: MasterSettings) -> int:
    """Run until SIGTERM or SIGINT; returns the exit status."""
    master = Master(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, master.request_stop)
    await master.start()
    try:
        await master.wait_stopped()
    finally:
        await master.stop()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("mantis-data"),
                        help="store, artifacts and framework id (default: %(default)s)")
    parser.add_argument("--mesos", default="127.0.0.1:5050",
                        help="Mesos or mesoslite master, host:port or zk://... (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="API address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="API port (default: %(default)s)")
    parser.add_argument("--public-url", default="",
                        help="how workers reach the API (default: http://HOST:PORT)")
    parser.add_argument("--api-token", default=os.environ.get("MANTIS_API_TOKEN"),
                        help="bearer token for mutating API calls (default: $MANTIS_API_TOKEN)")
    parser.add_argument("--worker-command", default=MasterSettings.worker_command,
                        help="the command agents run for a worker (default: %(default)s)")
    parser.add_argument("--tick-secs", type=float, default=1.0,
                        help="timer resolution: heartbeats, SLA, cron (default: %(default)s)")
    parser.add_argument("--recover-from-snapshot", action="store_true",
                        help="open a damaged store from its last good snapshot, setting the "
                             "damaged part aside (events after the damage are lost)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    settings = MasterSettings(
        data_dir=args.data_dir.resolve(), mesos=args.mesos, host=args.host, port=args.port,
        public_url=args.public_url, api_token=args.api_token or None,
        worker_command=args.worker_command, tick_secs=args.tick_secs,
        recover_from_snapshot=args.recover_from_snapshot,
    )  # fmt: skip
    try:
        return asyncio.run(run_master(settings))
    except StoreCorrupted as e:
        sys.stderr.write(f"mantis master: {e}\n")
        return 1

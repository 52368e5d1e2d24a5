"""`mantis master`: the composition root of one master process.

It wires the application service (`service.master.MasterService`) to real adapters, all on one
asyncio loop: the file store (`adapters.store.EventLog` in the data folder), the pymesos
`ResourceManager` (to mesoslite, or to a real Mesos master with `--mesos`), the aiohttp API
(`adapters.http`) and a timer that ticks the service every `tick_secs`. The service owns the
rest: recover from the store, reconcile on (re-)registration, persist before acting.

The framework id is kept in the data folder, so a restarted master re-subscribes as the same
framework and its tasks keep running. Credentials for a Mesos master that authenticates
frameworks come from MANTIS_MESOS_PRINCIPAL and MANTIS_MESOS_SECRET (not argv, which `ps`
shows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from adapters.http.app import create_app, serve
from adapters.http.artifacts import ArtifactStore
from adapters.mesos.resource_manager import PymesosResourceManager
from adapters.store.log import EventLog, StoreCorrupted
from core.ports import ResourceManager
from service.master import MasterService
from service.worker_task import WORKER_COMMAND, WorkerTaskSettings

log = structlog.get_logger()

DEFAULT_PORT = 8100


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
    worker_command: str = WORKER_COMMAND
    tick_secs: float = 1.0
    framework_name: str = "mantis"
    recover_from_snapshot: bool = False
    """Open a store whose log is damaged from its last good snapshot (see adapters.store)."""
    instance_id: str = ""
    """Echoed by masterInfo (`mantis up` sets MANTIS_INSTANCE_ID to know its own master)."""


ResourceManagerFactory = Callable[[MasterSettings, asyncio.AbstractEventLoop], ResourceManager]


def pymesos_resource_manager(
    settings: MasterSettings, loop: asyncio.AbstractEventLoop
) -> ResourceManager:
    return PymesosResourceManager(
        settings.mesos,
        settings.framework_name,
        loop=loop,
        framework_id_file=settings.data_dir / "framework_id",
        principal=os.environ.get("MANTIS_MESOS_PRINCIPAL") or None,
        secret=os.environ.get("MANTIS_MESOS_SECRET") or None,
    )


class MasterProcess:
    """One running master process: the service, its store, resource manager and API."""

    def __init__(
        self, settings: MasterSettings, resource_manager: ResourceManagerFactory | None = None
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.artifacts = ArtifactStore(self.data_dir / "artifacts")
        self._make_rm = resource_manager or pymesos_resource_manager
        self.store: EventLog | None = None
        self.service: MasterService | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ticks: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts.folder.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.store = store = EventLog(
            self.data_dir / "store", recover_from_snapshot=s.recover_from_snapshot
        )
        if store.recovery is not None:  # opened with --recover-from-snapshot: say what it cost
            sys.stderr.write(f"mantis master: recovered a damaged store:\n{store.recovery}\n")
        rm = self._make_rm(s, asyncio.get_running_loop())
        self.service = service = MasterService(store, rm, archive=store.archived_job_events)
        plane = service.plane
        log.info(
            "master_recovered",
            jobs=len(plane.jobs),
            active=len(plane.active_jobs()),
            seconds=round(time.monotonic() - t0, 3),
        )
        app = create_app(
            service, artifacts=self.artifacts, api_token=s.api_token, instance_id=s.instance_id
        )
        self._runner, port = await serve(app, s.host, s.port)
        self.url = s.public_url.rstrip("/") or f"http://{s.host}:{port}"
        service.worker_tasks = WorkerTaskSettings(
            master_url=self.url,
            command=s.worker_command,
            artifact_cache=self.data_dir / "artifact-cache",
            api_token=s.api_token or "",
            uploaded=self._uploaded,
        )
        (self.data_dir / "master.pid").write_text(str(os.getpid()))
        service.start()
        self._ticks = asyncio.create_task(self._tick_forever(), name="ticks")
        log.info("master_listening", url=self.url, mesos=s.mesos, data_dir=str(self.data_dir))

    def _uploaded(self, name: str) -> bool:
        with contextlib.suppress(Exception):  # not a safe artifact name: not an uploaded one
            return self.artifacts.path(name).is_file()
        return False

    async def _tick_forever(self) -> None:
        assert self.service is not None
        while True:
            await asyncio.sleep(self.settings.tick_secs)
            try:
                self.service.tick()
            except Exception as e:  # a bug in one tick must not stop the timers
                log.error("master_tick_failed", error=repr(e))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def stop(self) -> None:
        """Stop serving; the framework stays registered in Mesos so its tasks keep running."""
        if self._ticks is not None:
            self._ticks.cancel()
        if self.service is not None:
            self.service.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            self.store.close()
        log.info("master_stopped")


async def run_master(settings: MasterSettings) -> int:
    """Run until SIGTERM or SIGINT; returns the exit status."""
    master = MasterProcess(settings)
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
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("mantis-data"),
        help="store, artifacts and framework id (default: %(default)s)",
    )
    parser.add_argument(
        "--mesos",
        default="127.0.0.1:5050",
        help="Mesos or mesoslite master, host:port or zk://... (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="API port (default: %(default)s)"
    )
    parser.add_argument(
        "--public-url", default="", help="how workers reach the API (default: http://HOST:PORT)"
    )
    parser.add_argument(
        "--api-token",
        default=os.environ.get("MANTIS_API_TOKEN"),
        help="bearer token for mutating API calls (default: $MANTIS_API_TOKEN)",
    )
    parser.add_argument(
        "--worker-command",
        default=WORKER_COMMAND,
        help="the command agents run for a worker (default: %(default)s)",
    )
    parser.add_argument(
        "--tick-secs",
        type=float,
        default=1.0,
        help="timer resolution: heartbeats, SLA, cron (default: %(default)s)",
    )
    parser.add_argument(
        "--recover-from-snapshot",
        action="store_true",
        help="open a damaged store: keep its last good snapshot and every whole "
        "batch after the damage that still applies, set the damaged files "
        "aside and print what was dropped",
    )


def run(args: argparse.Namespace) -> int:
    settings = MasterSettings(
        data_dir=args.data_dir.resolve(),
        mesos=args.mesos,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        api_token=args.api_token or None,
        worker_command=args.worker_command,
        tick_secs=args.tick_secs,
        recover_from_snapshot=args.recover_from_snapshot,
        instance_id=os.environ.get("MANTIS_INSTANCE_ID", ""),
    )
    try:
        return asyncio.run(run_master(settings))
    except StoreCorrupted as e:
        sys.stderr.write(f"mantis master: {e}\n")
        return 1

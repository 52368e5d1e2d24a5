"""`mantis master`: the composition root of one master process.

It wires the application service (`service.master.MasterService`) to real adapters, all on one
asyncio loop: the file store (`adapters.store.EventLog` in the data folder), the pymesos
`ResourceManager` (to mesoslite, or to a real Mesos master with `--mesos`), the aiohttp API
(`adapters.http`) and a timer that ticks the service every `tick_secs`. The service owns the
rest: recover from the store, reconcile on (re-)registration, persist before acting.

With `--zk`, several masters elect a leader in ZooKeeper (adapters.zk.election, Mantis'
layout under /mantis/master). A candidate serves adapters.http.follower (who leads, and a
redirect to it); the one elected leads on a store in ZooKeeper (adapters.zk.store) fenced by
its epoch, so a deposed leader's writes fail there. A leader that loses its session stops
acting at once and the process ends with status 3 for its supervisor to start it again as a
candidate, as a Mesos master ends when it loses leadership.

The framework id is kept in the data folder, so a restarted master re-subscribes as the same
framework and its tasks keep running. Credentials for a Mesos master that authenticates
frameworks come from MANTIS_MESOS_PRINCIPAL and MANTIS_MESOS_SECRET (not argv, which `ps`
shows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web
from kazoo.client import KazooClient

from adapters.http.app import create_app, serve
from adapters.http.artifacts import ArtifactStore
from adapters.http.follower import create_follower_app
from adapters.http.worker_api import STATUS_PATH
from adapters.mesos.resource_manager import PymesosResourceManager
from adapters.store.codec import decode, encode
from adapters.store.log import EventLog, StoreCorrupted
from adapters.zk.election import ZkLeaderElection, ensure_chroot
from adapters.zk.store import Fence, ZkStore
from common.master_location import MasterLocation
from core.events import Event
from core.ports import ResourceManager, Store
from service.election import master_description
from service.master import MasterService
from service.worker_task import WORKER_COMMAND, WorkerTaskSettings

log = structlog.get_logger()

ELECTION_ROOT = "/mantis/master"
EXIT_LOST_LEADERSHIP = 3

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
    zk: str = ""
    """ZooKeeper ``host:port[,host:port][/chroot]``: masters elect a leader there and share a
    store in it (adapters.zk); empty: this master leads alone on its file store."""
    zk_session_timeout: float = 4.0
    allowed_origins: tuple[str, ...] = ()
    """Web origins (a Mantis UI's) that may read the API and, with the token, change it."""


class FrameworkIds(Protocol):
    """Where the framework id is kept between masters: the data folder for one master,
    ZooKeeper for several (a new leader must re-subscribe as the same framework, or the
    running tasks would belong to nobody)."""

    def load(self) -> str | None: ...

    def save(self, framework_id: str) -> None: ...


@dataclass(frozen=True)
class FrameworkIdFile:
    path: Path

    def load(self) -> str | None:
        if not self.path.exists():
            return None
        return self.path.read_text().strip() or None

    def save(self, framework_id: str) -> None:
        self.path.write_text(framework_id)


@dataclass(frozen=True)
class FrameworkIdNode:
    client: KazooClient
    path: str = f"{ELECTION_ROOT}/framework_id"

    def load(self) -> str | None:
        if self.client.exists(self.path) is None:
            return None
        data, _ = self.client.get(self.path)
        return bytes(data).decode() or None

    def save(self, framework_id: str) -> None:
        self.client.ensure_path(self.path)
        self.client.set(self.path, framework_id.encode())


ResourceManagerFactory = Callable[
    [MasterSettings, asyncio.AbstractEventLoop, FrameworkIds], ResourceManager
]


def pymesos_resource_manager(
    settings: MasterSettings, loop: asyncio.AbstractEventLoop, framework_ids: FrameworkIds
) -> ResourceManager:
    return PymesosResourceManager(
        settings.mesos,
        settings.framework_name,
        loop=loop,
        framework_id=framework_ids.load(),
        keep_framework_id=framework_ids.save,
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
        self._listener: socket.socket | None = None
        """With --zk: the API port's socket, open from candidacy to stop (see _stand)."""
        self._ticks: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._zk: KazooClient | None = None
        self._election: ZkLeaderElection | None = None
        self._taking_office: asyncio.Task[None] | None = None
        self.exit_status = 0

    async def start(self) -> None:
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts.folder.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "master.pid").write_text(str(os.getpid()))
        if s.zk:
            await self._stand()
            return
        self.store = store = EventLog(
            self.data_dir / "store", recover_from_snapshot=s.recover_from_snapshot
        )
        if store.recovery is not None:  # opened with --recover-from-snapshot: say what it cost
            sys.stderr.write(f"mantis master: recovered a damaged store:\n{store.recovery}\n")
        await self._lead(store, store.archived_job_events)

    async def _lead(self, store: Store, archive: Callable[[str], Sequence[Event]]) -> None:
        """Recover from `store`, serve the API and subscribe to Mesos: this master leads."""
        s = self.settings
        t0 = time.monotonic()
        ids: FrameworkIds = (
            FrameworkIdFile(self.data_dir / "framework_id")
            if self._zk is None
            else FrameworkIdNode(self._zk)
        )
        rm = await asyncio.to_thread(self._make_rm, s, asyncio.get_running_loop(), ids)
        self.service = service = await asyncio.to_thread(MasterService, store, rm, archive=archive)
        plane = service.plane
        log.info(
            "master_recovered",
            jobs=len(plane.jobs),
            active=len(plane.active_jobs()),
            seconds=round(time.monotonic() - t0, 3),
        )
        # The replayed state lives as long as the master: frozen, no full collection walks
        # it again (at 100,000 workers each took ~0.3 s, in the middle of some request).
        gc.collect()
        gc.freeze()
        app = create_app(
            service,
            artifacts=self.artifacts,
            api_token=s.api_token,
            instance_id=s.instance_id,
            allowed_origins=s.allowed_origins,
        )
        follower, self._runner = self._runner, None
        self._runner, port = await serve(app, s.host, s.port, self._listener)
        if follower is not None:  # it answered 503 while this one recovered; the port is ours
            await follower.cleanup()
        self.url = s.public_url.rstrip("/") or f"http://{s.host}:{port}"
        service.worker_tasks = WorkerTaskSettings(
            master_url=self.url,
            command=s.worker_command,
            artifact_cache=self.data_dir / "artifact-cache",
            api_token=s.api_token or "",
            uploaded=self._uploaded,
            zk=s.zk,  # workers follow the leader ZooKeeper names, across a failover
            zk_root=ELECTION_ROOT,
        )
        service.start()
        self._ticks = asyncio.create_task(self._tick_forever(), name="ticks")
        log.info("master_listening", url=self.url, mesos=s.mesos, data_dir=str(self.data_dir))

    # -- several masters: the election (adapters.zk) -------------------------------------

    async def _stand(self) -> None:
        """Join the election and, until elected, serve as a follower on the API port."""
        s = self.settings
        self._zk = zk = KazooClient(
            hosts=s.zk,
            timeout=s.zk_session_timeout,
            connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
        )
        await asyncio.to_thread(zk.start, 30)
        await asyncio.to_thread(ensure_chroot, zk)
        location = MasterLocation("")
        follower = create_follower_app(self._other_leader, location, instance_id=s.instance_id)
        # One listening socket for the follower's app and then the leader's: connections
        # queue in it while the apps change, none is refused.
        self._listener = socket.create_server((s.host, s.port))
        self._runner, port = await serve(follower, listener=self._listener)
        self.url = s.public_url.rstrip("/") or f"http://{s.host}:{port}"
        description = master_description(
            hostname=socket.gethostname(),
            host_ip=s.host,
            api_port=port,
            url=self.url,
            api_status_uri=STATUS_PATH.lstrip("/"),
            create_time_ms=int(time.time() * 1000),
        )
        loop = asyncio.get_running_loop()
        self._election = ZkLeaderElection(
            zk,
            description,
            loop=loop,
            root=ELECTION_ROOT,
            on_leader=lambda _: location.move(str((self._other_leader() or {}).get("url", ""))),
        )
        self._election.start(self)
        log.info("master_standing", url=self.url, zk=s.zk)

    def _other_leader(self) -> dict[str, Any] | None:
        """The leader ZooKeeper names, unless it is this master's own URL: a master restarted
        on a dead leader's port would otherwise redirect to itself until that session expires."""
        leader = self._election.leader() if self._election is not None else None
        return leader if leader is not None and leader.get("url") != self.url else None

    def became_leader(self, epoch: int) -> None:
        self._taking_office = asyncio.create_task(self._take_office(epoch), name="take-office")

    async def _take_office(self, epoch: int) -> None:
        """Lead on the shared store, fenced by this leadership's epoch: once another master
        is elected, every write of this one fails in ZooKeeper itself."""
        assert self._zk is not None
        store = ZkStore(self._zk, encode, decode, fence=Fence(f"{ELECTION_ROOT}/epoch", epoch))
        log.info("master_elected", epoch=epoch, url=self.url)
        await self._lead(store, store.archived_job_events)

    def lost_leadership(self, reason: str) -> None:
        """Stop acting at once and step down: the process ends (a supervisor starts it again
        as a candidate), as a Mesos master does when it loses leadership."""
        if self.service is None and self._taking_office is None:
            return  # it did not lead: it stays a candidate
        log.error("master_lost_leadership", reason=reason, url=self.url)
        if self._taking_office is not None:
            self._taking_office.cancel()
        if self._ticks is not None:
            self._ticks.cancel()
        self.exit_status = EXIT_LOST_LEADERSHIP
        self.request_stop()

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
        if self._election is not None:
            self._election.stop()
        if self._ticks is not None:
            self._ticks.cancel()
        if self.service is not None:
            self.service.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._listener is not None:
            self._listener.close()
        if self.store is not None:
            self.store.close()
        if self._zk is not None:
            await asyncio.to_thread(self._zk.stop)
            await asyncio.to_thread(self._zk.close)
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
    return master.exit_status


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
        "--zk",
        default="",
        metavar="HOST:PORT[,HOST:PORT][/CHROOT]",
        help="elect a leader among masters in ZooKeeper and share their store there; "
        "followers redirect to the leader (default: lead alone on the file store)",
    )
    parser.add_argument(
        "--zk-session-timeout",
        type=float,
        default=4.0,
        help="seconds without ZooKeeper before a leader is replaced (default: %(default)s)",
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (https://ui.example) that may read the API (CORS) and, with the "
        "token, change it; '*' lets every origin read, as Mantis does (repeatable)",
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
        zk=args.zk,
        zk_session_timeout=args.zk_session_timeout,
        allowed_origins=tuple(args.allowed_origin),
    )
    try:
        return asyncio.run(run_master(settings))
    except StoreCorrupted as e:
        sys.stderr.write(f"mantis master: {e}\n")
        return 1

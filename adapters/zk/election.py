"""`core.ports.LeaderElection` on ZooKeeper (kazoo), in Mantis' layout under `root`
(`/mantis/master` by default; a chroot comes with the client's hosts, `host:port/chroot`):

- `<root>/hosts/_c_<uuid>-latch-<seq>`: one ephemeral sequential znode per candidate; the
  lowest sequence leads, each other candidate watches the one just below it (no herd), as in
  Curator's LeaderLatch, which Mantis' ZookeeperLeaderElectorService
  (io.mantisrx.server.core.zookeeper) uses. The `_c_<uuid>-` prefix is Curator's
  "protection" (CreateBuilder.withProtection): a create whose answer was lost is found again
  by its prefix instead of leaving an orphan candidate that nobody would remove.
- `<root>/epoch`: the fencing epoch. A new leader sets it, and the znode's new version is the
  leadership's epoch.
- `<root>/leader`: the leader's description (`service.election.master_description`, plus
  `epoch`) as JSON, which followers read to redirect and workers to find the master.
The leader takes office in one multi-op: check that its own candidate znode still exists, set
`epoch` at the version it read, set `leader`. So a candidate whose session has just expired
cannot take office, and two leaderships never share an epoch.

Sessions, as kazoo reports them (kazoo.protocol.states.KazooState):
- SUSPENDED: the leader stops at once (`lost_leadership("suspended")`): the server expires
  the session at the session timeout and kazoo suspends at 2/3 of it, so another master may
  be elected within the remaining third.
- LOST: the session and the candidate znode are gone; once kazoo has a new session, the
  master enters the election again as a new candidate.
- CONNECTED again after SUSPENDED, same session: the candidate znode survived, so the
  election is simply run again for it. If it is still the lowest, it takes office again with a
  NEW epoch (never by resuming the old one), so that anything it sent under the old epoch
  before it stopped is fenced off; the master recovers as any new leader does.

Threads. kazoo reports session states on its connection thread and watches on its callback
thread; both only record what happened and wake the adapter's "zk-election" thread, which
alone talks to ZooKeeper. The listener (the master) is called on the asyncio `loop` through
`loop.call_soon_threadsafe`, as adapters/mesos/resource_manager.py does for pymesos, and a
callback already queued when `stop` is called is dropped.

The client belongs to the caller, who starts it (`start_async` is enough), may share its
session with the store, and closes it after `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
)
from kazoo.protocol.states import KazooState

from common.backoff import Backoff
from core.ports import LeaderElectionEvents

log = structlog.get_logger(__name__)

ROOT = "/mantis/master"
RETRY = Backoff(initial=0.1, maximum=2.0)
STOP_WAIT = 10.0  # seconds stop() waits for a ZooKeeper call under way on the election thread


def sequence(name: str) -> int:
    """The sequence number ZooKeeper appended to a candidate's name (its last 10 digits)."""
    return int(name[-10:])


def ensure_chroot(client: KazooClient) -> None:
    """Create the chroot of a client's hosts (`host:port/chroot`) if it is missing: ZooKeeper
    does not, and under a missing chroot every call fails with NoNode (Curator creates its
    namespace the same way). Blocks: a short-lived client of its own, without the chroot."""
    if not client.chroot or client.exists("/") is not None:
        return
    hosts = ",".join(f"{host}:{port}" for host, port in client.hosts)
    plain = KazooClient(hosts=hosts)
    plain.start(timeout=STOP_WAIT)
    try:
        plain.ensure_path(client.chroot)
    finally:
        plain.stop()
        plain.close()
    log.info("zk_chroot_created", chroot=client.chroot)


class ZkLeaderElection:
    """`core.ports.LeaderElection` on kazoo; see the module docstring."""

    def __init__(
        self,
        client: KazooClient,
        description: dict[str, Any],
        *,
        loop: asyncio.AbstractEventLoop,
        root: str = ROOT,
        on_leader: Callable[[dict[str, Any] | None], None] | None = None,
    ) -> None:
        """`description`: this master's (`service.election.master_description`).
        `on_leader` hears, on `loop`, each new description of the leader (None: none known)."""
        self._client = client
        self._on_leader = on_leader
        self._description = dict(description)
        self._loop = loop
        root = "/" + root.strip("/")
        self._hosts, self._epoch_path, self._leader_path = (
            f"{root}/hosts",
            f"{root}/epoch",
            f"{root}/leader",
        )
        self._prefix = f"_c_{uuid.uuid4()}-latch-"
        self._lock = threading.Lock()  # guards the four fields below
        self._node: str | None = None  # this candidate's znode (path), None without one
        self._epoch = 0  # the epoch this master leads in; 0: it does not lead
        self._changes = 0  # session state changes seen so far
        self._leader: dict[str, Any] | None = None
        self._wake = threading.Event()
        self._stopped = False
        self._events: LeaderElectionEvents | None = None
        self._thread: threading.Thread | None = None

    # -- LeaderElection ----------------------------------------------------------------------

    def start(self, events: LeaderElectionEvents) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._events = events
        self._client.add_listener(self._on_state)
        self._thread = threading.Thread(target=self._run, name="zk-election", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """Withdraw: the candidate znode is deleted, so the next candidate leads at once."""
        self._stopped = True
        self._client.remove_listener(self._on_state)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT)
            if self._thread.is_alive():
                log.warning("zk_election_thread_busy", waited=STOP_WAIT)
        with self._lock:
            node, self._node, self._epoch = self._node, None, 0
        if node is not None and self._client.connected:
            with contextlib.suppress(KazooException):
                self._client.delete(node)
        log.info("zk_election_left", candidate=node)

    def leader(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self._leader) if self._leader is not None else None

    # -- kazoo's threads: record and wake, never call ZooKeeper here --------------------------

    def _on_state(self, state: str) -> None:
        with self._lock:
            self._changes += 1
            if state != KazooState.CONNECTED and self._epoch:
                self._step_down("suspended" if state == KazooState.SUSPENDED else "session lost")
            if state == KazooState.LOST:
                self._node = None
        log.info("zk_session_state", state=state)
        self._wake.set()

    def _watch(self, event: Any) -> None:
        self._wake.set()

    # -- the election thread -----------------------------------------------------------------

    def _run(self) -> None:
        rng, attempt, delay = random.Random(), 0, None
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopped:
                return
            delay = None
            if self._client.state != KazooState.CONNECTED:
                continue  # the CONNECTED state wakes us
            try:
                self._step()
                attempt = 0
            except KazooException as exc:
                delay = RETRY.delay(attempt, rng)
                attempt += 1
                log.warning("zk_election_retry", error=repr(exc), delay=round(delay, 3))
            except Exception:
                delay = RETRY.delay(attempt, rng)
                attempt += 1
                log.exception("zk_election_failed", delay=round(delay, 3))

    def _step(self) -> None:
        """Read the leader's description, be a candidate, and lead if this one is the lowest."""
        client = self._client
        self._read_leader()
        node = self._node
        if node is None or client.exists(node, watch=self._watch) is None:
            node = self._enter()
        candidates = sorted(client.get_children(self._hosts), key=sequence)
        name = node.rsplit("/", 1)[1]
        if name not in candidates:
            self._wake.set()  # deleted meanwhile: the next step enters again
            return
        index = candidates.index(name)
        if index > 0:
            with self._lock:
                if self._epoch:
                    self._step_down("another candidate is lower")
            below = f"{self._hosts}/{candidates[index - 1]}"
            if client.exists(below, watch=self._watch) is None:
                self._wake.set()  # gone already: look again
        elif not self._epoch:
            self._take_office(node)

    def _enter(self) -> str:
        """Become a candidate (again): find this one's znode by its prefix, else create one."""
        client = self._client
        with self._lock:
            if self._epoch:
                self._step_down("candidate znode deleted")
        ensure_chroot(client)
        client.ensure_path(self._hosts)
        mine = [c for c in client.get_children(self._hosts) if c.startswith(self._prefix)]
        if mine:
            node = f"{self._hosts}/{mine[0]}"
        else:
            node = client.create(
                f"{self._hosts}/{self._prefix}",
                json.dumps(self._description).encode(),
                ephemeral=True,
                sequence=True,
            )
        client.exists(node, watch=self._watch)
        with self._lock:
            self._node = node
        log.info("zk_candidate", candidate=node)
        return str(node)

    def _take_office(self, node: str) -> None:
        client = self._client
        changes = self._changes
        for path in (self._epoch_path, self._leader_path):
            with contextlib.suppress(NodeExistsError):
                client.create(path, b"")
        stat = client.exists(self._epoch_path)
        epoch = stat.version + 1
        description = {**self._description, "epoch": epoch}
        tx = client.transaction()
        tx.check(node, 0)  # a candidate's znode is never written: version 0 while it exists
        tx.set_data(self._epoch_path, node.rsplit("/", 1)[1].encode(), version=stat.version)
        tx.set_data(self._leader_path, json.dumps(description).encode())
        results = tx.commit()
        failed = [r for r in results if isinstance(r, Exception)]
        if any(isinstance(r, (BadVersionError, NoNodeError)) for r in failed):
            log.info("zk_take_office_refused", candidate=node, errors=repr(failed))
            self._wake.set()  # the epoch moved or the candidate went: look again
            return
        if failed:
            raise failed[0]
        with self._lock:
            if self._changes != changes or client.state != KazooState.CONNECTED:
                self._wake.set()  # the session wavered meanwhile: take office again, anew
                return
            self._epoch = results[1].version
            self._leader = description
            self._post("became_leader", self._epoch)
        log.info("zk_leader_elected", candidate=node, epoch=self._epoch)

    def _read_leader(self) -> None:
        """The leader's description, watched so that each change wakes this thread."""
        try:
            data, _ = self._client.get(self._leader_path, watch=self._watch)
        except NoNodeError:
            self._client.exists(self._leader_path, watch=self._watch)
            data = b""
        try:
            leader = json.loads(data) if data else None
        except ValueError:
            log.warning("zk_leader_unreadable", path=self._leader_path, data=data[:200])
            leader = None
        leader = leader if isinstance(leader, dict) else None
        with self._lock:
            changed, self._leader = leader != self._leader, leader
        if changed and self._on_leader is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                self._loop.call_soon_threadsafe(self._on_leader, leader)

    # -- to the listener, on its loop ----------------------------------------------------------

    def _step_down(self, reason: str) -> None:
        """Caller holds the lock."""
        log.warning("zk_leadership_lost", epoch=self._epoch, reason=reason)
        self._epoch = 0
        self._post("lost_leadership", reason)

    def _post(self, callback: str, argument: int | str) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver, callback, argument)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            log.warning("zk_election_loop_closed", callback=callback)

    def _deliver(self, callback: str, argument: int | str) -> None:
        if self._stopped or self._events is None:
            return
        try:
            getattr(self._events, callback)(argument)
        except Exception:
            log.exception("zk_election_callback_failed", callback=callback)

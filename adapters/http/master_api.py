"""The master behind the HTTP routes: runs ControlPlane commands, persists, then publishes.

Every call goes through `call` (or `run`, its synchronous form): the plane decides, the events
are appended (persisted) first, then the effects are carried out. `call` awaits a `commit`
(the store's group commit) when one is given, so concurrent requests share one fsync and each
is answered only once its events are durable. `PublishSchedulingInfo` and new submissions only mark
watchers dirty; each watcher re-reads the plane when it wakes, so a burst of changes costs
one frame per subscriber, not one per change (Mantis batches its assignment refreshes too).
Everything runs on one event loop: no locks.
"""

from __future__ import annotations

import time
from asyncio import Event as Signal
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from core.control import ControlPlane, Outcome
from core.effects import Effect, PublishSchedulingInfo, PublishStatus
from core.errors import NotFound
from core.events import ClusterCreated, Event, JobAccepted
from core.model import JobClusterConfig, JobClusterDefinition

Append = Callable[[Sequence[Event]], None]
Commit = Callable[[Sequence[Event]], Awaitable[None]]
Command = Callable[[ControlPlane, float], Outcome]
STATUS_HISTORY = 100
STATUS_JOBS = 1000


class MasterApi:
    """Owns the ControlPlane, the event log (in memory until the store lands) and watchers."""

    def __init__(
        self,
        plane: ControlPlane | None = None,
        clock: Callable[[], float] = time.time,
        append: Append | None = None,
        commit: Commit | None = None,
        archive: Callable[[str], Sequence[Event]] | None = None,
    ) -> None:
        self.plane = plane or ControlPlane()
        self.clock = clock
        self.events: list[Event] = []
        self._append: Append = append or self.events.extend
        self._commit = commit
        self._archive = archive
        # Effects this adapter does not carry out (launches, kills, status messages): the
        # master server drains them when `effects_ready` is set.
        self.effects: list[Effect] = []
        self.effects_ready = Signal()
        self.last_submitted: dict[str, str] = {
            name: c.job_ids[-1] for name, c in self.plane.clusters.items() if c.job_ids
        }
        self._job_watchers: dict[str, set[Signal]] = {}
        self.statuses: OrderedDict[str, deque[PublishStatus]] = OrderedDict()
        """The last STATUS_HISTORY lifecycle messages of the last STATUS_JOBS jobs."""
        self._status_watchers: dict[str, set[Signal]] = {}
        self._cluster_watchers: dict[str, set[Signal]] = {}
        self.closing = False

    def run(self, command: Command) -> Outcome:
        """Run one command or observation at `clock()` and apply its outcome."""
        outcome = command(self.plane, self.clock())
        self.apply(outcome)
        return outcome

    async def call(self, command: Command) -> Outcome:
        """`run`, for request handlers: with a `commit`, returns once the events are durable
        (effects wait for that too); rejected commands raise before anything is written."""
        if self._commit is None:
            return self.run(command)
        outcome = command(self.plane, self.clock())
        if outcome.events:
            await self._commit(outcome.events)
        self._publish(outcome)
        return outcome

    def archived_plane(self, jid: str) -> ControlPlane | None:
        """A plane holding only the archived job `jid` (its events replayed on a stand-in
        cluster), or None if the store has not archived it."""
        if self._archive is None:
            return None
        try:
            events = self._archive(jid)
        except NotFound:
            return None
        accepted = next((e for e in events if isinstance(e, JobAccepted)), None)
        if accepted is None:
            return None
        d = accepted.definition
        config = JobClusterConfig(d.artifact_name, d.version, accepted.at, d.scheduling_info,
                                  d.job_jar_url)  # fmt: skip
        stand_in = ClusterCreated(JobClusterDefinition(d.cluster_name, (config,)), accepted.at)
        return ControlPlane.replay([stand_in, *events])

    def apply(self, outcome: Outcome) -> None:
        """Persist the events first, then publish (coalesced) and keep the other effects."""
        if outcome.events:
            self._append(outcome.events)
        self._publish(outcome)

    def _publish(self, outcome: Outcome) -> None:
        for event in outcome.events:
            if isinstance(event, JobAccepted):
                cluster = event.definition.cluster_name
                self.last_submitted[cluster] = event.job_id
                self._wake(self._cluster_watchers.get(cluster, ()))
        dirty: set[str] = set()
        for effect in outcome.effects:
            if isinstance(effect, PublishSchedulingInfo):
                dirty.add(effect.job_id)
            elif isinstance(effect, PublishStatus):
                self._keep_status(effect)
            else:
                self.effects.append(effect)
                self.effects_ready.set()
        for jid in dirty:
            self._wake(self._job_watchers.get(jid, ()))

    @contextmanager
    def watch_job(self, jid: str) -> Iterator[Signal]:
        """A signal set whenever the job's scheduling info may have changed (or on close)."""
        with self._watch(self._job_watchers, jid) as signal:
            yield signal

    @contextmanager
    def watch_status(self, jid: str) -> Iterator[Signal]:
        """A signal set whenever the job has a new lifecycle message (or on close)."""
        with self._watch(self._status_watchers, jid) as signal:
            yield signal

    def _keep_status(self, status: PublishStatus) -> None:
        kept = self.statuses.get(status.job_id)
        if kept is None:
            kept = self.statuses[status.job_id] = deque(maxlen=STATUS_HISTORY)
            if len(self.statuses) > STATUS_JOBS:
                self.statuses.popitem(last=False)
        kept.append(status)
        self._wake(self._status_watchers.get(status.job_id, ()))

    @contextmanager
    def watch_cluster(self, name: str) -> Iterator[Signal]:
        """A signal set whenever a job of the cluster is submitted (or on close)."""
        with self._watch(self._cluster_watchers, name) as signal:
            yield signal

    def close(self) -> None:
        """Wake every watcher so that open streams end (the server is shutting down)."""
        self.closing = True
        for watchers in (*self._job_watchers.values(), *self._cluster_watchers.values(),
                         *self._status_watchers.values()):  # fmt: skip
            self._wake(watchers)

    @contextmanager
    def _watch(self, table: dict[str, set[Signal]], key: str) -> Iterator[Signal]:
        signal = Signal()
        table.setdefault(key, set()).add(signal)
        try:
            yield signal
        finally:
            watchers = table[key]
            watchers.discard(signal)
            if not watchers:
                del table[key]

    @staticmethod
    def _wake(watchers: Iterable[Signal]) -> None:
        for signal in watchers:
            signal.set()

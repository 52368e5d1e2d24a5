"""Who is told what changed: scheduling info, lifecycle messages and new submissions per key.

Watchers are signals (`asyncio.Event`), not queues: a burst of changes wakes a watcher once
and it re-reads the plane, so a stage of 1,500 workers starting costs one frame per
subscriber, not one per worker (Mantis batches its assignment refreshes the same way).
"""

from __future__ import annotations

from asyncio import Event as Signal
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from core.effects import PublishStatus

STATUS_HISTORY = 100
STATUS_JOBS = 1000


class Watchers:
    """Signals per job (scheduling info), per job (lifecycle messages) and per cluster."""

    def __init__(self) -> None:
        self._jobs: dict[str, set[Signal]] = {}
        self._statuses: dict[str, set[Signal]] = {}
        self._clusters: dict[str, set[Signal]] = {}
        self._anything: set[Signal] = set()
        self.statuses: OrderedDict[str, deque[PublishStatus]] = OrderedDict()
        """The last STATUS_HISTORY lifecycle messages of the last STATUS_JOBS jobs."""
        self.closing = False

    @contextmanager
    def job(self, jid: str) -> Iterator[Signal]:
        """Set whenever the job's scheduling info may have changed (or on close)."""
        with _watch(self._jobs, jid) as signal:
            yield signal

    @contextmanager
    def status(self, jid: str) -> Iterator[Signal]:
        """Set whenever the job has a new lifecycle message (or on close)."""
        with _watch(self._statuses, jid) as signal:
            yield signal

    @contextmanager
    def cluster(self, name: str) -> Iterator[Signal]:
        """Set whenever a job of the cluster is submitted (or on close)."""
        with _watch(self._clusters, name) as signal:
            yield signal

    @contextmanager
    def anything(self) -> Iterator[Signal]:
        """Set whenever the master's state changed at all (the dashboard's one stream)."""
        signal = Signal()
        self._anything.add(signal)
        try:
            yield signal
        finally:
            self._anything.discard(signal)

    def changed(self) -> None:
        _wake(self._anything)

    def job_changed(self, jid: str) -> None:
        _wake(self._jobs.get(jid, ()))

    def cluster_submitted(self, name: str) -> None:
        _wake(self._clusters.get(name, ()))

    def keep_status(self, status: PublishStatus) -> None:
        kept = self.statuses.get(status.job_id)
        if kept is None:
            kept = self.statuses[status.job_id] = deque(maxlen=STATUS_HISTORY)
            if len(self.statuses) > STATUS_JOBS:
                self.statuses.popitem(last=False)
        kept.append(status)
        _wake(self._statuses.get(status.job_id, ()))

    def wake_all(self) -> None:
        for table in (self._jobs, self._statuses, self._clusters):
            for signals in table.values():
                _wake(signals)
        _wake(self._anything)

    def close(self) -> None:
        """Wake every watcher so that open streams end (the server is shutting down)."""
        self.closing = True
        self.wake_all()


@contextmanager
def _watch(table: dict[str, set[Signal]], key: str) -> Iterator[Signal]:
    signal = Signal()
    table.setdefault(key, set()).add(signal)
    try:
        yield signal
    finally:
        signals = table[key]
        signals.discard(signal)
        if not signals:
            del table[key]


def _wake(signals: Iterable[Signal]) -> None:
    for signal in signals:
        signal.set()

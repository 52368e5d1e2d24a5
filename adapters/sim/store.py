"""`SimStore`: the Store port on a simulated disk that fills up, fenced by a leader epoch.

Events live in a list (the "disk"); while `full`, appends raise ENOSPC and change nothing,
as a real file store must behave (a failed write leaves the log as it was). Masters write
through `fenced(epoch)`, as they write to the ZooKeeper store through a transaction that
checks the election's epoch: once a newer leader is elected (`epoch` raised), a deposed
leader's append is refused and writes nothing, whatever it believes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass

from core.events import Event


class StoreFenced(Exception):
    """A deposed leader's write: refused, nothing written."""


class SimStore:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.full = False
        self.epoch = 1
        self.fencing = True  # off only in the mutation test that shows the fence is needed
        self.refused = 0
        self.writers: list[int] = []  # the epoch of each append, for the checker

    def fenced(self, epoch: int) -> FencedStore:
        return FencedStore(self, epoch)

    def append(self, events: Sequence[Event], epoch: int) -> None:
        if self.fencing and epoch != self.epoch:
            raise StoreFenced(f"epoch {epoch} is deposed (the leader's is {self.epoch})")
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "sim-store")
        self.events.extend(events)
        self.writers.append(epoch)

    def load(self) -> list[Event]:
        return list(self.events)


@dataclass(frozen=True)
class FencedStore:
    """One leadership's view of the store: the Store port, its writes checked by `epoch`."""

    store: SimStore
    epoch: int

    def append(self, events: Sequence[Event]) -> None:
        self.store.append(events, self.epoch)

    async def commit(self, events: Sequence[Event]) -> None:
        self.append(events)

    def load(self) -> list[Event]:
        return self.store.load()

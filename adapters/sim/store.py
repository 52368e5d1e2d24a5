"""`SimStore`: the Store port on a simulated disk that fills up and empties again.

Events live in a list (the "disk"); while `full`, appends raise ENOSPC and change nothing,
as a real file store must behave (a failed write leaves the log as it was).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from core.events import Event


class SimStore:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.full = False
        self.refused = 0

    def append(self, events: Sequence[Event]) -> None:
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "sim-store")
        self.events.extend(events)

    async def commit(self, events: Sequence[Event]) -> None:
        self.append(events)

    def load(self) -> list[Event]:
        return list(self.events)

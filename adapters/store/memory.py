"""`MemoryStore`: the Store port in a list, for tests and throw-away runs (nothing survives)."""

from __future__ import annotations

from collections.abc import Sequence

from core.events import Event


class MemoryStore:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def append(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def load(self) -> list[Event]:
        return list(self.events)

    async def commit(self, events: Sequence[Event]) -> None:
        self.append(events)

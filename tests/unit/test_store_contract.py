"""The Store contract, run against the in-memory fake and the file store (two layouts)."""

from __future__ import annotations

from pathlib import Path

from adapters.store.log import EventLog
from adapters.store.memory import MemoryStore
from core.ports import Store
from tests.contracts.store import StoreContract


class TestMemoryStore(StoreContract):
    durable = False

    def open_store(self, folder: Path) -> MemoryStore:
        return MemoryStore()

    def close_store(self, store: MemoryStore) -> None:
        pass


class TestEventLog(StoreContract):
    def open_store(self, folder: Path) -> EventLog:
        store: Store = EventLog(folder)  # mypy checks the port fits
        assert isinstance(store, EventLog)
        return store

    def close_store(self, store: EventLog) -> None:
        store.close()


class TestEventLogInSmallSegments(TestEventLog):
    """Many segment rotations; snapshots off, so load() gives back exactly what went in."""

    def open_store(self, folder: Path) -> EventLog:
        return EventLog(folder, segment_bytes=512, snapshot_every=None)

"""Fakes of the ports, for tests that need a master but no cluster behind it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from adapters.store.memory import MemoryStore
from core.ports import ResourceManagerEvents, Store, TaskLaunch, TaskStatus
from service.master import MasterService


class RecordingResourceManager:
    """The ResourceManager port that does nothing but remember each call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start(self, events: ResourceManagerEvents) -> None:
        self.calls.append(("start", None))

    def stop(self) -> None:
        self.calls.append(("stop", None))

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        self.calls.append(("launch", list(tasks)))

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None:
        self.calls.append(("decline", (list(offer_ids), refuse_seconds)))

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        self.calls.append(
            ("kill", (task_id, agent_id) if grace_secs is None else (task_id, agent_id, grace_secs))
        )

    def revive(self) -> None:
        self.calls.append(("revive", None))

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        self.calls.append(("reconcile", list(tasks)))

    def acknowledge(self, status: TaskStatus) -> None:
        self.calls.append(("acknowledge", status))


def memory_master(
    clock: Callable[[], float] = time.time, store: Store | None = None, **options: Any
) -> MasterService:
    """A MasterService on an in-memory store and a RecordingResourceManager (`master.rm`)."""
    return MasterService(store or MemoryStore(), RecordingResourceManager(), clock, **options)

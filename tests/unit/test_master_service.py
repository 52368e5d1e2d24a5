"""MasterService: persist, then act; a failed commit changes nothing; launches are confirmed."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence
from typing import Any

import pytest

from adapters.store.memory import MemoryStore
from core.control import ControlPlane
from core.events import Event, WorkerLaunched
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.ports import TaskLaunch, TaskStatus
from core.scheduling import Offer
from core.worker import WorkerState
from service.master import MasterService, NotPersisted
from tests.fakes import RecordingResourceManager

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FillingStore(MemoryStore):
    full = False
    commits = 0

    def append(self, events: Sequence[Event]) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(events)

    async def commit(self, events: Sequence[Event]) -> None:
        self.commits += 1
        await asyncio.sleep(0)  # a write in a thread: others queue meanwhile
        self.append(events)


class CheckingResourceManager(RecordingResourceManager):
    """Fails the test if a task is launched before its placement is in the store."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__()
        self.store = store

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        persisted = {e.worker_id for e in self.store.events if isinstance(e, WorkerLaunched)}
        assert {t.task.request.worker_id for t in tasks} <= persisted
        super().launch(tasks)


def service(store: MemoryStore | None = None, group_commit: bool = False) -> MasterService:
    store = store or FillingStore()
    master = MasterService(
        store, CheckingResourceManager(store), Clock(), group_commit=group_commit
    )
    stages = (StageSchedulingInfo(2, MachineDefinition(1, 256)),)
    config = JobClusterConfig("demo.zip", "1", T0, SchedulingInfo(stages))
    master.run(lambda p, now: p.create_cluster(JobClusterDefinition("demo", (config,)), now))
    master.start()
    return master


def offer(n: int = 1) -> Offer:
    return Offer(f"o{n}", "agent-1", "host-1", 8.0, 4096.0, 0.0, 1000.0, ((31000, 31010),))


def recorded(master: MasterService) -> list[tuple[str, Any]]:
    rm = master.rm
    assert isinstance(rm, RecordingResourceManager)
    return rm.calls


def calls(master: MasterService, name: str) -> list[Any]:
    return [args for call, args in recorded(master) if call == name]


def test_effects_run_only_after_their_events_are_persisted() -> None:
    master = service()
    master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    assert calls(master, "revive"), "a pending worker asks for offers"
    master.offers([offer()])
    (launched,) = calls(master, "launch")
    assert len(launched) == 2


def test_a_failed_write_changes_nothing_and_the_next_one_works() -> None:
    master = service()
    store = master.store
    assert isinstance(store, FillingStore)
    before, events = master.plane.snapshot(), len(store.events)
    store.full = True
    with pytest.raises(NotPersisted) as failed:
        master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    assert failed.value.out_of_space and not master.healthy
    assert master.plane.snapshot() == before and len(store.events) == events
    assert master.plane.jobs == {}
    store.full = False
    outcome = master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    assert outcome.job_id == "demo-1" and master.healthy
    assert ControlPlane.replay(store.load()).snapshot() == master.plane.snapshot()


async def test_grouped_commits_share_writes_and_a_failure_voids_what_was_built_on_it() -> None:
    store = FillingStore()
    master = service(store, group_commit=True)
    submit = lambda p, now: p.submit_job("demo", JobRequest(), "alice", now)  # noqa: E731
    await asyncio.gather(*(master.call(submit) for _ in range(10)))
    assert len(master.plane.jobs) == 10 and store.commits <= 3
    before, events = master.plane.snapshot(), len(store.events)
    store.full = True
    results = await asyncio.gather(*(master.call(submit) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, NotPersisted) for r in results)
    assert master.plane.snapshot() == before and len(store.events) == events
    store.full = False
    assert (await master.call(submit)).job_id == "demo-11"


def test_registration_reconciles_placed_tasks_then_all_and_asks_for_offers() -> None:
    master = service()
    master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    master.offers([offer()])
    recorded(master).clear()
    master.registered("fw-1")
    assert [name for name, _ in recorded(master)] == ["reconcile", "reconcile", "revive"]
    explicit, implicit = calls(master, "reconcile")
    assert sorted(explicit) == [("demo-1-worker-0-1", "agent-1"), ("demo-1-worker-1-2", "agent-1")]
    assert implicit == []


def test_a_launch_the_agent_never_confirms_is_asked_about_and_replaced() -> None:
    master = service()
    clock = master.clock
    assert isinstance(clock, Clock)
    master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    master.offers([offer()])  # the ACCEPT is lost on its way: no status ever comes
    master.tick()
    assert calls(master, "reconcile") == []
    clock.now += 11
    master.tick()
    (asked,) = calls(master, "reconcile")
    assert sorted(t for t, _ in asked) == ["demo-1-worker-0-1", "demo-1-worker-1-2"]
    for task_id, agent_id in asked:
        master.task_status(
            TaskStatus(task_id, "TASK_LOST", agent_id, "unknown task", "REASON_RECONCILIATION")
        )
    job = master.plane.job("demo-1")
    numbers = sorted(w.number for w in job.current_workers())
    assert numbers == [3, 4] and all(w.state is WorkerState.Accepted for w in job.current_workers())


def test_a_kill_reaches_the_resource_manager_only_for_a_task_that_may_run() -> None:
    master = service()
    master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    master.run(lambda p, now: p.kill_job("demo-1", "alice", "done", now))
    assert calls(master, "kill") == []  # only launch requests: nothing outside holds them
    master.run(lambda p, now: p.heartbeat("ghost-1-worker-0-1", now))
    assert calls(master, "kill") == [("ghost-1-worker-0-1", "")]


async def test_a_caller_that_goes_away_loses_none_of_its_effects() -> None:
    master = service(group_commit=True)
    before = len(calls(master, "revive"))
    submit = asyncio.create_task(
        master.call(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    )
    await asyncio.sleep(0)  # its batch is queued, the write under way
    submit.cancel()  # the client hung up: aiohttp cancels the handler
    while master._flushing:  # noqa: SLF001  # the commit finishes in its own task
        await asyncio.sleep(0)
    assert "demo-1" in master.plane.jobs
    assert len(calls(master, "revive")) == before + 1, "the new job's workers ask for offers"

"""The Store port's contract: every adapter of the port passes these tests.

An adapter's test module subclasses `StoreContract` and provides `open_store(folder)`, which
opens (or re-opens) the adapter's store kept in `folder`, and `close_store(store)`. A store
that keeps nothing across a close (the in-memory fake) sets `durable = False`; the reopen
tests then reopen the same object. `control_plane_run(seed)` gives the events of a seeded
random run of the real ControlPlane, for any test that wants realistic events, and
`without(snapshot, archived)` what a compacted store's replay must equal.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.control import ControlPlane, Outcome
from core.effects import LaunchRequest
from core.errors import CommandRejected
from core.events import CronFired, Event, JobAccepted, WorkerAccepted
from core.model import (
    ClusterSla,
    CompletedReason,
    CronPolicy,
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    JobSla,
    Label,
    MachineDefinition,
    ParameterValue,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
    parse_worker_id,
)
from core.worker import WorkerState


def events(n: int, name: str = "c") -> list[Event]:
    """`n` small distinct events."""
    return [CronFired(f"{name}{i}", float(i)) for i in range(n)]


def _definition(rng: random.Random, name: str, now: float) -> JobClusterDefinition:
    stages = tuple(
        StageSchedulingInfo(
            rng.randint(1, 3),
            MachineDefinition(rng.choice([0.5, 1, 2]), 256.0),
            scalable=rng.random() < 0.5,
            scaling_policy=StageScalingPolicy(n + 1, 1, 4) if rng.random() < 0.3 else None,
        )
        for n in range(rng.randint(1, 2))
    )
    sla = rng.choice(
        [
            ClusterSla(),
            ClusterSla(min=1, max=2),
            ClusterSla(max=1),
            ClusterSla(cron_spec="0 */2 * * * ?", cron_policy=rng.choice(list(CronPolicy))),
        ]
    )
    params = (ParameterValue("mantis.job.worker.timeout.secs", rng.choice(["30", "inf"])),)
    return JobClusterDefinition(
        name,
        (JobClusterConfig(f"{name}.zip", "v1", now, SchedulingInfo(stages)),),
        sla=sla,
        parameters=params,
        labels=(Label("team", rng.choice(["a", "b"])),),
    )


def control_plane_run(
    seed: int, steps: int = 300, plane: ControlPlane | None = None, start: float = 1_000_000.0
) -> tuple[ControlPlane, list[Event]]:
    """A seeded random run of the real ControlPlane (a new one, or `plane` from `start` on):
    commands, observations and time. Choices depend only on live jobs and workers."""
    plane, batches = control_plane_batches(seed, steps, plane, start)
    return plane, [e for batch in batches for e in batch]


def control_plane_batches(
    seed: int, steps: int = 300, plane: ControlPlane | None = None, start: float = 1_000_000.0
) -> tuple[ControlPlane, list[list[Event]]]:
    """`control_plane_run`, its events in batches: one per outcome, as a master appends them."""
    rng = random.Random(seed)
    plane = plane or ControlPlane()
    batches: list[list[Event]] = []
    now = start

    def keep(events: list[Event]) -> None:
        if events:
            batches.append(events)

    names = ["alpha", "beta", "gamma"]

    def run(command: Callable[..., Outcome], *args: Any, **kwargs: Any) -> None:
        try:
            out = command(*args, **kwargs)
        except CommandRejected:
            return
        keep(out.events)
        for effect in out.effects:  # launch most of what the plane asks for, at once
            if isinstance(effect, LaunchRequest) and rng.random() < 0.8:
                keep(plane.worker_launched(effect.worker_id, "a1", "h1", (31000,), now).events)

    def some(items: list[str]) -> str:
        return rng.choice(sorted(items)) if items else "none-1"

    for _ in range(steps):
        now += rng.choice([0.5, 5.0, 30.0, 61.0, 95.0, 400.0])
        name = rng.choice(names)
        jobs = [j for j, job in plane.jobs.items() if not job.terminal]
        workers = [w for w, wk in plane.workers.items() if not wk.terminal]
        action = rng.randrange(14)
        if action == 0:
            run(plane.create_cluster, _definition(rng, name, now), now)
        elif action == 1:
            run(
                plane.update_artifact,
                name,
                f"{name}.zip",
                f"v{rng.randint(2, 9)}",
                "bob",
                now,
                skip_submit=rng.random() < 0.5,
            )
        elif action == 2:
            run(
                plane.update_sla,
                name,
                rng.choice([ClusterSla(), ClusterSla(min=1, max=1)]),
                "al",
                now,
            )
        elif action == 3:
            run(
                plane.disable_cluster if rng.random() < 0.5 else plane.enable_cluster,
                name,
                "al",
                now,
            )
        elif action == 4:
            run(plane.delete_cluster, name, "al", now)
        elif action in (5, 6):
            sla = JobSla(runtime_limit_secs=rng.choice([0, 0, 500]))
            run(plane.submit_job, name, JobRequest(job_sla=sla), "al", now)
        elif action == 7:
            run(plane.quick_submit, name, "bob", now)
        elif action == 8:
            run(plane.kill_job, some(jobs), "al", "test", now)
        elif action == 9:
            run(plane.scale_stage, some(jobs), 1, rng.randint(1, 4), "al", "test", now)
        elif action == 10:
            run(plane.heartbeat, some(workers), now)
        elif action == 11:
            state = rng.choice([WorkerState.Failed, WorkerState.Completed, WorkerState.Started])
            reason = rng.choice([None, CompletedReason.Error, CompletedReason.Lost])
            run(plane.worker_status, some(workers), state, now, reason, "status")
        elif action == 12:
            run(plane.resubmit_worker, some(jobs), rng.randint(1, 6), "al", "test", now)
        else:
            for wid in workers:
                if rng.random() < 0.7:
                    run(plane.heartbeat, wid, now)
            run(plane.tick, now)
    return plane, batches


def without(snapshot: dict[str, Any], archived: set[str]) -> dict[str, Any]:
    """A plane's snapshot with the archived jobs, their workers and their ids taken out."""
    return {
        **snapshot,
        "clusters": {
            n: (*c[:4], tuple(j for j in c[4] if j not in archived), c[5])
            for n, c in snapshot["clusters"].items()
        },
        "jobs": {j: job for j, job in snapshot["jobs"].items() if j not in archived},
        "workers": {
            w: wk for w, wk in snapshot["workers"].items() if parse_worker_id(w)[0] not in archived
        },
    }


class StoreContract:
    """Behaviour every Store adapter shows: ordered, complete, durable across reopen."""

    durable = True

    def open_store(self, folder: Path) -> Any:
        raise NotImplementedError

    def close_store(self, store: Any) -> None:
        raise NotImplementedError

    @pytest.fixture
    def folder(self, tmp_path: Path) -> Iterator[Path]:
        self.opened: list[Any] = []
        yield tmp_path / "store"
        for store in self.opened:
            self.close_store(store)

    def start(self, folder: Path) -> Any:
        store = self.open_store(folder)
        self.opened.append(store)
        return store

    def reopen(self, store: Any, folder: Path) -> Any:
        if not self.durable:
            return store
        self.close_store(store)
        return self.start(folder)

    def test_empty_store_loads_nothing(self, folder: Path) -> None:
        store = self.start(folder)
        assert list(store.load()) == []
        store.append([])
        assert list(store.load()) == []

    def test_load_returns_appended_events_in_order(self, folder: Path) -> None:
        store = self.start(folder)
        first, second = events(3, "a"), events(2, "b")
        store.append(first)
        store.append(second)
        assert list(store.load()) == first + second

    def test_many_events(self, folder: Path) -> None:
        store = self.start(folder)
        batches = [events(1 + i % 7, f"n{i}-") for i in range(300)]
        for batch in batches:
            store.append(batch)
        assert list(store.load()) == [e for batch in batches for e in batch]

    def test_reopen_keeps_everything_and_appends_after(self, folder: Path) -> None:
        store = self.start(folder)
        store.append(events(5, "a"))
        store = self.reopen(store, folder)
        assert list(store.load()) == events(5, "a")
        store.append(events(2, "b"))
        store = self.reopen(store, folder)
        assert list(store.load()) == events(5, "a") + events(2, "b")

    def test_control_plane_events_replay_after_reopen(self, folder: Path) -> None:
        plane, log = control_plane_run(seed=7)
        assert any(isinstance(e, JobAccepted) for e in log)
        assert sum(isinstance(e, WorkerAccepted) for e in log) > 10
        store = self.start(folder)
        for start in range(0, len(log), 10):
            store.append(log[start : start + 10])
        store = self.reopen(store, folder)
        assert ControlPlane.replay(store.load()).snapshot() == plane.snapshot()

    def test_concurrent_commits_all_land_in_call_order(self, folder: Path) -> None:
        store = self.start(folder)
        batches = [events(1 + i % 3, f"k{i}-") for i in range(50)]

        async def main() -> None:
            await asyncio.gather(*(store.commit(b) for b in batches))

        asyncio.run(main())
        store = self.reopen(store, folder)
        assert list(store.load()) == [e for batch in batches for e in batch]

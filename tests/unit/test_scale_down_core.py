"""A scale-down in the core: which workers go, how they drain, and when their task is killed."""

from __future__ import annotations

from core.control import ControlConfig, ControlPlane
from core.effects import KillTask, PublishSchedulingInfo
from core.model import CompletedReason, JobRequest
from core.ports import TaskStatus
from core.worker import WorkerState
from tests.unit.test_control import T0, cluster, info, run_all

GRACE = 10.0


def launched(workers: int = 3) -> tuple[ControlPlane, str]:
    cp = ControlPlane(ControlConfig(scale_down_grace_secs=GRACE))
    cp.create_cluster(cluster(scheduling=info(workers)), T0)
    jid = cp.submit_job("demo", JobRequest(), "alice", T0).job_id
    run_all(cp, jid, T0)
    return cp, jid


def kills(effects: list[object]) -> list[str]:
    return sorted(e.worker_id for e in effects if isinstance(e, KillTask))


def listed(cp: ControlPlane, jid: str) -> tuple[int, list[int]]:
    stage = cp.scheduling_info(jid).stages[0]
    return stage.num_workers, sorted(h.index for h in stage.hosts)


def test_removes_the_highest_indexes_completed_not_failed_and_not_resubmitted() -> None:
    cp, jid = launched(3)
    out = cp.scale_stage(jid, 1, 1, "alice", "less", T0 + 1)
    removed = [cp.workers[w] for w in ("demo-1-worker-1-2", "demo-1-worker-2-3")]
    assert all(w.state is WorkerState.Completed for w in removed)
    assert all(w.reason is CompletedReason.Killed for w in removed)
    assert [w.index for w in cp.job(jid).stages[1]] == [0]
    assert kills(out.effects) == []  # they drain first
    assert PublishSchedulingInfo(jid) in out.effects
    # Their task ending as killed or failed changes nothing: no replacement, no failure count.
    for w in removed:
        cp.task_status(TaskStatus(w.worker_id, "TASK_KILLED", "", ""), T0 + 2)
    assert [w.index for w in cp.job(jid).stages[1]] == [0]
    assert cp.job(jid).state.value == "Launched"


def test_draining_workers_stay_listed_past_num_workers_until_they_end() -> None:
    cp, jid = launched(3)
    cp.scale_stage(jid, 1, 1, "alice", "less", T0 + 1)
    assert listed(cp, jid) == (1, [0, 1, 2])
    # A draining worker's heartbeat does not get it killed as a dead worker's would.
    assert kills(cp.heartbeat("demo-1-worker-1-2", T0 + 2).effects) == []
    out = cp.worker_status("demo-1-worker-1-2", WorkerState.Completed, T0 + 3)
    assert PublishSchedulingInfo(jid) in out.effects
    assert listed(cp, jid) == (1, [0, 2])
    cp.task_status(TaskStatus("demo-1-worker-2-3", "TASK_FINISHED", "", ""), T0 + 3)
    assert listed(cp, jid) == (1, [0])
    assert kills(cp.tick(T0 + 1 + GRACE).effects) == []  # both ended by themselves


def test_a_worker_still_draining_after_the_grace_period_is_killed() -> None:
    cp, jid = launched(3)
    cp.scale_stage(jid, 1, 2, "alice", "less", T0 + 1)
    assert kills(cp.tick(T0 + GRACE).effects) == []
    out = cp.tick(T0 + 1 + GRACE)
    assert kills(out.effects) == ["demo-1-worker-2-3"]
    assert listed(cp, jid) == (2, [0, 1])
    assert kills(cp.heartbeat("demo-1-worker-2-3", T0 + 2 + GRACE).effects) == ["demo-1-worker-2-3"]


def test_a_worker_not_started_yet_has_nothing_to_drain() -> None:
    cp, jid = launched(1)
    cp.scale_stage(jid, 1, 3, "alice", "more", T0 + 1)
    out = cp.scale_stage(jid, 1, 1, "alice", "less", T0 + 2)
    assert kills(out.effects) == ["demo-1-worker-1-2", "demo-1-worker-2-3"]
    assert listed(cp, jid) == (1, [0])


def test_killing_the_job_kills_its_draining_workers() -> None:
    cp, jid = launched(2)
    cp.scale_stage(jid, 1, 1, "alice", "less", T0 + 1)
    out = cp.kill_job(jid, "alice", "done", T0 + 2)
    assert kills(out.effects) == ["demo-1-worker-0-1", "demo-1-worker-1-2"]
    assert kills(cp.tick(T0 + 1 + GRACE).effects) == []

"""The kill of a worker a scale-down removed carries the scale-down grace, and the pymesos
adapter sends it as the KILL call's `kill_policy` (Mesos' Call.Kill.kill_policy,
include/mesos/v1/scheduler/scheduler.proto), so the agent waits that long after SIGTERM before
SIGKILL: the worker flushes what it holds instead of being cut off at the agent's default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.mesos.resource_manager import _Driver, kill_policy
from core.control import ControlConfig, ControlPlane, Outcome
from core.effects import KillTask
from core.events import Event
from core.model import JobRequest
from tests.eventually import eventually
from tests.fakes import RecordingResourceManager, memory_master
from tests.unit.test_control import T0, cluster, info

GRACE = 7.5


def launched(workers: int) -> tuple[ControlPlane, str, list[Event]]:
    """A job whose stage 1 runs `workers` Started workers, and the events of the log."""
    cp = ControlPlane(ControlConfig(scale_down_grace_secs=GRACE))
    log = list(cp.create_cluster(cluster(scheduling=info(workers)), T0).events)
    out = cp.submit_job("demo", JobRequest(), "alice", T0)
    log += out.events
    for w in cp.job(out.job_id).current_workers():
        log += cp.worker_launched(w.worker_id, "agent-1", "host-1", (31000,), T0).events
        log += cp.heartbeat(w.worker_id, T0).events
    return cp, out.job_id, log


def graces(effects: list[Any]) -> dict[str, float | None]:
    return {e.worker_id: e.grace_secs for e in effects if isinstance(e, KillTask)}


def test_a_draining_worker_killed_after_the_drain_gets_the_grace_to_flush() -> None:
    cp, jid, _ = launched(2)
    cp.scale_stage(jid, 1, 1, "alice", "less", T0 + 1)
    assert graces(cp.tick(T0 + 1 + GRACE).effects) == {"demo-1-worker-1-2": GRACE}
    # Its next heartbeat (it is no longer draining) gets the same grace, not the default.
    assert graces(cp.heartbeat("demo-1-worker-1-2", T0 + 2 + GRACE).effects) == {
        "demo-1-worker-1-2": GRACE
    }


def test_a_job_killed_while_a_worker_drains_gives_only_that_worker_the_grace() -> None:
    cp, jid, _ = launched(2)
    cp.scale_stage(jid, 1, 1, "alice", "less", T0 + 1)
    out = cp.kill_job(jid, "alice", "done", T0 + 2)
    assert graces(out.effects) == {"demo-1-worker-0-1": None, "demo-1-worker-1-2": GRACE}


def test_a_new_leader_kills_a_scaled_down_worker_with_the_grace_and_others_without() -> None:
    cp, jid, log = launched(3)
    log += cp.scale_stage(jid, 1, 2, "alice", "less", T0 + 1).events
    leader = ControlPlane.replay(log, ControlConfig(scale_down_grace_secs=GRACE))
    leader.recover(T0 + 3)
    # It does not know worker 2 drains: its heartbeat, from a terminal worker, kills it.
    assert graces(leader.heartbeat("demo-1-worker-2-3", T0 + 3).effects) == {
        "demo-1-worker-2-3": GRACE
    }
    assert graces(leader.heartbeat("ghost", T0 + 3).effects) == {"ghost": None}


def test_a_removed_worker_not_started_yet_is_killed_without_a_grace() -> None:
    cp, jid, _ = launched(1)
    cp.scale_stage(jid, 1, 2, "alice", "more", T0 + 1)
    out = cp.scale_stage(jid, 1, 1, "alice", "less", T0 + 2)
    assert graces(out.effects) == {"demo-1-worker-1-2": None}


def launch(wid: str) -> Callable[[ControlPlane, float], Outcome]:
    return lambda p, now: p.worker_launched(wid, "agent-1", "host-1", (31000,), now)


def heartbeat(wid: str) -> Callable[[ControlPlane, float], Outcome]:
    return lambda p, now: p.heartbeat(wid, now)


async def test_the_master_hands_the_grace_to_the_resource_manager() -> None:
    clock = [T0]
    master = memory_master(lambda: clock[0])
    master.run(lambda p, now: p.create_cluster(cluster(scheduling=info(2)), now))
    jid = master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now)).job_id
    for w in master.plane.job(jid).current_workers():
        master.run(launch(w.worker_id))
        master.run(heartbeat(w.worker_id))
    master.run(lambda p, now: p.scale_stage(jid, 1, 1, "alice", "less", now))
    grace = master.plane.config.scale_down_grace_secs
    clock[0] += grace + 1
    rm = master.rm
    assert isinstance(rm, RecordingResourceManager)
    master.tick()
    await eventually(lambda: any(call == "kill" for call, _ in rm.calls), "a kill", 5)
    assert [args for call, args in rm.calls if call == "kill"] == [
        ("demo-1-worker-1-2", "agent-1", grace)
    ]


def test_kill_policy_is_mesos_duration_in_nanoseconds() -> None:
    assert kill_policy(None) is None
    assert kill_policy(GRACE) == {"grace_period": {"nanoseconds": 7_500_000_000}}
    assert kill_policy(0.3) == {"grace_period": {"nanoseconds": 300_000_000}}


class _Recording(_Driver):
    """The driver, never started, with what it would send recorded."""

    def __init__(self) -> None:
        super().__init__(None, {"id": {"value": "fw-1"}}, "127.0.0.1:5050")
        self.stream_id = "stream-1"  # as if subscribed: `connected`
        self.sent: list[dict[str, Any]] = []

    def _send(self, body: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        self.sent.append(body)


def test_the_driver_sends_kill_with_agent_id_and_kill_policy() -> None:
    driver = _Recording()
    driver.killTask({"value": "w-1"}, {"value": "agent-1"}, kill_policy(GRACE))
    driver.killTask({"value": "w-2"})
    assert driver.sent == [
        {
            "type": "KILL",
            "framework_id": {"value": "fw-1"},
            "kill": {
                "task_id": {"value": "w-1"},
                "agent_id": {"value": "agent-1"},
                "kill_policy": {"grace_period": {"nanoseconds": 7_500_000_000}},
            },
        },
        {"type": "KILL", "framework_id": {"value": "fw-1"}, "kill": {"task_id": {"value": "w-2"}}},
    ]

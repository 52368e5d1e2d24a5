"""Moving workers off disabled agents: the pace (core/migration.py), property-tested, and the
control plane carrying it out (offers declined, workers resubmitted elsewhere, replayed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.compaction import compact
from core.control import ControlPlane
from core.effects import DeclineOffers, KillTask
from core.errors import InvalidRequest
from core.events import AgentModeChanged, Event
from core.migration import (
    DEFAULT_MIGRATION,
    AgentMode,
    MigrationStrategy,
    Pace,
    WorkerMigrationConfig,
    to_move,
)
from core.model import (
    CompletedReason,
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.scheduling import Offer
from core.worker import WorkerState

T0 = 1_800_000_000.0

# ---------------------------------------------------------------------- the configuration


def test_the_default_is_mantis_25_percent_a_minute() -> None:
    assert DEFAULT_MIGRATION.strategy is MigrationStrategy.PERCENTAGE
    assert DEFAULT_MIGRATION.pace() == Pace(25, 60.0)
    one = WorkerMigrationConfig.from_json({"strategy": "ONE_WORKER"}, "migrationConfig")
    assert one.pace() == Pace(None, 0.0)
    assert WorkerMigrationConfig.from_json({}, "m").strategy is MigrationStrategy.ONE_WORKER
    numbers_as_strings = {"strategy": "PERCENTAGE", "configString": '{"percentToMove":"10"}'}
    assert WorkerMigrationConfig.from_json(numbers_as_strings, "m").pace() == Pace(10, 60.0)
    empty = {"strategy": "PERCENTAGE", "configString": "{}"}  # as Mantis' own examples send
    assert WorkerMigrationConfig.from_json(empty, "m").pace() == Pace(25, 60.0)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([], "migrationConfig"),
        ({"strategy": "FAST"}, "migrationConfig.strategy"),
        ({"strategy": {}}, "migrationConfig.strategy"),
        ({"strategy": "PERCENTAGE", "configString": 25}, "migrationConfig.configString"),
        ({"strategy": "PERCENTAGE", "configString": "{"}, "migrationConfig.configString"),
        ({"strategy": "PERCENTAGE", "configString": "[]"}, "migrationConfig.configString"),
        (
            {"strategy": "PERCENTAGE", "configString": '{"percentToMove":0}'},
            "migrationConfig.configString.percentToMove",
        ),
        (
            {"strategy": "PERCENTAGE", "configString": '{"percentToMove":5,"intervalMs":-1}'},
            "migrationConfig.configString.intervalMs",
        ),
        (
            {"strategy": "PERCENTAGE", "configString": '{"percentToMove":true}'},
            "migrationConfig.configString.percentToMove",
        ),
    ],
)
def test_a_bad_config_names_its_field(value: object, field: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        WorkerMigrationConfig.from_json(value, "migrationConfig")
    assert e.value.field == field


# ---------------------------------------------------------------------- the pace


def test_percentage_moves_its_share_then_waits_for_the_interval() -> None:
    pace = Pace(25, 60.0)
    ids = [f"w{i}" for i in range(8)]
    assert to_move(pace, ids, 8, 0, None, T0) == ("w0", "w1")  # ceil(8 * 25%) = 2
    assert to_move(pace, ids[2:], 8, 0, T0, T0 + 59) == ()
    assert to_move(pace, ids[2:], 8, 1, T0, T0 + 60) == ("w2",)  # one still away
    assert to_move(Pace(1, 0.0), ids, 8, 0, None, T0) == ("w0",)  # at least one


def test_one_worker_waits_for_every_worker_to_be_started() -> None:
    pace = Pace(None, 0.0)
    assert to_move(pace, ["a", "b"], 4, 0, None, T0) == ("a",)
    assert to_move(pace, ["b"], 4, 1, T0, T0 + 3600) == ()
    assert to_move(pace, ["b"], 4, 0, T0, T0) == ("b",)


paces = st.one_of(
    st.just(Pace(None, 0.0)),
    st.builds(Pace, st.integers(1, 100), st.sampled_from([0.0, 1.0, 3.0, 10.0])),
)


@given(
    pace=paces,
    total=st.integers(1, 30),
    data=st.data(),
)
def test_the_pace_is_never_exceeded_and_every_worker_moves(
    pace: Pace, total: int, data: st.DataObject
) -> None:
    """A job of `total` workers, some on a disabled agent, some not Started yet. Each second:
    some away workers start (each within `slow` seconds), then the pace decides. Never more
    than the budget away after a move, never two PERCENTAGE moves within the interval, and
    every worker on the disabled agent is moved within a bound."""
    on_disabled = data.draw(st.sets(st.integers(0, total - 1), min_size=1), "on disabled")
    slow = data.draw(st.integers(0, 5), "longest start")
    away: dict[str, float] = {}  # worker id -> when it is Started at the latest
    for i in data.draw(st.sets(st.integers(0, total - 1)), "away at first"):
        away[f"w{i}"] = slow
    left = [f"w{i}" for i in sorted(on_disabled)]
    budget, last = pace.budget(total), None
    bound = len(left) * (slow + pace.interval_secs + 2) + slow + 1
    now = 0.0
    while left:
        assert now <= bound, f"{left} still on the disabled agent at {now}"
        for wid, latest in sorted(away.items()):
            if latest <= now or data.draw(st.booleans(), f"{wid} starts at {now}"):
                del away[wid]
        moved = to_move(pace, left, total, len(away), last, now)
        if moved:
            assert len(away) + len(set(moved) - set(away)) <= max(budget, len(away))
            assert len(away) < budget
            if pace.percent is not None and last is not None:
                assert now >= last + pace.interval_secs
            assert list(moved) == left[: len(moved)]
            last = now
            for wid in moved:
                left.remove(wid)
                away[wid] = now + slow  # its replacement
        now += 1.0


# ---------------------------------------------------------------------- the control plane


def _plane(
    strategy: WorkerMigrationConfig, workers: int = 4, log: list[Event] | None = None
) -> tuple[ControlPlane, str]:
    """A job of `workers` on agent-a, all Started; `log` collects the events."""
    info = SchedulingInfo((StageSchedulingInfo(workers, MachineDefinition(1, 256)),))
    config = JobClusterConfig("demo.zip", "1", T0, info)
    plane = ControlPlane()
    seen = [] if log is None else log
    seen += plane.create_cluster(
        JobClusterDefinition("demo", (config,), migration_config=strategy), T0
    ).events
    submitted = plane.submit_job("demo", JobRequest(), "alice", T0)
    jid = submitted.job_id
    seen += submitted.events
    seen += plane.on_offers(
        [Offer("o1", "agent-a", "host-a", 64, 65536, 10_000, 1000, ((31000, 32000),))], T0
    ).events
    for w in plane.job(jid).current_workers():
        seen += plane.heartbeat(w.worker_id, T0).events
    return plane, jid


def _start_pending(plane: ControlPlane, jid: str, now: float) -> None:
    plane.on_offers(
        [Offer(f"b{now}", "agent-b", "host-b", 64, 65536, 10_000, 1000, ((31000, 32000),))], now
    )
    for w in plane.job(jid).current_workers():
        plane.heartbeat(w.worker_id, now)


def test_a_drained_agent_gets_no_workers_and_one_worker_moves_one_at_a_time() -> None:
    plane, jid = _plane(WorkerMigrationConfig(MigrationStrategy.ONE_WORKER, ""))
    assert {w.agent_id for w in plane.job(jid).current_workers()} == {"agent-a"}
    plane.set_agent_mode("agent-a", "host-a", AgentMode.DRAINING, "ops", T0)
    out = plane.tick(T0 + 1)
    moved = [e for e in out.effects if isinstance(e, KillTask)]
    assert len(moved) == 1 and moved[0].agent_id == "agent-a"
    old = plane.workers[moved[0].worker_id]
    assert (old.state, old.reason) == (WorkerState.Failed, CompletedReason.Relaunched)
    assert "moved off draining agent host-a" in old.message
    assert not [e for e in plane.tick(T0 + 2).effects if isinstance(e, KillTask)]  # waits
    declined = plane.on_offers(
        [Offer("again", "agent-a", "host-a", 64, 65536, 10_000, 1000, ((31000, 32000),))], T0 + 2
    )
    assert declined.effects == [DeclineOffers(("again",), 5.0)] and not declined.events
    for step in range(3, 12):
        _start_pending(plane, jid, T0 + step)
        plane.tick(T0 + step)
    current = plane.job(jid).current_workers()
    assert {w.agent_id for w in current} == {"agent-b"}
    assert all(w.state is WorkerState.Started for w in current)
    assert plane.workers_on("agent-a") == []


def test_percentage_moves_half_then_waits_and_enable_stops_it() -> None:
    half = WorkerMigrationConfig(
        MigrationStrategy.PERCENTAGE, '{"percentToMove":50,"intervalMs":10000}'
    )
    plane, jid = _plane(half)
    plane.set_agent_mode("agent-a", "host-a", AgentMode.DISABLED, "ops", T0)
    first = [e for e in plane.tick(T0 + 1).effects if isinstance(e, KillTask)]
    assert len(first) == 2
    _start_pending(plane, jid, T0 + 2)
    assert not [e for e in plane.tick(T0 + 5).effects if isinstance(e, KillTask)]
    plane.set_agent_mode("agent-a", "host-a", AgentMode.ACTIVE, "ops", T0 + 6)
    assert not [e for e in plane.tick(T0 + 20).effects if isinstance(e, KillTask)]
    assert len(plane.workers_on("agent-a")) == 2


def test_modes_and_migration_configs_replay_and_survive_compaction() -> None:
    log: list[Event] = []
    plane, _ = _plane(WorkerMigrationConfig(MigrationStrategy.ONE_WORKER, ""), log=log)
    for out in (
        plane.set_agent_mode("agent-a", "host-a", AgentMode.DRAINING, "ops", T0),
        plane.set_agent_mode("agent-c", "host-c", AgentMode.DISABLED, "ops", T0),
        plane.set_agent_mode("agent-c", "host-c", AgentMode.ACTIVE, "ops", T0 + 1),
        plane.update_migration_config("demo", DEFAULT_MIGRATION, "ops", T0 + 1),
    ):
        log += out.events
    assert plane.set_agent_mode("agent-a", "host-a", AgentMode.DRAINING, "ops", T0).events == []
    assert plane.agent_modes == {"agent-a": (AgentMode.DRAINING, "host-a")}
    assert plane.cluster("demo").definition.migration_config == DEFAULT_MIGRATION
    replayed = ControlPlane.replay(compact(log).live)
    assert replayed.agent_modes == plane.agent_modes
    assert [type(e) for e in compact(log).live].count(AgentModeChanged) == 1
    with pytest.raises(InvalidRequest):
        plane.set_agent_mode("", "", AgentMode.DISABLED, "ops", T0)

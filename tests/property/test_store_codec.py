"""The store's codec round-trips every event type exactly, and a real run replays from bytes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.store.codec import PAYLOAD_PREFIX, CodecError, decode, encode
from core.control import ControlPlane
from core.events import (
    EVENT_TYPES,
    AgentModeChanged,
    ClusterCreated,
    ClusterDeleted,
    ClusterEnabled,
    ClusterUpdated,
    CronFired,
    Event,
    JobAccepted,
    JobStateChanged,
    StageScaled,
    WorkerAccepted,
    WorkerLaunched,
    WorkerStateChanged,
)
from core.job import JobState
from core.migration import AgentMode, MigrationStrategy, WorkerMigrationConfig
from core.model import (
    ClusterSla,
    CompletedReason,
    CronPolicy,
    DurationType,
    JobClusterConfig,
    JobClusterDefinition,
    JobConstraint,
    JobDefinition,
    JobOwner,
    JobSla,
    Label,
    MachineDefinition,
    ParameterValue,
    ScalingStrategy,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
)
from core.worker import WorkerState
from tests.contracts.store import control_plane_run

TEXT = st.text(max_size=12)
NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-]{0,12}", fullmatch=True)
TIME = st.floats(allow_nan=False)  # infinities too: a user can set a timeout of "inf"
INT = st.integers(-(2**70), 2**70)  # beyond 64 bits too: such limits pass validation
SMALL = st.integers(0, 20)
REASON = st.none() | st.sampled_from(CompletedReason)
CONSTRAINTS = st.lists(st.sampled_from(JobConstraint), max_size=2, unique=True).map(tuple)

machines = st.builds(
    MachineDefinition,
    st.floats(0.01, 8),
    st.floats(1, 28000),
    st.floats(0, 1024),
    st.floats(0, 1e6),
    st.integers(0, 100),
)
strategies = st.builds(
    ScalingStrategy,
    TEXT,
    st.floats(0, 100),
    st.floats(0, 100),
    st.just(1),
    SMALL.map(lambda n: n + 1),
)
policies = st.builds(
    StageScalingPolicy,
    SMALL,
    SMALL,
    SMALL,
    st.integers(-3, 3),
    st.integers(-3, 3),
    SMALL,
    st.lists(strategies, max_size=2).map(tuple),
)
stages = CONSTRAINTS.flatmap(
    lambda c: st.builds(
        StageSchedulingInfo,
        st.integers(1, 1500),
        machines,
        st.just(c[:1]),
        st.just(c[1:]),
        st.booleans(),
        st.none() | policies,
    )
)
scheduling = st.lists(stages, min_size=1, max_size=3).map(lambda s: SchedulingInfo(tuple(s)))
params = st.lists(
    st.builds(ParameterValue, NAME, TEXT), max_size=3, unique_by=lambda p: p.name
).map(tuple)
labels = st.lists(st.builds(Label, NAME, TEXT), max_size=3, unique_by=lambda p: p.name).map(tuple)
job_slas = st.builds(
    JobSla,
    st.integers(0, 2**70),
    st.integers(0, 10**6),
    TEXT,
    st.sampled_from(DurationType)
    | st.sampled_from(["Perpetual", "Transient"]),  # plain strings happen
    st.sampled_from(["", '{"unique": "x"}']),
)
cluster_slas = st.one_of(
    st.builds(ClusterSla, st.integers(0, 5), st.integers(5, 100)),
    st.builds(
        ClusterSla,
        st.just(0),
        st.just(0),
        st.just("0 */2 * * * ?"),
        st.none() | st.sampled_from(CronPolicy),
    ),
)
configs = st.builds(JobClusterConfig, NAME, NAME, TIME, scheduling, TEXT)
clusters = st.builds(
    JobClusterDefinition,
    NAME,
    st.lists(configs, min_size=1, max_size=4, unique_by=lambda c: c.version).map(tuple),
    st.builds(JobOwner, TEXT, TEXT, TEXT, TEXT, TEXT),
    TEXT,
    cluster_slas,
    job_slas,
    params,
    labels,
    st.builds(
        WorkerMigrationConfig,
        st.just(MigrationStrategy.PERCENTAGE),
        st.builds(
            '{{"percentToMove":{},"intervalMs":{}}}'.format,
            st.integers(1, 100),
            st.integers(0, 86_400_000),
        ),
    )
    | st.just(WorkerMigrationConfig(MigrationStrategy.ONE_WORKER, "")),
)
jobs = st.builds(
    JobDefinition,
    NAME,
    TEXT,
    NAME,
    NAME,
    scheduling,
    TEXT,
    params,
    labels,
    job_slas,
    st.integers(0, 10**6),
)

BUILDERS: dict[type, st.SearchStrategy[Event]] = {
    ClusterCreated: st.builds(ClusterCreated, clusters, TIME),
    ClusterUpdated: st.builds(ClusterUpdated, clusters, TEXT, TEXT, TIME),
    ClusterDeleted: st.builds(ClusterDeleted, NAME, TEXT, TIME),
    ClusterEnabled: st.builds(ClusterEnabled, NAME, st.booleans(), TEXT, TIME),
    CronFired: st.builds(CronFired, NAME, TIME),
    JobAccepted: st.builds(JobAccepted, TEXT, INT, jobs, TEXT, TIME, TIME, TIME),
    WorkerAccepted: st.builds(WorkerAccepted, TEXT, TEXT, INT, INT, INT, TIME, TIME, INT, INT, INT),
    WorkerLaunched: st.builds(
        WorkerLaunched,
        TEXT,
        TEXT,
        TEXT,
        st.lists(st.integers(0, 65535), max_size=5).map(tuple),
        TIME,
    ),
    WorkerStateChanged: st.builds(
        WorkerStateChanged, TEXT, st.sampled_from(WorkerState), TIME, REASON, TEXT
    ),
    JobStateChanged: st.builds(
        JobStateChanged, TEXT, st.sampled_from(JobState), TIME, REASON, TEXT, TEXT
    ),
    StageScaled: st.builds(StageScaled, TEXT, INT, INT, TEXT, TEXT, TIME),
    AgentModeChanged: st.builds(
        AgentModeChanged, TEXT, TEXT, st.sampled_from(AgentMode), TEXT, TIME
    ),
}


def test_the_strategy_covers_every_event_type() -> None:
    assert set(BUILDERS) == set(EVENT_TYPES)


@given(st.one_of(*BUILDERS.values()))
def test_every_event_round_trips_exactly(event: Event) -> None:
    payload = encode(event)
    assert payload.startswith(PAYLOAD_PREFIX + type(event).__name__.encode())
    back = decode(payload)
    assert back == event
    assert type(back) is type(event)
    assert encode(back) == payload  # and the bytes are stable


def test_a_real_run_round_trips_and_replays_to_the_same_state() -> None:
    for seed in range(3):
        plane, log = control_plane_run(seed)
        assert {type(e) for e in log} >= set(EVENT_TYPES) - {StageScaled, AgentModeChanged}
        back = [decode(encode(e)) for e in log]
        assert back == log
        assert ControlPlane.replay(back).snapshot() == plane.snapshot()


def test_types_come_back_as_enums_tuples_and_dataclasses() -> None:
    _, log = control_plane_run(1)
    accepted = next(decode(encode(e)) for e in log if isinstance(e, JobAccepted))
    assert isinstance(accepted, JobAccepted)
    assert isinstance(accepted.definition.scheduling_info.stages, tuple)
    assert isinstance(
        accepted.definition.scheduling_info.stages[0].machine_definition, MachineDefinition
    )
    changed = decode(encode(WorkerStateChanged("w", WorkerState.Failed, 1.0, CompletedReason.Lost)))
    assert isinstance(changed, WorkerStateChanged)
    assert changed.state is WorkerState.Failed and changed.reason is CompletedReason.Lost


def test_non_finite_floats_survive() -> None:
    event = decode(encode(CronFired("a", float("nan"))))
    assert isinstance(event, CronFired) and math.isnan(event.at)
    assert decode(encode(CronFired("a", float("-inf")))) == CronFired("a", float("-inf"))


def test_a_missing_field_with_a_default_takes_it_and_unknown_ones_are_refused() -> None:
    old = b'{"type":"WorkerStateChanged","worker_id":"w","state":"Started","at":2.0}'
    assert decode(old) == WorkerStateChanged("w", WorkerState.Started, 2.0)
    with pytest.raises(CodecError, match="missing field 'at'"):
        decode(b'{"type":"CronFired","name":"a"}')
    with pytest.raises(CodecError, match="unknown fields"):
        decode(b'{"type":"CronFired","name":"a","at":1.0,"zone":"x"}')
    with pytest.raises(CodecError, match="missing field 'at'"):  # as many fields, one unknown
        decode(b'{"type":"CronFired","name":"a","zone":"x"}')


@pytest.mark.parametrize("payload", [b"", b"[1]", b'{"type":"Nope"}', b"{", b'"x"'])
def test_garbage_is_a_codec_error(payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode(payload)


def test_what_json_cannot_hold_is_refused_before_writing() -> None:
    with pytest.raises(CodecError, match="surrogates"):
        encode(ClusterDeleted("\ud800", "u", 1.0))

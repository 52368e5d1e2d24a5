"""Properties of stage autoscaling (issue 13): bounds, cooldown, reaction, no flapping, PID settling.

The pure `StageAutoscaler` is driven sample by sample, then the same through the ControlPlane
fed by heartbeat payloads, with a replay after every tick.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from core.autoscaling import (
    AUTOSCALER_USER,
    JobAutoscaleSettings,
    PidConfig,
    Reason,
    StageAutoscaler,
)
from core.control import ControlPlane, Outcome
from core.events import Event, StageScaled
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    ScalingStrategy,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
)
from core.worker import WorkerState

T0 = 1_800_000_000.0
MACHINE = MachineDefinition(1.0, 1024.0)
RULES = [Reason.CPU, Reason.Memory, Reason.Network, Reason.DataDrop, Reason.RPS]
PERCENT = st.floats(0, 200, allow_nan=False)


@st.composite
def strategies(draw: st.DrawFn, reason: Reason | None = None) -> ScalingStrategy:
    down = draw(st.floats(1, 60))
    up = draw(st.floats(down, 150))
    of = draw(st.integers(1, 6))
    count = draw(st.integers(1, of))
    return ScalingStrategy(reason or draw(st.sampled_from(RULES)), down, up, count, of)


@st.composite
def policies(draw: st.DrawFn, reason: Reason | None = None) -> StageScalingPolicy:
    lo = draw(st.integers(1, 5))
    hi = draw(st.integers(lo + 1, 12))
    rules = draw(st.lists(strategies(reason), min_size=1, max_size=3, unique_by=lambda s: s.reason))
    return StageScalingPolicy(
        1,
        lo,
        hi,
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
        draw(st.sampled_from([0, 20, 60, 300])),
        tuple(rules),
    )


@dataclass
class Run:
    """A stage driven sample by sample: its sizes and the times it scaled."""

    sizes: list[int]
    scaled_at: list[float]


def drive(
    scaler: StageAutoscaler,
    size: int,
    samples: list[dict[Reason, float]],
    period: float = 20.0,
    started_at: float | None = None,
) -> Run:
    run = Run([size], [])
    for i, signals in enumerate(samples, start=1):
        now = T0 + period * i
        last = run.scaled_at[-1] if run.scaled_at else started_at
        decision = scaler.decide(signals, size, now, last)
        if decision is not None:
            size = decision.workers
            run.scaled_at.append(now)
        run.sizes.append(size)
    return run


def signal_lists(reasons: list[Reason]) -> st.SearchStrategy[list[dict[Reason, float]]]:
    return st.lists(
        st.fixed_dictionaries({}, optional=dict.fromkeys(reasons, PERCENT)), max_size=60
    )


@st.composite
def pid_configs(draw: st.DrawFn) -> PidConfig:
    point = draw(st.floats(10, 100))
    return PidConfig(
        Reason.CPU,
        point,
        (draw(st.floats(0, point)), draw(st.floats(0, 100))),
        draw(st.floats(0, 0.2)),
        draw(st.floats(0, 0.01)),
        draw(st.floats(0, 0.01)),
        draw(st.floats(0, 500)),
    )


@given(st.data())
def test_size_stays_within_min_max_and_scalings_respect_the_cooldown(data: st.DataObject) -> None:
    """Rules, or a PID on CPU when drawn."""
    policy = data.draw(policies())
    pid = data.draw(st.none() | pid_configs())
    clutch = {1: pid} if pid is not None else {}
    scaler = StageAutoscaler(policy, MACHINE, JobAutoscaleSettings(clutch=clutch), 1)
    start = data.draw(st.integers(policy.min, policy.max))
    run = drive(scaler, start, data.draw(signal_lists(RULES)), started_at=T0)
    assert all(policy.min <= n <= policy.max for n in run.sizes)
    gaps = [b - a for a, b in zip([T0, *run.scaled_at], run.scaled_at, strict=False)]
    assert all(gap >= policy.cool_down_secs for gap in gaps)


@given(st.data())
def test_a_sustained_signal_scales_up_within_rolling_count_samples(data: st.DataObject) -> None:
    policy = data.draw(policies())
    scaler = StageAutoscaler(policy, MACHINE, JobAutoscaleSettings(), 1)
    rule = data.draw(st.sampled_from(policy.strategies))
    high = {Reason(rule.reason): rule.scale_up_above_pct + data.draw(st.floats(0.1, 100))}
    start = data.draw(st.integers(policy.min, policy.max - 1))
    cooldown_samples = math.ceil(policy.cool_down_secs / 20.0)
    n = max(rule.rolling_count, cooldown_samples)
    run = drive(scaler, start, [high] * n, started_at=T0)
    assert run.sizes[-1] == min(start + policy.increment, policy.max)
    assert len(run.scaled_at) == 1


@given(st.data())
def test_a_flapping_signal_does_not_make_the_stage_oscillate(data: st.DataObject) -> None:
    """Samples alternate above scale-up and below scale-down: the stage never shrinks."""
    policy = data.draw(policies())
    scaler = StageAutoscaler(policy, MACHINE, JobAutoscaleSettings(), 1)
    high = {Reason(s.reason): s.scale_up_above_pct + 1 for s in policy.strategies}
    low = {Reason(s.reason): s.scale_down_below_pct / 2 for s in policy.strategies}
    first = data.draw(st.booleans())
    samples = [high if (i % 2 == 0) == first else low for i in range(data.draw(st.integers(2, 80)))]
    run = drive(scaler, data.draw(st.integers(policy.min, policy.max)), samples)
    assert run.sizes == sorted(run.sizes)


@given(
    needed=st.floats(3, 30),  # the (fractional) size at the set point: load / set point
    set_point=st.floats(40, 80),
    gain=st.floats(0.2, 1.0),  # kp * set point
    ki=st.floats(0, 0.02),
    kd=st.floats(0, 0.005),
    start=st.integers(1, 30),
)
def test_the_pid_settles_without_oscillating_on_a_simple_plant(
    needed: float, set_point: float, gain: float, ki: float, kd: float, start: int
) -> None:
    """Plant: per-worker CPU = load / size. With the dead band a third of the set point either
    side and at least 3 workers needed, some size is inside it; the controller gets there
    monotonically (no overshoot) and stays."""
    load = needed * set_point
    rope = (set_point / 3, set_point / 3)
    pid = PidConfig(Reason.CPU, set_point, rope, gain / set_point, ki / set_point, kd / set_point)
    policy = StageScalingPolicy(1, 1, 40, 1, 1, 0, (ScalingStrategy("Clutch"),))
    scaler = StageAutoscaler(policy, MACHINE, JobAutoscaleSettings(clutch={1: pid}), 1)
    size, sizes = start, [start]
    for i in range(80):
        decision = scaler.decide({Reason.CPU: load / size}, size, T0 + i, None)
        size = decision.workers if decision else size
        sizes.append(size)
    assert set_point - rope[0] <= load / size <= set_point + rope[1]
    moves = [b - a for a, b in zip(sizes, sizes[1:], strict=False) if b != a]
    assert all(m > 0 for m in moves) or all(m < 0 for m in moves), sizes
    assert len(set(sizes[-20:])) == 1


# ---------------------------------------------------------------------------- through the core


class Job:
    """A launched job whose stage 1 has `policy`, fed through heartbeats; its log kept."""

    def __init__(self, policy: StageScalingPolicy, size: int) -> None:
        stage = StageSchedulingInfo(size, MACHINE, scalable=True, scaling_policy=policy)
        config = JobClusterConfig("a.zip", "1", T0, SchedulingInfo((stage,)))
        self.cp = ControlPlane()
        self.log: list[Event] = []
        self.run(lambda: self.cp.create_cluster(JobClusterDefinition("auto", (config,)), T0))
        self.jid = self.run(lambda: self.cp.submit_job("auto", JobRequest(), "u", T0)).job_id
        self.start_new_workers(T0)

    def run(self, call: Callable[[], Outcome]) -> Outcome:
        out = call()
        self.log += out.events
        return out

    def start_new_workers(self, now: float) -> None:
        for w in self.cp.job(self.jid).current_workers():
            if w.state is WorkerState.Accepted:
                self.run(partial(self.cp.worker_launched, w.worker_id, "a", "h", (1,), now))
                self.run(partial(self.cp.heartbeat, w.worker_id, now))

    def step(self, payloads: dict[str, str], now: float) -> None:
        self.start_new_workers(now)
        for w in self.cp.job(self.jid).current_workers():
            if w.state is WorkerState.Started:
                self.run(partial(self.cp.heartbeat, w.worker_id, now, payloads))
        self.run(lambda: self.cp.tick(now))


@settings(max_examples=40)
@given(st.data())
def test_through_the_control_plane_fed_by_heartbeat_payloads(data: st.DataObject) -> None:
    policy = data.draw(policies(Reason.RPS))
    job = Job(policy, data.draw(st.integers(policy.min, policy.max)))
    rps = data.draw(st.lists(st.floats(0, 200), min_size=1, max_size=40))
    for i, value in enumerate(rps, start=1):
        garbage = data.draw(st.booleans())
        metrics = "{oops" if garbage else json.dumps({"RPS": value})
        job.step({"WorkerMetrics": metrics}, T0 + 20.0 * i)
        size = len(job.cp.job(job.jid).stages[1])
        assert policy.min <= size <= policy.max
    scaled = [e for e in job.log if isinstance(e, StageScaled)]
    assert all(e.user == AUTOSCALER_USER and e.reason.startswith("autoscale RPS") for e in scaled)
    times = [T0] + [e.at for e in scaled]  # the initial cooldown counts from the job's start
    assert all(b - a >= policy.cool_down_secs for a, b in zip(times, times[1:], strict=False))
    assert ControlPlane.replay(job.log).snapshot() == job.cp.snapshot()

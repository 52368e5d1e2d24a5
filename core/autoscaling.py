"""Stage autoscaling, pure: Mantis' rule strategies and a Clutch-style PID, fed by heartbeats.

Mantis decides in a stage-0 "job master" worker (JobAutoScaler and WorkerMetricHandler in
io.mantisrx.server.worker.jobmaster); here the master's core decides from the payloads of the
workers' heartbeats (docs/ARCHITECTURE.md, "Autoscaling"), so every scaling is a persisted
event with its reason. Nothing here reads a clock: every call takes `now`.

- `parse_report` reads one heartbeat's payloads (untrusted: anything malformed is ignored).
- `stage_signals` turns a stage's reports into Mantis' effective values (Util.getEffectiveValue
  on WorkerMetricHandler's per-stage averages).
- `StageAutoscaler` keeps a stage's rolling windows (Mantis' UsageDataStats) or PID state,
  samples on a cadence and decides, honouring cooldown and [min, max].
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import InvalidRequest
from core.model import JobDefinition, MachineDefinition, ParameterValue, StageScalingPolicy

AUTOSCALE_METRIC_PARAM = "mantis.jobmaster.autoscale.metric"
CLUTCH_CONFIG_PARAM = "mantis.jobmaster.clutch.config"
INITIAL_COOLDOWN_PARAM = "mantis.job.autoscale.apply.initial.cooldown"
AUTOSCALER_USER = "mantis-autoscaler"
_EPSILON = 1e-9  # rounding slack: a size computed as 2.9999999 is 3
STALE_REPORT_INTERVALS = 2.0  # a worker's report older than this many sampling periods is stale


class Reason(StrEnum):
    """Mantis' StageScalingPolicy.ScalingReason values this master acts on."""

    CPU = "CPU"
    Memory = "Memory"
    Network = "Network"
    DataDrop = "DataDrop"
    RPS = "RPS"
    UserDefined = "UserDefined"
    SourceJobDrop = "SourceJobDrop"
    Clutch = "Clutch"
    ClutchRps = "ClutchRps"


RULE_REASONS = frozenset(
    {
        Reason.CPU,
        Reason.Memory,
        Reason.Network,
        Reason.DataDrop,
        Reason.RPS,
        Reason.UserDefined,
        Reason.SourceJobDrop,
    }
)
_UNITS = {Reason.RPS: "/s", Reason.UserDefined: ""}


# ---------------------------------------------------------------------------- worker reports


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What one heartbeat said about load (StatusPayloads ResourceUsage, IncomingDataDrop)."""

    cpu_used: float | None = None  # cores used over the last interval
    cpu_limit: float | None = None  # cores allotted
    mem_used: float | None = None  # RSS, MB
    mem_limit: float | None = None
    network_bytes: float | None = None  # bytes/s in + out
    on_next: float | None = None  # events in since the previous heartbeat
    dropped: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)  # WorkerMetrics payload


def _object(text: object) -> dict[str, object]:
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(obj: Mapping[str, object], key: str) -> float | None:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def parse_report(payloads: Mapping[str, str]) -> WorkerReport | None:
    """The load a heartbeat reports, or None if it reports none; never raises."""
    usage = _object(payloads.get("ResourceUsage"))
    drops = _object(payloads.get("IncomingDataDrop"))
    raw = _object(payloads.get("WorkerMetrics"))
    metrics = {k: v for k in raw if isinstance(k, str) and (v := _number(raw, k)) is not None}
    if not usage and not drops and not metrics:
        return None
    return WorkerReport(
        _number(usage, "cpuUsageCurrent"),
        _number(usage, "cpuLimit"),
        _number(usage, "totMemUsageCurrent"),
        _number(usage, "memLimit"),
        _number(usage, "nwBytesCurrent"),
        _number(drops, "onNextCount"),
        _number(drops, "droppedCount"),
        metrics,
    )


# ---------------------------------------------------------------------------- stage signals


@dataclass(frozen=True, slots=True)
class UserMetric:
    """`group::name::AGG` of `mantis.jobmaster.autoscale.metric` (AutoScaleMetricsConfig)."""

    name: str  # "group::name", as the WorkerMetrics payload keys it
    use_max: bool = False  # AggregationAlgo MAX, else AVERAGE


def parse_user_metric(value: str) -> UserMetric:
    parts = value.split("::")
    algo = parts[2].upper() if len(parts) == 3 else "AVERAGE"
    if len(parts) not in (2, 3) or not all(parts[:2]) or algo not in ("AVERAGE", "AVG", "MAX"):
        raise InvalidRequest(
            f"parameters.{AUTOSCALE_METRIC_PARAM}",
            f"expected group::name::AVERAGE|MAX, got {value!r}",
        )
    return UserMetric(f"{parts[0]}::{parts[1]}", algo == "MAX")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def stage_signals(
    reports: Iterable[WorkerReport], machine: MachineDefinition, user: UserMetric | None = None
) -> dict[Reason, float]:
    """Mantis' effective values over a stage's workers, as WorkerMetricHandler averages them.

    CPU and Memory are percent of the allotment, Network percent of the machine's Mbps,
    DataDrop percent of the events in that were dropped, RPS events per second per worker,
    SourceJobDrop the percent workers report, UserDefined the named metric (AVERAGE or MAX).
    """
    cpu, mem, net, drop, rps, source, users = [], [], [], [], [], [], []
    for r in reports:
        if r.cpu_used is not None:
            cpu.append(100.0 * r.cpu_used / (r.cpu_limit or machine.cpu_cores))
        if r.mem_used is not None:
            mem.append(100.0 * r.mem_used / (r.mem_limit or machine.memory_mb))
        if r.network_bytes is not None:
            net.append(100.0 * r.network_bytes * 8 / (1024.0 * 1024.0 * machine.network_mbps))
        if r.dropped is not None and r.on_next is not None:
            seen = r.dropped + r.on_next
            drop.append(100.0 * r.dropped / seen if seen else 0.0)
        if (v := r.metrics.get("RPS")) is not None:
            rps.append(v)
        if (v := r.metrics.get("SourceJobDrop")) is not None:
            source.append(v)
        if user is not None and (v := r.metrics.get(user.name)) is not None:
            users.append(v)
    signals = {
        Reason.CPU: _mean(cpu),
        Reason.Memory: _mean(mem),
        Reason.Network: _mean(net),
        Reason.DataDrop: _mean(drop),
        Reason.RPS: _mean(rps),
        Reason.SourceJobDrop: _mean(source),
        Reason.UserDefined: (max(users) if users else None)
        if user is not None and user.use_max
        else _mean(users),
    }
    return {k: v for k, v in signals.items() if v is not None}


# ---------------------------------------------------------------------------- PID (Clutch)


@dataclass(frozen=True, slots=True)
class PidConfig:
    """A Clutch-style controller (Mantis' ClutchConfiguration / ClutchPIDConfig, JSON names).

    The error is the metric minus `setPoint`, zero inside the dead band `rope` = (below,
    above) the set point; the output u = kp*e + ki*I + kd*de is the fraction by which the
    stage grows (u > 0) or shrinks, since a stage's per-worker load goes as 1/size; it moves
    only in the direction of the error and never past the size that would put the metric at
    the set point. The integral I is clamped to +-integral_clamp (anti-windup) and reset
    inside the dead band.
    """

    metric: Reason
    set_point: float
    rope: tuple[float, float] = (0.0, 0.0)
    kp: float = 0.01
    ki: float = 0.0
    kd: float = 0.0
    integral_clamp: float = 100.0
    min_size: int = 0  # > 0 overrides the policy's min, as in Mantis
    max_size: int = 0
    cooldown_secs: float | None = None  # overrides the policy's coolDownSecs

    def __post_init__(self) -> None:
        at = f"parameters.{CLUTCH_CONFIG_PARAM}"
        if not self.set_point > 0 or not all(math.isfinite(g) for g in self.gains):
            raise InvalidRequest(at, "setPoint must be > 0 and the gains finite")
        if min(self.rope) < 0 or self.integral_clamp < 0 or min(self.kp, self.ki, self.kd) < 0:
            raise InvalidRequest(at, "rope, integralClamp and the gains must be >= 0")
        if self.min_size < 0 or self.max_size < 0:
            raise InvalidRequest(at, "minSize and maxSize must be >= 0")
        if self.cooldown_secs is not None and self.cooldown_secs < 0:
            raise InvalidRequest(at, "cooldownSeconds must be >= 0")

    @property
    def gains(self) -> tuple[float, float, float, float]:
        return (self.kp, self.ki, self.kd, self.integral_clamp)


# Mantis' ClutchAutoScaler default: set point 60 % CPU, rope (0, 25).
DEFAULT_CLUTCH = PidConfig(Reason.CPU, 60.0, (0.0, 25.0), kp=0.01, kd=0.01)
_PID_METRICS = (
    ("cpu", Reason.CPU),
    ("memory", Reason.Memory),
    ("network", Reason.Network),
    ("rpsConfig", Reason.RPS),
)
_CLUTCH_KEYS = {"minSize", "maxSize", "rps", "cooldownSeconds", *(k for k, _ in _PID_METRICS)}


def _float(obj: Mapping[str, object], key: str, default: float, at: str) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(at, f"{key} must be a number, got {value!r}")
    return float(value)


def _pid_config(raw: Mapping[str, object], at: str) -> PidConfig:
    metric, pid = DEFAULT_CLUTCH.metric, {}
    for key, reason in _PID_METRICS:
        found = raw.get(key)
        if isinstance(found, dict):
            metric, pid = reason, found
            break
    rope = pid.get("rope", DEFAULT_CLUTCH.rope)
    if (
        not isinstance(rope, list | tuple)
        or len(rope) != 2
        or not all(isinstance(r, int | float) and not isinstance(r, bool) for r in rope)
    ):
        raise InvalidRequest(at, f"rope must be [below, above], got {rope!r}")
    cooldown = raw.get("cooldownSeconds")
    d = DEFAULT_CLUTCH
    return PidConfig(
        metric,
        _float(pid, "setPoint", d.set_point, at),
        (float(rope[0]), float(rope[1])),
        _float(pid, "kp", d.kp, at),
        _float(pid, "ki", d.ki, at),
        _float(pid, "kd", d.kd, at),
        _float(pid, "integralClamp", d.integral_clamp, at),
        int(_float(raw, "minSize", 0, at)),
        int(_float(raw, "maxSize", 0, at)),
        None if cooldown is None else _float(raw, "cooldownSeconds", 0, at),
    )


def parse_clutch_config(value: str) -> dict[int, PidConfig]:
    """Stage -> PID config; one config object means stage 1, as Mantis' JobAutoScaler reads it."""
    at = f"parameters.{CLUTCH_CONFIG_PARAM}"
    raw = _object(value)
    if not raw:
        raise InvalidRequest(at, "must be a JSON object")
    if _CLUTCH_KEYS & raw.keys() or not all(k.isdigit() for k in raw):
        return {1: _pid_config(raw, at)}
    configs = {}
    for stage, item in raw.items():
        if not isinstance(item, dict):
            raise InvalidRequest(at, f"stage {stage}: expected an object")
        configs[int(stage)] = _pid_config(item, at)
    return configs


def _strategy_pid(policy: StageScalingPolicy) -> PidConfig | None:
    """A Clutch / ClutchRps strategy without a JSON config: its thresholds make the dead band."""
    for s in policy.strategies:
        if s.reason not in (Reason.Clutch, Reason.ClutchRps):
            continue
        metric = Reason.CPU if s.reason == Reason.Clutch else Reason.RPS
        if s.scale_up_above_pct <= 0:
            return DEFAULT_CLUTCH if metric is Reason.CPU else None
        point = (s.scale_up_above_pct + s.scale_down_below_pct) / 2
        rope = (point - s.scale_down_below_pct, s.scale_up_above_pct - point)
        return PidConfig(metric, point, rope, kp=1.0 / point)
    return None


@dataclass(frozen=True, slots=True)
class JobAutoscaleSettings:
    """What a job's parameters say about autoscaling, validated once at submit."""

    user_metric: UserMetric | None = None
    clutch: Mapping[int, PidConfig] = field(default_factory=dict)
    initial_cooldown: bool = True


def job_settings(parameters: Iterable[ParameterValue]) -> JobAutoscaleSettings:
    """Raises InvalidRequest naming the parameter if one is malformed."""
    values = {p.name: p.value for p in parameters}
    metric = values.get(AUTOSCALE_METRIC_PARAM, "")
    clutch = values.get(CLUTCH_CONFIG_PARAM, "")
    return JobAutoscaleSettings(
        parse_user_metric(metric) if metric else None,
        parse_clutch_config(clutch) if clutch else {},
        values.get(INITIAL_COOLDOWN_PARAM, "true").strip().lower() != "false",
    )


# ---------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Decision:
    workers: int
    reason: str


@dataclass(slots=True)
class _Window:
    """One strategy's samples: the last `of` decide (Mantis' UsageDataStats); at least the
    last two are kept, so that a scale-down can see a signal flapping."""

    of: int
    samples: deque[float] = field(default_factory=deque)

    def add(self, value: float) -> None:
        self.samples.append(value)
        if len(self.samples) > max(self.of, 2):
            self.samples.popleft()

    @property
    def full(self) -> bool:
        return len(self.samples) >= max(self.of, 2)

    def recent(self) -> list[float]:
        return list(self.samples)[-self.of :]

    def busy(self, threshold: float) -> bool:
        return any(v > threshold for v in self.samples)


def _show(reason: Reason, value: float) -> str:
    return f"{value:.1f}{_UNITS.get(reason, '%')}"


class StageAutoscaler:
    """One stage's autoscaler: reports in (any time), a sample and a decision per period
    (the caller keeps the period).

    Rules (JobAutoScaler's StageScaleOperator): scale up by `increment` when `rolling_count`
    of a strategy's last `rolling_of` samples are above scaleUpAbovePct; scale down by
    `decrement` when that many are below scaleDownBelowPct, the window is full (at least two
    samples) and no kept sample of any strategy is above its scale-up threshold: shrinking is
    the risky direction, and so a flapping signal never shrinks a stage (Mantis has no such
    guard). Never within the cooldown after the last scaling; always within [min, max] (at
    least 1 worker).
    """

    def __init__(
        self,
        policy: StageScalingPolicy,
        machine: MachineDefinition,
        settings: JobAutoscaleSettings,
        stage: int,
    ) -> None:
        self.policy = policy
        self.machine = machine
        self.user_metric = settings.user_metric
        self.initial_cooldown = settings.initial_cooldown
        self.pid = settings.clutch.get(stage) or _strategy_pid(policy)
        lo, hi = policy.min, policy.max
        if self.pid is not None:
            lo, hi = self.pid.min_size or lo, self.pid.max_size or hi
        self.min = max(lo, 1)
        self.max = max(hi, self.min)
        cooldown = self.pid.cooldown_secs if self.pid is not None else None
        self.cooldown_secs = policy.cool_down_secs if cooldown is None else cooldown
        self.rules = tuple(s for s in policy.strategies if s.reason in RULE_REASONS)
        self.windows = {s.reason: _Window(s.rolling_of) for s in self.rules}
        self.reports: dict[int, tuple[str, WorkerReport, float]] = {}  # index -> (worker, ., at)
        self._integral = 0.0
        self._last_error: float | None = None

    # -- inputs

    def observe(self, index: int, worker_id: str, payloads: Mapping[str, str], now: float) -> None:
        """A heartbeat of the stage's worker `index`; O(1)."""
        report = parse_report(payloads)
        if report is not None:
            self.reports[index] = (worker_id, report, now)

    def signals(self, live: Mapping[int, str], now: float, period: float) -> dict[Reason, float]:
        """The stage's signals from the fresh reports of its live workers (index -> worker id)."""
        oldest = now - STALE_REPORT_INTERVALS * period
        fresh = [
            report
            for index, (wid, report, at) in self.reports.items()
            if live.get(index) == wid and at >= oldest
        ]
        return stage_signals(fresh, self.machine, self.user_metric) if fresh else {}

    # -- the decision

    def decide(
        self,
        signals: Mapping[Reason, float],
        current: int,
        now: float,
        last_scaled_at: float | None,
    ) -> Decision | None:
        """Feed one sample; a scaling if one is due (None inside the cooldown)."""
        if self.pid is not None:
            target, why = self._pid_step(signals, current)
        else:
            target, why = self._rules_step(signals, current)
        if last_scaled_at is not None and now < last_scaled_at + self.cooldown_secs:
            return None
        if target == current:
            return None
        return Decision(target, f"autoscale {why}")

    def _rules_step(self, signals: Mapping[Reason, float], current: int) -> tuple[int, str]:
        """Only strategies with a new sample may trigger, as Mantis evaluates per metric event."""
        fed = [s for s in self.rules if Reason(s.reason) in signals]
        for s in fed:
            self.windows[s.reason].add(signals[Reason(s.reason)])
        up = min(current + self.policy.increment, self.max)
        down = max(current - self.policy.decrement, self.min)
        for s in fed:
            recent = self.windows[s.reason].recent()
            n = sum(1 for v in recent if v > s.scale_up_above_pct)
            if n >= s.rolling_count and up > current:
                last = _show(Reason(s.reason), recent[-1])
                limit = _show(Reason(s.reason), s.scale_up_above_pct)
                return up, f"{s.reason} {last} > {limit} in {n} of {len(recent)} samples"
        if down >= current or any(
            self.windows[s.reason].busy(s.scale_up_above_pct) for s in self.rules
        ):
            return current, ""
        for s in fed:
            w = self.windows[s.reason]
            recent = w.recent()
            # A scale-down threshold <= 0 disables scaling down, as in UsageDataStats.
            n = sum(1 for v in recent if v < s.scale_down_below_pct)
            if w.full and s.scale_down_below_pct > 0 and n >= s.rolling_count:
                last = _show(Reason(s.reason), recent[-1])
                limit = _show(Reason(s.reason), s.scale_down_below_pct)
                return down, f"{s.reason} {last} < {limit} in {n} of {len(recent)} samples"
        return current, ""

    def _pid_step(self, signals: Mapping[Reason, float], current: int) -> tuple[int, str]:
        pid = self.pid
        assert pid is not None
        value = signals.get(pid.metric)
        if value is None:
            return current, ""
        low, high = pid.set_point - pid.rope[0], pid.set_point + pid.rope[1]
        if low <= value <= high:
            self._integral, self._last_error = 0.0, None
            return current, ""
        error = value - pid.set_point
        clamp = pid.integral_clamp
        self._integral = min(max(self._integral + error, -clamp), clamp)
        change = error - (self._last_error if self._last_error is not None else error)
        self._last_error = error
        u = pid.kp * error + pid.ki * self._integral + pid.kd * change
        raw = current * (1.0 + u)
        # Never past the size at which the metric would sit at the set point, were the load
        # per worker to go as 1/size: the integral and derivative terms cannot overshoot.
        settled = current * value / pid.set_point
        if u > 0 < error:
            target = min(math.ceil(raw), math.ceil(settled - _EPSILON))
        elif u < 0 > error:
            target = max(math.floor(raw), math.floor(settled + _EPSILON))
        else:
            target = current
        target = min(max(target, self.min), self.max)
        if target == current:
            return current, ""
        side = ">" if error > 0 else "<"
        band = f"{_show(pid.metric, low)}..{_show(pid.metric, high)}"
        return target, (
            f"Clutch {pid.metric.value} {_show(pid.metric, value)} {side} dead band {band}"
            f" (set point {_show(pid.metric, pid.set_point)}, u={u:+.2f})"
        )


def stage_autoscalers(definition: JobDefinition) -> dict[int, StageAutoscaler]:
    """An autoscaler per stage that is scalable with an enabled scaling policy."""
    stages = definition.scheduling_info.stages
    policies = [(n, s) for n, s in enumerate(stages, start=1) if s.scalable and s.scaling_policy]
    if not policies:
        return {}
    settings = job_settings(definition.parameters)
    return {
        n: StageAutoscaler(s.scaling_policy, s.machine_definition, settings, n)
        for n, s in policies
        if s.scaling_policy is not None and s.scaling_policy.enabled
    }

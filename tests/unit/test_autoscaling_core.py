"""Stage autoscaling: payload parsing, Mantis' effective values, rules, PID, and the control plane."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

import pytest

from adapters.http.rendering import render_job
from core.autoscaling import (
    AUTOSCALER_USER,
    CLUTCH_CONFIG_PARAM,
    DEFAULT_CLUTCH,
    JobAutoscaleSettings,
    Reason,
    StageAutoscaler,
    job_settings,
    parse_clutch_config,
    parse_report,
    stage_signals,
)
from core.control import ControlPlane, Outcome
from core.effects import PublishStatus
from core.errors import InvalidRequest
from core.events import Event, StageScaled
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    ParameterValue,
    ScalingStrategy,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
)
from core.worker import WorkerState

T0 = 1_800_000_000.0
MACHINE = MachineDefinition(2.0, 1024.0, network_mbps=100.0)


def usage(cpu: float, limit: float = 2.0) -> dict[str, str]:
    return {"ResourceUsage": json.dumps({"cpuUsageCurrent": cpu, "cpuLimit": limit})}


def policy(
    *strategies: ScalingStrategy, lo: int = 1, hi: int = 5, cooldown: int = 0
) -> StageScalingPolicy:
    return StageScalingPolicy(1, lo, hi, 1, 1, cooldown, strategies)


CPU_3_OF_5 = ScalingStrategy("CPU", 30.0, 75.0, 3, 5)


# ---------------------------------------------------------------------------- payloads


@pytest.mark.parametrize(
    "payloads",
    [
        {},
        {"ResourceUsage": "not json"},
        {"ResourceUsage": "[1, 2]"},
        {"ResourceUsage": '{"cpuUsageCurrent": "high"}'},
        {"IncomingDataDrop": '{"onNextCount": true}'},
        {"WorkerMetrics": '{"RPS": NaN}'},
        {"WorkerMetrics": "[" * 5000},
        {"SubscriptionState": "true"},
    ],
)
def test_malformed_payloads_are_ignored(payloads: dict[str, str]) -> None:
    report = parse_report(payloads)
    assert report is None or stage_signals([report], MACHINE) == {}


def test_effective_values_are_mantis_worker_metric_handler_averages() -> None:
    reports = [
        parse_report(
            {
                "ResourceUsage": json.dumps(
                    {"cpuUsageCurrent": 1.5, "cpuLimit": 2.0, "totMemUsageCurrent": 512.0}
                    | {"nwBytesCurrent": 1024 * 1024 * 100 / 8 / 2}
                ),
                "IncomingDataDrop": json.dumps({"onNextCount": 90, "droppedCount": 10}),
                "WorkerMetrics": json.dumps({"RPS": 100.0, "g::lag": 4.0, "SourceJobDrop": 2.0}),
            }
        ),
        parse_report(
            {
                "ResourceUsage": json.dumps({"cpuUsageCurrent": 0.5, "totMemUsageCurrent": 256.0}),
                "IncomingDataDrop": json.dumps({"onNextCount": 0, "droppedCount": 0}),
                "WorkerMetrics": json.dumps({"RPS": 300.0, "g::lag": 8.0}),
            }
        ),
    ]
    settings = job_settings([ParameterValue("mantis.jobmaster.autoscale.metric", "g::lag::MAX")])
    signals = stage_signals([r for r in reports if r], MACHINE, settings.user_metric)
    assert signals == {
        Reason.CPU: pytest.approx((75.0 + 25.0) / 2),  # cpuLimit, else the machine's cores
        Reason.Memory: pytest.approx((50.0 + 25.0) / 2),
        Reason.Network: pytest.approx(50.0),
        Reason.DataDrop: pytest.approx((10.0 + 0.0) / 2),
        Reason.RPS: pytest.approx(200.0),
        Reason.SourceJobDrop: pytest.approx(2.0),
        Reason.UserDefined: pytest.approx(8.0),
    }


def test_bad_autoscaling_parameters_are_refused_naming_the_parameter() -> None:
    with pytest.raises(InvalidRequest) as e:
        job_settings([ParameterValue("mantis.jobmaster.autoscale.metric", "only-a-name")])
    assert e.value.field == "parameters.mantis.jobmaster.autoscale.metric"
    with pytest.raises(InvalidRequest) as e:
        job_settings([ParameterValue(CLUTCH_CONFIG_PARAM, '{"cpu": {"setPoint": -1}}')])
    assert e.value.field == f"parameters.{CLUTCH_CONFIG_PARAM}"


def test_clutch_config_is_read_as_mantis_reads_it() -> None:
    single = parse_clutch_config('{"minSize": 2, "maxSize": 9, "cpu": {"setPoint": 50}}')
    assert single[1].set_point == 50 and (single[1].min_size, single[1].max_size) == (2, 9)
    per_stage = parse_clutch_config('{"2": {"rpsConfig": {"setPoint": 400, "rope": [50, 100]}}}')
    assert per_stage[2].metric is Reason.RPS and per_stage[2].rope == (50.0, 100.0)
    assert parse_clutch_config('{"cooldownSeconds": 5}')[1].metric is DEFAULT_CLUTCH.metric


# ---------------------------------------------------------------------------- rules


def test_rule_scales_up_when_count_of_last_n_samples_are_above() -> None:
    scaler = StageAutoscaler(policy(CPU_3_OF_5), MACHINE, JobAutoscaleSettings(), 1)
    decisions = [scaler.decide({Reason.CPU: v}, 2, T0, None) for v in (80, 20, 87, 50, 81)]
    assert decisions[:4] == [None] * 4
    assert decisions[4] is not None and decisions[4].workers == 3
    assert decisions[4].reason == "autoscale CPU 81.0% > 75.0% in 3 of 5 samples"


def test_rule_scales_down_only_when_no_sample_says_busy() -> None:
    scaler = StageAutoscaler(policy(CPU_3_OF_5), MACHINE, JobAutoscaleSettings(), 1)
    samples = (10, 90, 10, 10, 10, 10, 10)  # 3 of 5 below at the 4th, but 90 % is in the window
    decisions = [scaler.decide({Reason.CPU: v}, 4, T0, None) for v in samples]
    assert [d.workers if d else None for d in decisions] == [None] * 6 + [3]
    assert decisions[6] is not None and "CPU 10.0% < 30.0% in 5 of 5" in decisions[6].reason


def test_rule_waits_for_the_cooldown_and_keeps_to_min_and_max() -> None:
    scaler = StageAutoscaler(
        policy(ScalingStrategy("RPS", 10, 100, 1, 1), cooldown=60),
        MACHINE,
        JobAutoscaleSettings(),
        1,
    )
    assert scaler.decide({Reason.RPS: 500}, 2, T0 + 59, last_scaled_at=T0) is None
    assert scaler.decide({Reason.RPS: 500}, 2, T0 + 60, last_scaled_at=T0) is not None
    assert scaler.decide({Reason.RPS: 500}, 5, T0 + 999, last_scaled_at=T0) is None
    assert scaler.decide({Reason.RPS: 1}, 1, T0 + 999, last_scaled_at=T0) is None


# ---------------------------------------------------------------------------- PID


def test_pid_holds_inside_the_dead_band_and_scales_with_the_load_outside() -> None:
    config = parse_clutch_config('{"cpu": {"setPoint": 60, "rope": [10, 10], "kp": 0.0166}}')
    scaler = StageAutoscaler(
        policy(ScalingStrategy("CPU", 30, 75), hi=20),
        MACHINE,
        JobAutoscaleSettings(clutch=config),
        1,
    )
    assert scaler.decide({Reason.CPU: 65.0}, 4, T0, None) is None
    up = scaler.decide({Reason.CPU: 120.0}, 4, T0, None)
    assert up is not None and up.workers == 8  # twice the load per worker: twice the workers
    assert up.reason.startswith("autoscale Clutch CPU 120.0% > dead band 50.0%..70.0%")
    down = scaler.decide({Reason.CPU: 30.0}, 8, T0, None)
    assert down is not None and down.workers < 8


# ---------------------------------------------------------------------------- control plane


class Job:
    """A launched job with one autoscaled stage (CPU 3 of 5), and the log of its events."""

    def __init__(self, cooldown: int = 0, parameters: tuple[ParameterValue, ...] = ()) -> None:
        stage = StageSchedulingInfo(
            2,
            MACHINE,
            scalable=True,
            scaling_policy=StageScalingPolicy(1, 1, 4, 1, 1, cooldown, (CPU_3_OF_5,)),
        )
        config = JobClusterConfig("a.zip", "1", T0, SchedulingInfo((stage,)))
        self.cp = ControlPlane()
        self.log: list[Event] = []
        self.run(
            lambda: self.cp.create_cluster(
                JobClusterDefinition("auto", (config,), parameters=parameters), T0
            )
        )
        self.jid = self.run(lambda: self.cp.submit_job("auto", JobRequest(), "u", T0)).job_id
        self.start_new_workers(T0)

    def run(self, call: Callable[[], Outcome]) -> Outcome:
        out = call()
        self.log += out.events
        return out

    def start_new_workers(self, now: float) -> None:
        for w in self.cp.job(self.jid).current_workers():
            if w.state is WorkerState.Accepted:
                self.run(partial(self.cp.worker_launched, w.worker_id, "a", "h", (31000,), now))
                self.run(partial(self.cp.heartbeat, w.worker_id, now))

    def feed(self, cpu: float, now: float) -> Outcome:
        """Every live worker reports `cpu` cores used, then the master's timer ticks."""
        self.start_new_workers(now)
        for w in self.cp.job(self.jid).current_workers():
            if w.state is WorkerState.Started:
                self.run(partial(self.cp.heartbeat, w.worker_id, now, usage(cpu)))
        return self.run(lambda: self.cp.tick(now))

    def scalings(self) -> list[StageScaled]:
        return [e for e in self.log if isinstance(e, StageScaled)]


def test_heartbeats_drive_a_scale_up_event_with_its_reason_in_the_status_stream() -> None:
    job = Job()
    assert job.cp.job(job.jid).state.value == "Launched"
    outs = [job.feed(1.8, T0 + 20 * i) for i in range(1, 4)]
    scaled = job.scalings()
    assert [(e.workers, e.user, e.at) for e in scaled] == [(3, AUTOSCALER_USER, T0 + 60)]
    assert scaled[0].reason == "autoscale CPU 90.0% > 75.0% in 3 of 3 samples"
    statuses = [e.message for e in outs[2].effects if isinstance(e, PublishStatus)]
    assert statuses == [f"stage 1 scaled from 2 to 3 workers: {scaled[0].reason}"]
    stage = render_job(job.cp.job(job.jid))["stageMetadataList"][0]
    assert stage["scalingHistory"] == [
        {
            "at": int((T0 + 60) * 1000),
            "fromWorkers": 2,
            "toWorkers": 3,
            "user": AUTOSCALER_USER,
            "reason": scaled[0].reason,
        }
    ]


def test_a_quiet_stage_is_left_alone() -> None:
    job = Job()
    for i in range(1, 20):
        job.feed(1.0, T0 + 20 * i)  # 50 %: between the thresholds
    assert job.scalings() == []


def test_cooldown_applies_from_the_job_start_and_survives_replay() -> None:
    job = Job(cooldown=300)
    for i in range(1, 20):
        job.feed(1.8, T0 + 20 * i)
    assert [e.at - T0 for e in job.scalings()] == [300.0]  # not before the initial cooldown
    # A new master replays the log: no samples, but the cooldown counts from the event.
    job.cp = ControlPlane.replay(job.log)
    job.cp.recover(T0 + 400)
    for i in range(20, 40):
        job.feed(1.8, T0 + 20 * i)
    assert [e.at - T0 for e in job.scalings()] == [300.0, 600.0]
    assert job.cp.job(job.jid).last_scaled_at(1) == T0 + 600


def test_initial_cooldown_can_be_switched_off() -> None:
    off = (ParameterValue("mantis.job.autoscale.apply.initial.cooldown", "false"),)
    job = Job(cooldown=300, parameters=off)
    for i in range(1, 6):
        job.feed(1.8, T0 + 20 * i)
    assert [e.at - T0 for e in job.scalings()] == [60.0]


def test_a_malformed_autoscaling_parameter_refuses_the_submission() -> None:
    job = Job()
    bad = (ParameterValue(CLUTCH_CONFIG_PARAM, "{not json"),)
    with pytest.raises(InvalidRequest) as e:
        job.cp.submit_job("auto", JobRequest(parameters=bad), "u", T0)
    assert e.value.field == f"parameters.{CLUTCH_CONFIG_PARAM}"

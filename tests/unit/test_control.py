"""Concrete Mantis behaviours of the ControlPlane, each with its known answer."""

from __future__ import annotations

import pytest

from core.control import ControlConfig, ControlPlane, Outcome
from core.effects import KillTask, LaunchRequest, PublishSchedulingInfo
from core.errors import Conflict, InvalidRequest, NotFound
from core.events import JobStateChanged, WorkerAccepted
from core.job import JobState
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
    StageSchedulingInfo,
    parse_job_id,
    parse_worker_id,
)
from core.worker import WorkerState

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def info(*instances: int, scalable: bool = True) -> SchedulingInfo:
    return SchedulingInfo(
        tuple(
            StageSchedulingInfo(n, MachineDefinition(1, 512), scalable=scalable) for n in instances
        )
    )


def cluster(
    name: str = "demo", sla: ClusterSla | None = None, **kw: object
) -> JobClusterDefinition:
    config = JobClusterConfig(f"{name}.zip", "1", T0, kw.pop("scheduling", info(2, 1)))  # type: ignore[arg-type]
    return JobClusterDefinition(name, (config,), sla=sla or ClusterSla(), **kw)  # type: ignore[arg-type]


@pytest.fixture
def cp() -> ControlPlane:
    plane = ControlPlane()
    plane.create_cluster(cluster(), T0)
    return plane


def run_all(cp: ControlPlane, jid: str, now: float) -> None:
    """Launch and heartbeat every Accepted worker of the job: it becomes Launched."""
    for w in cp.job(jid).current_workers():
        if w.state is WorkerState.Accepted:
            cp.worker_launched(w.worker_id, "agent-1", "host-1", (31000,), now)
        cp.heartbeat(w.worker_id, now)


def submit(cp: ControlPlane, name: str = "demo", now: float = T0, **request: object) -> str:
    return cp.submit_job(name, JobRequest(**request), "alice", now).job_id  # type: ignore[arg-type]


def types(out: Outcome) -> list[str]:
    return [type(e).__name__ for e in out.events]


# ------------------------------------------------------------------------ ids and submit


def test_ids_follow_mantis_formats(cp: ControlPlane) -> None:
    jid = submit(cp)
    assert jid == "demo-1" and parse_job_id(jid) == ("demo", 1)
    ids = [w.worker_id for w in cp.job(jid).current_workers()]
    assert ids == ["demo-1-worker-0-1", "demo-1-worker-1-2", "demo-1-worker-0-3"]
    assert parse_worker_id("my-cluster-12-worker-3-40") == ("my-cluster-12", 3, 40)
    with pytest.raises(InvalidRequest) as e:
        parse_worker_id("demo-1-w-1")
    assert e.value.field == "workerId"


def test_submit_emits_accepted_events_and_launch_requests(cp: ControlPlane) -> None:
    out = cp.submit_job("demo", JobRequest(), "alice", T0)
    assert types(out) == ["JobAccepted", "WorkerAccepted", "WorkerAccepted", "WorkerAccepted"]
    launches = [e for e in out.effects if isinstance(e, LaunchRequest)]
    assert [(x.stage, x.index, x.number, x.ready_at) for x in launches] == [
        (1, 0, 1, T0),
        (1, 1, 2, T0),
        (2, 0, 3, T0),
    ]
    assert launches[0].machine == MachineDefinition(1, 512)
    labels = {lb.name: lb.value for lb in cp.job(out.job_id).definition.labels}
    assert labels["_mantis.submitter"] == "alice" and labels["_mantis.version"] == "1"


def test_unknown_cluster_and_disabled_cluster_are_refused(cp: ControlPlane) -> None:
    with pytest.raises(NotFound):
        cp.submit_job("nope", JobRequest(), "alice", T0)
    cp.disable_cluster("demo", "alice", T0)
    with pytest.raises(Conflict, match="disabled"):
        cp.submit_job("demo", JobRequest(), "alice", T0)


def test_unique_tag_returns_the_running_job(cp: ControlPlane) -> None:
    sla = JobSla(user_provided_type='{"unique": "nightly"}')
    first = submit(cp, job_sla=sla)
    out = cp.submit_job("demo", JobRequest(job_sla=sla), "bob", T0 + 1)
    assert out.job_id == first and out.events == []
    cp.kill_job(first, "alice", "done", T0 + 2)
    assert submit(cp, now=T0 + 3, job_sla=sla) == "demo-2"


def test_quick_submit_inherits_from_the_last_running_job(cp: ControlPlane) -> None:
    jid = submit(cp, scheduling_info=info(4), parameters=(ParameterValue("rate", "9"),))
    quick = cp.quick_submit("demo", "bob", T0 + 1).job_id
    d = cp.job(quick).definition
    assert d.scheduling_info == info(4) and d.parameter("rate") == "9" and d.user == "bob"
    cp.kill_job(jid, "a", "x", T0 + 2)
    cp.kill_job(quick, "a", "x", T0 + 2)
    cp.update_artifact("demo", "demo-2.zip", "2", "alice", T0 + 3, skip_submit=True)
    # The last job ended: keep its settings, take the cluster's newest artifact.
    d = cp.job(cp.quick_submit("demo", "bob", T0 + 4).job_id).definition
    assert (d.artifact_name, d.version, d.scheduling_info) == ("demo-2.zip", "2", info(4))


def test_submitting_an_unknown_version_names_the_field(cp: ControlPlane) -> None:
    before = cp.snapshot()
    with pytest.raises(InvalidRequest) as e:
        submit(cp, version="9")
    assert e.value.field == "version" and cp.snapshot() == before


def test_bad_heartbeat_parameter_is_refused(cp: ControlPlane) -> None:
    with pytest.raises(InvalidRequest) as e:
        submit(cp, parameters=(ParameterValue("mantis.job.worker.timeout.secs", "soon"),))
    assert e.value.field == "parameters.mantis.job.worker.timeout.secs"


# ------------------------------------------------------------------------ cluster versions


def test_cluster_keeps_four_unique_versions(cp: ControlPlane) -> None:
    for v in "2345":
        cp.update_artifact("demo", f"demo-{v}.zip", v, "alice", T0, skip_submit=True)
    assert [c.version for c in cp.cluster("demo").definition.configs] == ["2", "3", "4", "5"]
    with pytest.raises(InvalidRequest, match="already exists"):
        cp.update_artifact("demo", "x.zip", "4", "alice", T0, skip_submit=True)


def test_update_artifact_submits_unless_skipped(cp: ControlPlane) -> None:
    out = cp.update_artifact("demo", "demo-2.zip", "2", "alice", T0)
    assert out.job_id == "demo-1" and cp.job("demo-1").definition.artifact_name == "demo-2.zip"


def test_delete_needs_no_active_jobs_and_job_numbers_never_repeat(cp: ControlPlane) -> None:
    jid = submit(cp)
    with pytest.raises(Conflict, match="active jobs"):
        cp.delete_cluster("demo", "alice", T0)
    cp.kill_job(jid, "alice", "bye", T0)
    cp.delete_cluster("demo", "alice", T0)
    cp.create_cluster(cluster(), T0 + 1)
    assert submit(cp, now=T0 + 2) == "demo-2"


# ------------------------------------------------------------------------ lifecycle


def test_job_is_launched_when_every_worker_started(cp: ControlPlane) -> None:
    jid = submit(cp)
    workers = cp.job(jid).current_workers()
    for w in workers:
        cp.worker_launched(w.worker_id, "a1", "h1", (31000,), T0 + 1)
    cp.worker_status(workers[0].worker_id, WorkerState.StartInitiated, T0 + 2)
    cp.worker_status(workers[0].worker_id, WorkerState.Started, T0 + 2)
    cp.heartbeat(workers[1].worker_id, T0 + 3)
    assert cp.job(jid).state is JobState.Accepted
    out = cp.heartbeat(workers[2].worker_id, T0 + 4)
    assert types(out) == ["WorkerStateChanged", "JobStateChanged"]
    assert cp.job(jid).state is JobState.Launched and cp.job(jid).started_at == T0 + 4
    hosts = cp.scheduling_info(jid).stages[0].hosts
    assert [(h.index, h.number, h.hostname) for h in hosts] == [(0, 1, "h1"), (1, 2, "h1")]


def test_stale_and_unknown_observations_kill_zombies(cp: ControlPlane) -> None:
    jid = submit(cp)
    wid = cp.job(jid).current_workers()[0].worker_id
    cp.kill_job(jid, "alice", "bye", T0)
    out = cp.worker_launched(wid, "a1", "h1", (1,), T0 + 1)
    assert out.events == [] and out.effects == [
        KillTask(wid, "a1", "launched but no longer wanted")
    ]
    assert cp.heartbeat("ghost-1-worker-0-1", T0).effects[0] == KillTask(
        "ghost-1-worker-0-1", "", "heartbeat from a dead worker"
    )
    assert cp.worker_status(wid, WorkerState.Failed, T0 + 2).events == []


def test_kill_job_kills_every_live_worker(cp: ControlPlane) -> None:
    jid = submit(cp)
    run_all(cp, jid, T0 + 1)
    out = cp.kill_job(jid, "alice", "enough", T0 + 2)
    assert cp.job(jid).state is JobState.Completed and cp.job(jid).reason is CompletedReason.Killed
    kills = sorted(e.worker_id for e in out.effects if isinstance(e, KillTask))
    assert kills == sorted(w.worker_id for w in cp.job(jid).current_workers())
    with pytest.raises(Conflict, match="already Completed"):
        cp.kill_job(jid, "alice", "again", T0 + 3)


def test_job_completes_when_all_workers_complete(cp: ControlPlane) -> None:
    jid = submit(cp, scheduling_info=info(1))
    run_all(cp, jid, T0)
    (w,) = cp.job(jid).current_workers()
    out = cp.worker_status(w.worker_id, WorkerState.Completed, T0 + 5)
    assert cp.job(jid).state is JobState.Completed and cp.job(jid).reason is CompletedReason.Normal
    assert not any(isinstance(e, LaunchRequest) for e in out.effects)


# ------------------------------------------------------------------------ failures


def test_resubmit_backoff_ladder_and_its_expiry(cp: ControlPlane) -> None:
    jid = submit(cp, scheduling_info=info(1))
    now = T0
    delays = []
    for _ in range(9):
        run_all(cp, jid, now)
        (w,) = cp.job(jid).current_workers()
        out = cp.worker_status(w.worker_id, WorkerState.Failed, now)
        (accepted,) = [e for e in out.events if isinstance(e, WorkerAccepted)]
        assert (accepted.index, accepted.resubmit_of) == (0, w.number)
        delays.append(accepted.ready_at - now)
        now = accepted.ready_at
    assert delays == [0, 5, 10, 30, 60, 120, 600, 600, 600]
    # 300 s after its scheduled time the back-off record expires: the ladder starts again.
    now += 301
    run_all(cp, jid, now)
    (w,) = cp.job(jid).current_workers()
    out = cp.worker_status(w.worker_id, WorkerState.Failed, now)
    assert [e.ready_at - now for e in out.events if isinstance(e, WorkerAccepted)] == [0]


def test_job_fails_after_100_worker_failures_in_an_hour() -> None:
    cp = ControlPlane(ControlConfig(resubmit_delays_secs=(0,)))
    cp.create_cluster(cluster(scheduling=info(1)), T0)
    jid = submit(cp)
    for i in range(100):
        (w,) = cp.job(jid).current_workers()
        cp.worker_status(
            w.worker_id, WorkerState.Failed, T0 + i, CompletedReason.Error, "image not found"
        )
    assert cp.job(jid).state is JobState.Failed and cp.job(jid).reason is CompletedReason.Error
    assert len(cp.workers) == 100  # the 100th failure was not replaced


def test_failures_older_than_an_hour_do_not_count() -> None:
    cp = ControlPlane(ControlConfig(resubmit_delays_secs=(0,)))
    cp.create_cluster(cluster(scheduling=info(1)), T0)
    jid = submit(cp)
    for i in range(150):
        (w,) = cp.job(jid).current_workers()
        cp.worker_status(
            w.worker_id, WorkerState.Failed, T0 + i * 60, CompletedReason.Error, "flaky"
        )
    assert cp.job(jid).state is JobState.Accepted


def test_missed_heartbeats_fail_the_worker_after_tolerance(cp: ControlPlane) -> None:
    jid = submit(cp, parameters=(ParameterValue("mantis.job.worker.timeout.secs", "20"),))
    run_all(cp, jid, T0)
    assert cp.tick(T0 + 30).events == []  # tolerance 1.5 x 20 s
    out = cp.tick(T0 + 31)
    failed = [e for e in out.events if getattr(e, "state", None) is WorkerState.Failed]
    assert len(failed) == 3 and all(e.reason is CompletedReason.Lost for e in failed)
    assert sum(isinstance(e, WorkerAccepted) for e in out.events) == 3


def test_launched_worker_that_never_heartbeats_is_lost(cp: ControlPlane) -> None:
    jid = submit(cp, scheduling_info=info(1))
    (w,) = cp.job(jid).current_workers()
    cp.worker_launched(w.worker_id, "a", "h", (1,), T0)
    assert cp.tick(T0 + 90).events == []  # tolerance: 1.5 x 60 s from the launch
    assert cp.tick(T0 + 91).events != []
    assert cp.workers[w.worker_id].state is WorkerState.Failed


def test_manual_resubmit_replaces_without_backoff(cp: ControlPlane) -> None:
    jid = submit(cp)
    run_all(cp, jid, T0)
    out = cp.resubmit_worker(jid, 2, "alice", "bad host", T0 + 5)
    (accepted,) = [e for e in out.events if isinstance(e, WorkerAccepted)]
    assert (accepted.index, accepted.number, accepted.ready_at) == (1, 4, T0 + 5)
    assert cp.workers["demo-1-worker-1-2"].reason is CompletedReason.Relaunched
    with pytest.raises(InvalidRequest) as e:
        cp.resubmit_worker(jid, 2, "alice", "again", T0 + 6)
    assert e.value.field == "workerNumber"


# ------------------------------------------------------------------------ scaling


def test_scale_needs_a_launched_job(cp: ControlPlane) -> None:
    jid = submit(cp)
    with pytest.raises(Conflict, match="is in state Accepted and is not currently scalable"):
        cp.scale_stage(jid, 1, 3, "alice", "more", T0)


def test_scale_up_adds_indices_and_down_removes_the_highest(cp: ControlPlane) -> None:
    jid = submit(cp)
    run_all(cp, jid, T0)
    out = cp.scale_stage(jid, 1, 4, "alice", "more", T0 + 1)
    assert [(e.index, e.number) for e in out.events if isinstance(e, WorkerAccepted)] == [
        (2, 4),
        (3, 5),
    ]
    run_all(cp, jid, T0 + 2)
    out = cp.scale_stage(jid, 1, 1, "alice", "less", T0 + 3)
    assert PublishSchedulingInfo(jid) in out.effects
    out = cp.tick(T0 + 3 + cp.config.scale_down_grace_secs)  # they drained meanwhile
    assert sorted(e.worker_id for e in out.effects if isinstance(e, KillTask)) == [
        "demo-1-worker-1-2",
        "demo-1-worker-2-4",
        "demo-1-worker-3-5",
    ]
    assert [w.index for w in cp.job(jid).stages[1]] == [0]


@pytest.mark.parametrize(
    ("stage", "n", "field"), [(3, 2, "stageNumber"), (1, 1501, "NumWorkers"), (1, 0, "NumWorkers")]
)
def test_scale_rejects_bad_input(cp: ControlPlane, stage: int, n: int, field: str) -> None:
    jid = submit(cp)
    run_all(cp, jid, T0)
    before = cp.snapshot()
    with pytest.raises(InvalidRequest) as e:
        cp.scale_stage(jid, stage, n, "alice", "x", T0)
    assert e.value.field == field and cp.snapshot() == before


def test_unscalable_stage_is_refused() -> None:
    cp = ControlPlane()
    cp.create_cluster(cluster(scheduling=info(1, scalable=False)), T0)
    jid = submit(cp)
    run_all(cp, jid, T0)
    with pytest.raises(InvalidRequest, match="not scalable"):
        cp.scale_stage(jid, 1, 2, "alice", "x", T0)


# ------------------------------------------------------------------------ timers


def test_runtime_limit_kills_the_job(cp: ControlPlane) -> None:
    jid = submit(cp, job_sla=JobSla(runtime_limit_secs=600))
    run_all(cp, jid, T0 + 10)
    for w in cp.job(jid).current_workers():  # heartbeats keep the workers alive meanwhile
        cp.heartbeat(w.worker_id, T0 + 600)
    assert cp.tick(T0 + 609).events == []
    out = cp.tick(T0 + 610)
    assert (
        JobStateChanged(
            jid,
            JobState.Completed,
            T0 + 610,
            CompletedReason.Killed,
            "runtime limit of 600s reached",
            "mantis-master",
        )
        in out.events
    )


def test_sla_min_submits_and_max_kills_the_oldest() -> None:
    cp = ControlPlane()
    cp.create_cluster(cluster(sla=ClusterSla(min=2, max=2)), T0)
    out = cp.tick(T0)
    assert [e.job_id for e in out.events if type(e).__name__ == "JobAccepted"] == [
        "demo-1",
        "demo-2",
    ]
    assert cp.tick(T0 + 1).events == []
    for jid in ("demo-1", "demo-2"):
        run_all(cp, jid, T0 + 2)
    run_all(cp, submit(cp, now=T0 + 3), T0 + 3)
    out = cp.tick(T0 + 4)
    ended = [e.job_id for e in out.events if isinstance(e, JobStateChanged)]
    assert ended == ["demo-1"] and len(cp.active_jobs()) == 2


PATIENT = ControlConfig(worker_timeout_secs=100_000)  # no heartbeat timeouts in cron tests


def test_cron_keep_existing_submits_only_when_none_runs() -> None:
    cp = ControlPlane(PATIENT)
    cp.create_cluster(cluster(sla=ClusterSla(cron_spec="0 0 * * * ?")), T0)  # hourly
    assert cp.cluster("demo").cron_next_at == T0 + 3600
    assert cp.tick(T0 + 3599).events == []
    assert types(cp.tick(T0 + 3600))[:2] == ["CronFired", "JobAccepted"]
    run_all(cp, "demo-1", T0 + 3601)
    out = cp.tick(T0 + 7200)
    assert types(out) == ["CronFired"] and cp.cluster("demo").cron_next_at == T0 + 10800


def test_cron_keep_new_replaces_the_running_job() -> None:
    cp = ControlPlane(PATIENT)
    sla = ClusterSla(cron_spec="0 0 * * * ?", cron_policy=CronPolicy.KEEP_NEW)
    cp.create_cluster(cluster(sla=sla), T0)
    cp.tick(T0 + 3600)
    run_all(cp, "demo-1", T0 + 3600)
    cp.tick(T0 + 7200)
    run_all(cp, "demo-2", T0 + 7201)
    cp.tick(T0 + 7202)
    assert cp.job("demo-1").state is JobState.Completed
    assert cp.job("demo-2").state is JobState.Launched


def test_disable_kills_active_jobs_and_enable_allows_submits(cp: ControlPlane) -> None:
    jid = submit(cp)
    cp.disable_cluster("demo", "alice", T0)
    assert cp.job(jid).state is JobState.Completed
    cp.enable_cluster("demo", "alice", T0 + 1)
    assert submit(cp, now=T0 + 2) == "demo-2"


def test_update_labels_and_sla(cp: ControlPlane) -> None:
    cp.update_labels("demo", (Label("team", "data"),), "alice", T0)
    cp.update_sla("demo", ClusterSla(min=1, max=3), "alice", T0)
    d = cp.cluster("demo").definition
    assert d.labels == (Label("team", "data"),) and (d.sla.min, d.sla.max) == (1, 3)


# ------------------------------------------------------------------------ recovery


def test_replay_then_recover_keeps_running_workers_and_requeues_pending() -> None:
    cp = ControlPlane()
    events = cp.create_cluster(cluster(), T0).events
    out = cp.submit_job("demo", JobRequest(), "alice", T0)
    events += out.events
    first = cp.job(out.job_id).current_workers()[0]
    events += cp.worker_launched(first.worker_id, "a", "h", (1,), T0).events
    events += cp.heartbeat(first.worker_id, T0).events
    replayed = ControlPlane.replay(events)
    assert replayed.snapshot() == cp.snapshot()
    recovered = replayed.recover(T0 + 1000)
    assert replayed.workers[first.worker_id].last_heartbeat_at == T0 + 1000
    pending = [e.worker_id for e in recovered.effects if isinstance(e, LaunchRequest)]
    assert pending == ["demo-1-worker-1-2", "demo-1-worker-0-3"]
    assert replayed.tick(T0 + 1080).events == []  # a full window to heartbeat the new master


# ------------------------------------------------------------------------ model validation


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: MachineDefinition(0, 512), "cpuCores"),
        (lambda: MachineDefinition(9, 512), "cpuCores"),
        (lambda: MachineDefinition(1, 30000), "memoryMB"),
        (lambda: MachineDefinition(1, 512, network_mbps=2000), "networkMbps"),
        (lambda: StageSchedulingInfo(0, MachineDefinition(1, 1)), "numberOfInstances"),
        (lambda: SchedulingInfo(()), "schedulingInfo.stages"),
        (lambda: ClusterSla(min=6, max=10), "slaMin"),
        (lambda: ClusterSla(min=2, max=1), "slaMax"),
        (lambda: ClusterSla(max=101), "slaMax"),
        (lambda: ClusterSla(cron_spec="0 0 25 * * ?"), "cronSpec"),
        (lambda: JobSla(runtime_limit_secs=-1), "jobSla.runtimeLimitSecs"),
        (lambda: JobSla(user_provided_type="{not json"), "jobSla.userProvidedType"),
        (lambda: cluster(name="9lives"), "name"),
        (
            lambda: cluster(parameters=(ParameterValue("a", "1"), ParameterValue("a", "2"))),
            "parameters",
        ),
    ],
)
def test_model_validation_names_the_field(make, field) -> None:
    with pytest.raises(InvalidRequest) as e:
        make()
    assert e.value.field == field and field in str(e.value)


def test_model_defaults_follow_mantis() -> None:
    m = MachineDefinition(1, 512, network_mbps=0, num_ports=0)
    assert (m.network_mbps, m.num_ports, m.ports_needed) == (128, 1, 5)
    cron = ClusterSla(min=3, max=5, cron_spec="0 0 * * * ?")
    assert (cron.min, cron.max, cron.cron_policy) == (0, 1, CronPolicy.KEEP_EXISTING)

"""The control plane: commands, observations and timer ticks in; events and effects out.

Every public method takes the current time as `now` and returns an `Outcome`. State changes only
in the event appliers (`_on_*`), which both `_emit` and `apply_persisted` run, so state is
always the fold of the events. Commands validate everything before emitting their first event: a
rejected command raises a `CommandRejected` and changes nothing. Observations from the outside
world (launches, status updates, heartbeats) never raise for stale or unknown workers: they are
ignored, or answered with a kill of the zombie task.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from core.autoscaling import AUTOSCALER_USER, StageAutoscaler, job_settings, stage_autoscalers
from core.cron import next_fire_after, parse_cron
from core.effects import (
    DeclineOffers,
    Effect,
    JobSchedulingInfo,
    KillTask,
    LaunchRequest,
    LaunchTask,
    PublishSchedulingInfo,
    PublishStatus,
    StageAssignment,
    WorkerLocation,
)
from core.errors import Conflict, InvalidRequest, NotFound
from core.events import (
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
from core.job import SCALING_HISTORY, JobRecord, JobState, Scaling, end_state
from core.migration import AgentMode, WorkerMigrationConfig, to_move
from core.model import (
    MAX_WORKERS_PER_STAGE,
    ClusterSla,
    CompletedReason,
    CronPolicy,
    DeploymentStrategy,
    JobClusterConfig,
    JobClusterDefinition,
    JobDefinition,
    JobRequest,
    Label,
    ParameterValue,
    SchedulingInfo,
    job_id,
    worker_id,
)
from core.ports import TASK_STATES, TaskStatus
from core.scheduling import DEFAULT_CONFIG, Matcher, Offer, Placement
from core.worker import ALLOWED as WORKER_MOVES
from core.worker import Worker, WorkerState

HEARTBEAT_INTERVAL_PARAM = "mantis.job.worker.heartbeat.interval.secs"
WORKER_TIMEOUT_PARAM = "mantis.job.worker.timeout.secs"
SYSTEM_USER = "mantis-master"
SCALED_DOWN = "scaled down"
"""The message of a worker a scale-down removed (Completed, Killed)."""
DEFAULT_REFUSE_SECONDS = 5.0  # Mesos' default decline filter
HOUR = 3600.0
# A heartbeat window found ended checks `now - seen > timeout` exactly; the deadline heap
# only narrows the workers checked, so it lets through those within rounding of their end.
_DEADLINE_SLACK = 1e-3


# Mesos TaskState -> the worker observation it means. A running task is StartInitiated: the
# worker itself says Started (or heartbeats). Lost-like states are Lost, so they count as errors.
_TASK_OBSERVATION: dict[str, tuple[WorkerState, CompletedReason | None]] = {
    "TASK_RUNNING": (WorkerState.StartInitiated, None),
    "TASK_FINISHED": (WorkerState.Completed, CompletedReason.Normal),
    "TASK_FAILED": (WorkerState.Failed, CompletedReason.Error),
    "TASK_ERROR": (WorkerState.Failed, CompletedReason.Error),
    "TASK_KILLED": (WorkerState.Failed, CompletedReason.Killed),
    **{
        s: (WorkerState.Failed, CompletedReason.Lost)
        for s in (
            "TASK_LOST",
            "TASK_DROPPED",
            "TASK_UNREACHABLE",
            "TASK_GONE",
            "TASK_GONE_BY_OPERATOR",
            "TASK_UNKNOWN",
        )
    },
}


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Mantis master defaults (io.mantisrx.server.master.config.MasterConfiguration)."""

    heartbeat_interval_secs: float = 20.0
    worker_timeout_secs: float = 60.0
    heartbeat_tolerance: float = 1.5
    resubmit_delays_secs: tuple[float, ...] = (0, 5, 10, 30, 60, 120, 600)
    resubmit_expiry_secs: float = 300.0
    max_worker_failures_per_hour: int = 100
    sla_headroom_accepted: int = 3
    scale_down_grace_secs: float = 10.0
    """How long a worker removed by a scale-down may drain before its task is killed, and
    then how long its killed task may flush after SIGTERM before SIGKILL (the kill's Mesos
    kill_policy)."""


@dataclass(slots=True)
class Outcome:
    """What a call produced: events to persist first, then effects to carry out."""

    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    job_id: str = ""


@dataclass(slots=True, eq=False)
class JobCluster:
    """Mutable cluster record; changed only by ControlPlane's event appliers."""

    definition: JobClusterDefinition
    created_at: float
    disabled: bool = False
    last_job_count: int = 0
    job_ids: list[str] = field(default_factory=list)
    cron_next_at: float | None = None

    def durable(self) -> tuple[object, ...]:
        return (
            self.definition,
            self.created_at,
            self.disabled,
            self.last_job_count,
            tuple(self.job_ids),
            self.cron_next_at,
        )


def _slot(w: Worker) -> tuple[int, int]:
    return w.stage, w.index


def _cron_next(sla: ClusterSla, after: float) -> float | None:
    return next_fire_after(parse_cron(sla.cron_spec), after) if sla.cron_spec else None


_Named = TypeVar("_Named", ParameterValue, Label)


def _merge(base: tuple[_Named, ...], over: tuple[_Named, ...] | None) -> tuple[_Named, ...]:
    """`over` wins by name; order: base's names first, then new ones."""
    if not over:
        return base
    merged = {item.name: item for item in base}
    merged.update({item.name: item for item in over})
    return tuple(merged.values())


def _positive_param(parameters: tuple[ParameterValue, ...], name: str, default: float) -> float:
    raw = next((p.value for p in parameters if p.name == name), "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"parameters.{name}", f"must be a number, got {raw!r}") from None
    if value < 0:
        raise InvalidRequest(f"parameters.{name}", f"must be >= 0, got {raw!r}")
    return value or default


class ControlPlane:
    """Job clusters, jobs and workers of one Mantis master, as a deterministic machine."""

    def __init__(self, config: ControlConfig | None = None) -> None:
        self.config = config or ControlConfig()
        self.clusters: dict[str, JobCluster] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.workers: dict[str, Worker] = {}
        self._active: dict[str, JobRecord] = {}
        # Derived indexes, kept by the appliers: workers waiting for a placement, and placed ones.
        self._pending: dict[str, Worker] = {}
        self._placed: dict[str, Worker] = {}
        self._launched: dict[str, Worker] = {}  # placed, not yet heard from (still Launched)
        # Volatile: agents' attributes as last offered (for placements' zones).
        self._agent_attributes: dict[str, tuple[tuple[str, str], ...]] = {}
        # Derived: the matcher's hosts and their placements, kept between offer rounds as
        # Fenzo's TaskScheduler keeps its leases (offers come and go within a round), so a
        # round costs what it places, not a rebuild of every host and placed worker.
        self._matcher = self._new_matcher()
        # Derived: (end of its heartbeat window, worker id) of placed workers, a heap. An
        # entry may end early (a heartbeat came since: it is pushed again), never late, so
        # a tick looks at the workers whose window may have ended, not at every worker.
        self._deadlines: list[tuple[float, str]] = []
        self._deleted_job_counts: dict[str, int] = {}
        # Volatile: per job, its autoscaled stages' samples; a new leader relearns them. The
        # heap holds each stage's next sampling time, so a tick looks only at stages due.
        self._autoscalers: dict[str, dict[int, StageAutoscaler]] = {}
        self._autoscale_due: list[tuple[float, str, int]] = []
        # Volatile: per job, the workers a scale-down removed that are draining (finishing what
        # they hold), with the time their task is killed if they have not exited by then. A new
        # leader does not know them: their next heartbeat gets them killed (SIGTERM: they
        # flush and exit the same way).
        self._draining: dict[str, dict[str, float]] = {}
        # Agents not ACTIVE (core/migration.py): agent id -> (mode, hostname). Volatile: per
        # job, when it last moved a worker off one.
        self.agent_modes: dict[str, tuple[AgentMode, str]] = {}
        self._migrated_at: dict[str, float] = {}
        self._out = Outcome()
        self._live = True
        self._appliers: dict[type, Callable[[Any], None]] = {
            ClusterCreated: self._on_cluster_created,
            ClusterUpdated: self._on_cluster_updated,
            ClusterDeleted: self._on_cluster_deleted,
            ClusterEnabled: self._on_cluster_enabled,
            CronFired: self._on_cron_fired,
            JobAccepted: self._on_job_accepted,
            WorkerAccepted: self._on_worker_accepted,
            WorkerLaunched: self._on_worker_launched,
            WorkerStateChanged: self._on_worker_state_changed,
            JobStateChanged: self._on_job_state_changed,
            StageScaled: self._on_stage_scaled,
            AgentModeChanged: self._on_agent_mode_changed,
        }

    # ------------------------------------------------------------------ replay and recovery

    @classmethod
    def replay(cls, events: Iterable[Event], config: ControlConfig | None = None) -> ControlPlane:
        """Rebuild the state from persisted events."""
        plane = cls(config)
        plane.apply_persisted(events)
        return plane

    def apply_persisted(self, events: Iterable[Event]) -> None:
        """Fold events from the log into this plane (replay, or a standby tailing the log).

        The log is trusted: its moves were checked when they were made, so none re-run here.
        """
        self._live = False
        try:
            appliers = self._appliers
            for event in events:
                appliers[type(event)](event)
        finally:
            self._live = True

    def recover(self, now: float) -> Outcome:
        """After replay: a fresh heartbeat window for running workers, re-queue pending ones."""
        out = self._begin()
        for job in self._active.values():
            for w in job.current_workers():
                if w.running:
                    w.last_heartbeat_at = now
                elif w.state is WorkerState.Accepted:
                    out.effects.append(self._launch_request(job, w))
            out.effects.append(PublishSchedulingInfo(job.job_id))
        self._deadlines = [(self._deadline(w), w.worker_id) for w in self._placed.values()]
        heapq.heapify(self._deadlines)
        return out

    def snapshot(self) -> dict[str, object]:
        """The durable state as plain values: equal for a live plane and its replay."""
        return {
            "clusters": {n: c.durable() for n, c in self.clusters.items()},
            "jobs": {j: job.durable() for j, job in self.jobs.items()},
            "workers": {w: wk.durable() for w, wk in self.workers.items()},
            "active": tuple(self._active),
            "pending": tuple(self._pending),
            "placed": tuple(self._placed),
            "deleted_job_counts": dict(self._deleted_job_counts),
            "agent_modes": dict(self.agent_modes),
        }

    # ------------------------------------------------------------------ queries

    def cluster(self, name: str) -> JobCluster:
        c = self.clusters.get(name)
        if c is None:
            raise NotFound("job cluster", name)
        return c

    def job(self, jid: str) -> JobRecord:
        j = self.jobs.get(jid)
        if j is None:
            raise NotFound("job", jid)
        return j

    def active_jobs(self) -> list[JobRecord]:
        return list(self._active.values())

    def launched_workers(self) -> list[Worker]:
        """Workers still Launched (placed, not yet heard from), in job, stage and index order:
        those whose launch may have been lost, without a pass over every worker."""
        by_job: dict[str, list[Worker]] = {}
        for w in self._launched.values():
            by_job.setdefault(w.job_id, []).append(w)
        return [w for jid in self._active if jid in by_job for w in sorted(by_job[jid], key=_slot)]

    def scheduling_info(self, jid: str) -> JobSchedulingInfo:
        job = self.job(jid)
        stages = []
        for stage in sorted(job.stages):
            workers = job.stages[stage]
            hosts = tuple(
                WorkerLocation(w.index, w.number, w.hostname, w.ports)
                for w in workers
                if w.state is WorkerState.Started
            ) + tuple(
                WorkerLocation(d.index, d.number, d.hostname, d.ports)
                for d in self._draining_workers(jid)
                if d.stage == stage
            )
            stages.append(StageAssignment(stage, len(workers), hosts))
        return JobSchedulingInfo(jid, tuple(stages))

    # ------------------------------------------------------------------ cluster commands

    def create_cluster(self, definition: JobClusterDefinition, now: float) -> Outcome:
        if definition.name in self.clusters:
            raise Conflict(f"job cluster {definition.name!r} already exists")
        self._worker_timing(definition.parameters)
        out = self._begin()
        self._emit(ClusterCreated(definition, now))
        return out

    def update_cluster(self, definition: JobClusterDefinition, user: str, now: float) -> Outcome:
        """Full update (PUT): a new version from `definition.latest`, the rest overwritten."""
        old = self.cluster(definition.name).definition
        configs = old.with_config(definition.latest)
        return self._update(replace(definition, configs=configs), "update", user, now)

    def update_artifact(
        self,
        name: str,
        artifact_name: str,
        version: str,
        user: str,
        now: float,
        job_jar_url: str = "",
        skip_submit: bool = False,
    ) -> Outcome:
        """A new version with a new artifact; submits a job from it unless `skip_submit`."""
        cluster = self.cluster(name)
        old = cluster.definition
        config = JobClusterConfig(
            artifact_name,
            version,
            now,
            old.latest.scheduling_info,
            job_jar_url or old.latest.job_jar_url,
        )
        new = replace(old, configs=old.with_config(config))
        if not skip_submit:
            self._check_can_submit(cluster)
        out = self._update(new, "updateArtifact", user, now)
        if not skip_submit:
            out.job_id = self._submit(self.clusters[name], JobRequest(), user, now)
        return out

    def update_scheduling_info(
        self, name: str, scheduling_info: SchedulingInfo, version: str, user: str, now: float
    ) -> Outcome:
        old = self.cluster(name).definition
        config = replace(
            old.latest, version=version, uploaded_at=now, scheduling_info=scheduling_info
        )
        return self._update(
            replace(old, configs=old.with_config(config)), "updateSchedulingInfo", user, now
        )

    def update_sla(
        self, name: str, sla: ClusterSla, user: str, now: float, force_enable: bool = False
    ) -> Outcome:
        cluster = self.cluster(name)
        out = self._update(replace(cluster.definition, sla=sla), "updateSla", user, now)
        if force_enable and cluster.disabled:
            self._emit(ClusterEnabled(name, True, user, now))
        return out

    def update_labels(self, name: str, labels: tuple[Label, ...], user: str, now: float) -> Outcome:
        cluster = self.cluster(name)
        return self._update(replace(cluster.definition, labels=labels), "updateLabels", user, now)

    def _update(
        self, definition: JobClusterDefinition, action: str, user: str, now: float
    ) -> Outcome:
        self._worker_timing(definition.parameters)
        out = self._begin()
        self._emit(ClusterUpdated(definition, action, user, now))
        return out

    def update_migration_config(
        self, name: str, config: WorkerMigrationConfig, user: str, now: float
    ) -> Outcome:
        """Mantis' updateMigrationStrategy: how the cluster's jobs move off disabled agents."""
        cluster = self.cluster(name)
        definition = replace(cluster.definition, migration_config=config)
        return self._update(definition, "updateMigrationStrategy", user, now)

    def set_agent_mode(
        self, agent_id: str, hostname: str, mode: AgentMode, user: str, now: float
    ) -> Outcome:
        """Disable, drain or enable an agent: a disabled or draining one gets no new workers
        and its workers move off at their cluster's pace (`_migrate`, on every tick)."""
        if not agent_id:
            raise InvalidRequest("agentId", "must not be empty")
        out = self._begin()
        current = self.agent_modes.get(agent_id, (AgentMode.ACTIVE, ""))[0]
        if mode is not current:
            self._emit(AgentModeChanged(agent_id, hostname, mode, user, now))
        return out

    def known_agents(self) -> dict[str, str]:
        """Agent id -> hostname of the agents seen in offers or placements, and those not
        ACTIVE, by agent id."""
        known = {a: h.hostname for a, h in self._matcher.hosts.items()}
        known |= {a: known.get(a) or host for a, (_, host) in self.agent_modes.items()}
        return dict(sorted(known.items()))

    def workers_on(self, agent_id: str) -> list[Worker]:
        """The placed (launched, not ended) workers on an agent, by worker id."""
        host = self._matcher.hosts.get(agent_id)
        return [self.workers[wid] for wid in sorted(host.placed)] if host is not None else []

    def enable_cluster(self, name: str, user: str, now: float) -> Outcome:
        cluster = self.cluster(name)
        out = self._begin()
        if cluster.disabled:
            self._emit(ClusterEnabled(name, True, user, now))
        return out

    def disable_cluster(self, name: str, user: str, now: float) -> Outcome:
        """Disabling kills the cluster's running jobs and refuses new submissions."""
        cluster = self.cluster(name)
        out = self._begin()
        if not cluster.disabled:
            self._emit(ClusterEnabled(name, False, user, now))
            for jid in list(cluster.job_ids):
                job = self.jobs[jid]
                if not job.terminal:
                    self._end_job(job, CompletedReason.Killed, "job cluster disabled", user, now)
        return out

    def delete_cluster(self, name: str, user: str, now: float) -> Outcome:
        cluster = self.cluster(name)
        running = [j for j in cluster.job_ids if not self.jobs[j].terminal]
        if running:
            raise Conflict(f"job cluster {name!r} has active jobs {running}; kill them first")
        out = self._begin()
        self._emit(ClusterDeleted(name, user, now))
        return out

    # ------------------------------------------------------------------ job commands

    def submit_job(self, cluster_name: str, request: JobRequest, user: str, now: float) -> Outcome:
        """Submit a job; `out.job_id` is the new job, or the running one with the same unique tag."""
        cluster = self.cluster(cluster_name)
        self._check_can_submit(cluster)
        out = self._begin()
        out.job_id = self._submit(cluster, request, user, now)
        return out

    def quick_submit(
        self, cluster_name: str, user: str, now: float, overrides: JobRequest | None = None
    ) -> Outcome:
        """Submit with the definition of the last running job, else the last job, else the
        cluster's; what `overrides` sets (Mantis' quickSubmit `jobDefinition`) wins."""
        cluster = self.cluster(cluster_name)
        self._check_can_submit(cluster)
        request = self._inherited_request(cluster)
        if overrides is not None:
            given = {f.name: getattr(overrides, f.name) for f in fields(JobRequest)}
            request = replace(request, **{k: v for k, v in given.items() if v is not None})
        out = self._begin()
        out.job_id = self._submit(cluster, request, user, now)
        return out

    def kill_job(self, jid: str, user: str, reason: str, now: float) -> Outcome:
        job = self.job(jid)
        if job.terminal:
            raise Conflict(f"job {jid} is already {job.state.value}")
        out = self._begin()
        self._end_job(job, CompletedReason.Killed, reason or f"killed by {user}", user, now)
        return out

    def scale_stage(
        self, jid: str, stage: int, workers: int, user: str, reason: str, now: float
    ) -> Outcome:
        job = self.job(jid)
        if job.state is not JobState.Launched:
            raise Conflict(f"job {jid} is in state {job.state.value} and is not currently scalable")
        info = job.definition.scheduling_info.stage(stage)
        if not info.scalable:
            raise InvalidRequest("StageNumber", f"stage {stage} of job {jid} is not scalable")
        if not 1 <= workers <= MAX_WORKERS_PER_STAGE:
            raise InvalidRequest(
                "NumWorkers", f"must be in [1, {MAX_WORKERS_PER_STAGE}], got {workers}"
            )
        out = self._begin()
        self._scale(job, stage, workers, user, reason, now)
        return out

    def _scale(
        self, job: JobRecord, stage: int, workers: int, user: str, reason: str, now: float
    ) -> None:
        """Scale a stage: a user's scaleStage or an autoscaling decision (with its reason).

        A scale-down removes the highest indexes (as Mantis' JobActor does), so the remaining
        slots keep their keys. The removed workers are Completed (Killed, "scaled down": no
        error, never resubmitted) at once, and drain: a Started one stays listed in the
        scheduling info past `numWorkers` (its downstream and sink clients read what it
        flushes) until it reports its end, or its task is killed after the grace period."""
        jid, out = job.job_id, self._out
        current = job.stages[stage]
        old = len(current)
        if workers == old:
            return
        grace = now + self.config.scale_down_grace_secs
        for w in current[workers:]:
            if not w.terminal:
                started = w.state is WorkerState.Started
                self._emit(
                    WorkerStateChanged(
                        w.worker_id,
                        WorkerState.Completed,
                        now,
                        CompletedReason.Killed,
                        SCALED_DOWN,
                    )
                )
                if started:
                    self._draining.setdefault(jid, {})[w.worker_id] = grace
                else:  # nothing to finish
                    out.effects.append(KillTask(w.worker_id, w.agent_id, SCALED_DOWN))
        self._emit(StageScaled(jid, stage, workers, user, reason, now))
        for index in range(old, workers):
            self._new_worker(job, stage, index, now, ready_at=now)
        message = f"stage {stage} scaled from {old} to {workers} workers"
        self._publish(job, f"{message}: {reason}" if user == AUTOSCALER_USER else message, now)
        out.effects.append(PublishSchedulingInfo(jid))

    def resubmit_worker(
        self, jid: str, worker_number: int, user: str, reason: str, now: float
    ) -> Outcome:
        job = self.job(jid)
        if job.terminal:
            raise Conflict(f"job {jid} is already {job.state.value}")
        found = [w for w in job.current_workers() if w.number == worker_number]
        if not found or found[0].terminal:
            raise InvalidRequest("workerNumber", f"job {jid} has no active worker {worker_number}")
        old = found[0]
        out = self._begin()
        message = reason or f"resubmitted by {user}"
        self._emit(
            WorkerStateChanged(
                old.worker_id, WorkerState.Failed, now, CompletedReason.Relaunched, message
            )
        )
        out.effects.append(KillTask(old.worker_id, old.agent_id, message))
        self._new_worker(job, old.stage, old.index, now, ready_at=now, replaces=old)
        self._publish(job, f"worker {old.worker_id} resubmitted: {message}", now)
        return out

    # ------------------------------------------------------------------ observations

    def worker_launched(
        self, wid: str, agent_id: str, hostname: str, ports: tuple[int, ...], now: float
    ) -> Outcome:
        out = self._begin()
        w = self.workers.get(wid)
        if w is None or w.terminal:
            out.effects.append(KillTask(wid, agent_id, "launched but no longer wanted"))
        elif w.state is WorkerState.Accepted:
            self._emit(WorkerLaunched(wid, agent_id, hostname, tuple(ports), now))
        return out

    def worker_status(
        self,
        wid: str,
        state: WorkerState,
        now: float,
        reason: CompletedReason | None = None,
        message: str = "",
    ) -> Outcome:
        """A status from the worker itself (postJobStatus) or from the resource manager."""
        if state not in (
            WorkerState.StartInitiated,
            WorkerState.Started,
            WorkerState.Completed,
            WorkerState.Failed,
        ):
            raise InvalidRequest("state", f"a worker cannot report {state.value}")
        out = self._begin()
        w = self.workers.get(wid)
        if w is not None and state in (WorkerState.Completed, WorkerState.Failed):
            self._drained(w.job_id, wid)  # a removed worker ended: it leaves the listing
        if w is None or w.terminal:
            if state in (WorkerState.StartInitiated, WorkerState.Started):
                out.effects.append(
                    KillTask(wid, w.agent_id if w else "", "worker no longer wanted")
                )
            return out
        if state is WorkerState.Failed:
            self._fail(w, reason or CompletedReason.Error, message, now)
        elif state is WorkerState.Completed:
            self._emit(
                WorkerStateChanged(wid, state, now, reason or CompletedReason.Normal, message)
            )
            self._after_worker_ended(self.jobs[w.job_id], now)
        elif w.state is not state and (w.state, state) in WORKER_MOVES:
            self._emit(WorkerStateChanged(wid, state, now, None, message))
            if state is WorkerState.Started:
                self._after_worker_started(self.jobs[w.job_id], now)
        return out

    def on_offers(
        self, offers: Sequence[Offer], now: float, refuse_seconds: float = DEFAULT_REFUSE_SECONDS
    ) -> Outcome:
        """Place ready pending workers on offers; decline what is left unused.

        A placement is a launch: the worker becomes Launched at once (Mantis' WorkerLaunched
        comes from the scheduler), so it is never placed twice; a failed launch comes back
        as a task status.
        """
        out = self._begin()
        if self.agent_modes:  # a disabled or draining agent gets no new workers
            off = [o.offer_id for o in offers if o.agent_id in self.agent_modes]
            if off:
                offers = [o for o in offers if o.agent_id not in self.agent_modes]
                out.effects.append(DeclineOffers(tuple(off), refuse_seconds))
        for offer in offers:
            if self._agent_attributes.get(offer.agent_id) != offer.attributes:
                self._agent_attributes[offer.agent_id] = offer.attributes
                self._refile_placements(offer.agent_id)
        requests = [
            self._launch_request(self.jobs[w.job_id], w)
            for w in self._pending.values()
            if w.ready_at <= now
        ]
        matcher = self._matcher
        try:
            matcher.add_offers(offers)
            result = matcher.match(requests, now)
        except Exception:
            self._matcher = self._new_matcher()  # a round that failed leaves nothing behind
            raise
        matcher.remove_offers(result.declined)  # declined below: none are kept
        by_worker = {r.worker_id: r for r in requests}
        for a in result.assignments:
            self._emit(WorkerLaunched(a.worker_id, a.agent_id, a.hostname, a.ports, now))
            out.effects.append(LaunchTask(by_worker[a.worker_id], a))
        for wid, failure in result.unplaced:  # volatile: the next round says it again
            self._pending[wid].pending_reason = str(failure)
        if result.declined:
            out.effects.append(DeclineOffers(result.declined, refuse_seconds))
        return out

    def task_status(self, status: TaskStatus, now: float) -> Outcome:
        """A resource manager's status update, in Mesos TaskState terms."""
        if status.state not in TASK_STATES:
            raise InvalidRequest("state", f"unknown task state {status.state!r}")
        observed = _TASK_OBSERVATION.get(status.state)
        if observed is None:  # staging, starting, killing: nothing the core acts on
            return self._begin()
        state, reason = observed
        message = status.message or status.state
        return self.worker_status(status.task_id, state, now, reason, message)

    def heartbeat(self, wid: str, now: float, payloads: Mapping[str, str] | None = None) -> Outcome:
        """A heartbeat keeps a worker alive, and promotes a launched worker to Started."""
        out = self._begin()
        w = self.workers.get(wid)
        if w is not None and wid in self._draining.get(w.job_id, {}):
            return out  # removed by a scale-down, finishing what it holds
        if w is None or w.terminal:
            # One a scale-down removed (a new leader does not know it drains) gets to flush.
            scaled_down = w is not None and w.message == SCALED_DOWN
            grace = self.config.scale_down_grace_secs if scaled_down else None
            out.effects.append(
                KillTask(wid, w.agent_id if w else "", "heartbeat from a dead worker", grace)
            )
            return out
        previous, w.last_heartbeat_at = w.last_heartbeat_at, now
        if previous is not None and now < previous and w.running:  # the clock went back
            heapq.heappush(self._deadlines, (self._deadline(w), wid))
        if payloads:
            w.payloads = dict(payloads)
            subscribed = payloads.get("SubscriptionState")
            if subscribed is not None:
                w.is_subscribed = subscribed == "true"
            scaler = self._autoscalers.get(w.job_id, {}).get(w.stage)
            if scaler is not None:
                scaler.observe(w.index, wid, payloads, now)
        if w.state is WorkerState.Launched or w.state is WorkerState.StartInitiated:
            self._emit(WorkerStateChanged(wid, WorkerState.Started, now, None, "first heartbeat"))
            self._after_worker_started(self.jobs[w.job_id], now)
        return out

    # ------------------------------------------------------------------ timers

    def tick(self, now: float) -> Outcome:
        """Fire every timer due at `now`: heartbeats, runtime limits, cron, SLA min/max."""
        out = self._begin()
        # Kills first, so that no worker is replaced or submitted for a job about to end.
        for job in list(self._active.values()):
            limit = job.definition.job_sla.runtime_limit_secs
            if limit and job.started_at is not None and now >= job.started_at + limit:
                self._end_job(
                    job,
                    CompletedReason.Killed,
                    f"runtime limit of {limit}s reached",
                    SYSTEM_USER,
                    now,
                )
        enabled = [c for c in self.clusters.values() if not c.disabled]
        for cluster in enabled:
            self._enforce_sla_max(cluster, now)
        self._check_heartbeats(now)
        self._end_drains(now)
        self._migrate(now)
        self._autoscale(now)
        for cluster in enabled:
            self._enforce_cron(cluster, now)
            self._enforce_sla_min(cluster, now)
        return out

    def _check_heartbeats(self, now: float) -> None:
        """Fail the running workers silent for longer than their job's timeout (x tolerance),
        in job order, then stage and index; only workers whose deadline came are looked at."""
        heap, due = self._deadlines, now + _DEADLINE_SLACK
        by_job: dict[str, dict[str, Worker]] = {}
        while heap and heap[0][0] <= due:
            w = self.workers[heapq.heappop(heap)[1]]
            if w.running:  # else it ended: its entry goes
                by_job.setdefault(w.job_id, {})[w.worker_id] = w
        if not by_job:
            return
        alive: list[Worker] = []
        for job in [j for j in self._active.values() if j.job_id in by_job]:
            tolerance = job.worker_timeout_secs * self.config.heartbeat_tolerance
            for w in sorted(by_job[job.job_id].values(), key=_slot):
                if job.terminal or not w.running:
                    continue
                seen = w.last_heartbeat_at if w.last_heartbeat_at is not None else w.launched_at
                if seen is not None and now - seen > tolerance:
                    self._fail(w, CompletedReason.Lost, f"no heartbeat for {now - seen:.0f}s", now)
                else:
                    alive.append(w)
        for w in alive:
            heapq.heappush(heap, (self._deadline(w), w.worker_id))

    def _draining_workers(self, jid: str) -> list[Worker]:
        return [self.workers[wid] for wid in self._draining.get(jid, ())]

    def _drained(self, jid: str, wid: str) -> None:
        """A draining worker is gone: the scheduling info stops listing it."""
        drains = self._draining.get(jid)
        if drains is not None and drains.pop(wid, None) is not None:
            if not drains:
                del self._draining[jid]
            self._out.effects.append(PublishSchedulingInfo(jid))

    def _end_drains(self, now: float) -> None:
        """Kill the tasks of removed workers still draining at the end of their grace period."""
        for jid, drains in list(self._draining.items()):
            for wid, until in sorted(drains.items()):
                if now >= until:
                    w = self.workers[wid]
                    grace = self.config.scale_down_grace_secs
                    message = f"scaled down: still running after {grace:g}s"
                    self._out.effects.append(KillTask(wid, w.agent_id, message, grace))
                    self._drained(jid, wid)

    def _migrate(self, now: float) -> None:
        """Move workers off disabled and draining agents, each job at its cluster's pace
        (core/migration.py `to_move`), in job order; a moved worker is replaced at its index,
        placed elsewhere since its agent's offers are declined."""
        if not self.agent_modes:
            return
        self._migrated_at = {j: t for j, t in self._migrated_at.items() if j in self._active}
        by_job: dict[str, list[Worker]] = {}
        for agent_id in sorted(self.agent_modes):
            for w in self.workers_on(agent_id):
                by_job.setdefault(w.job_id, []).append(w)
        for jid in sorted(by_job):
            job = self.jobs[jid]
            if job.terminal:
                continue
            current = job.current_workers()
            away = sum(1 for w in current if w.state is not WorkerState.Started)
            pace = self.clusters[job.cluster].definition.migration_config.pace()
            ordered = sorted(by_job[jid], key=lambda w: w.number)
            moved = to_move(
                pace,
                [w.worker_id for w in ordered],
                len(current),
                away,
                self._migrated_at.get(jid),
                now,
            )
            for wid in moved:
                self._move(job, self.workers[wid], now)
            if moved:
                self._migrated_at[jid] = now

    def _move(self, job: JobRecord, w: Worker, now: float) -> None:
        mode, hostname = self.agent_modes[w.agent_id]
        message = f"moved off {mode.value.lower()} agent {hostname or w.agent_id}"
        started = w.state is WorkerState.Started
        relaunched = CompletedReason.Relaunched
        self._emit(WorkerStateChanged(w.worker_id, WorkerState.Failed, now, relaunched, message))
        self._out.effects.append(KillTask(w.worker_id, w.agent_id, message))
        self._new_worker(job, w.stage, w.index, now, ready_at=now, replaces=w)
        self._publish(job, f"worker {w.worker_id} {message}", now, w.worker_id)
        if started:
            self._out.effects.append(PublishSchedulingInfo(job.job_id))

    def _deadline(self, w: Worker) -> float:
        """When the running worker's heartbeat window ends (never, without a launch time)."""
        seen = w.last_heartbeat_at if w.last_heartbeat_at is not None else w.launched_at
        if seen is None:
            return float("inf")
        return seen + self.jobs[w.job_id].worker_timeout_secs * self.config.heartbeat_tolerance

    def _autoscale(self, now: float) -> None:
        """Each autoscaled stage of a launched job: a sample per heartbeat interval, maybe a
        scaling. The cooldown counts from the stage's last StageScaled (or the job's start)."""
        due = self._autoscale_due
        while due and due[0][0] <= now:
            _, jid, stage = heapq.heappop(due)
            scaler = self._autoscalers.get(jid, {}).get(stage)
            if scaler is None:  # the job ended
                continue
            job = self.jobs[jid]
            period = job.heartbeat_interval_secs
            heapq.heappush(due, (now + period, jid, stage))
            if job.state is not JobState.Launched:
                continue
            workers = job.stages[stage]
            live = {w.index: w.worker_id for w in workers if w.state is WorkerState.Started}
            signals = scaler.signals(live, now, period)
            if not signals:
                continue
            last = job.last_scaled_at(stage)
            if last is None and scaler.initial_cooldown:
                last = job.started_at
            decision = scaler.decide(signals, len(workers), now, last)
            if decision is not None:
                self._scale(job, stage, decision.workers, AUTOSCALER_USER, decision.reason, now)

    def _enforce_cron(self, cluster: JobCluster, now: float) -> None:
        if cluster.cron_next_at is None or now < cluster.cron_next_at:
            return
        self._emit(CronFired(cluster.definition.name, now))
        sla = cluster.definition.sla
        if sla.cron_policy is CronPolicy.KEEP_NEW or not self._cluster_active(cluster):
            self._submit(cluster, self._inherited_request(cluster), SYSTEM_USER, now)

    def _enforce_sla_max(self, cluster: JobCluster, now: float) -> None:
        """Kill the oldest jobs over SLA max (0: no limit), with headroom for Accepted ones."""
        sla = cluster.definition.sla
        if sla.max <= 0:
            return
        active = self._cluster_active(cluster)
        launched = [j for j in active if j.state is JobState.Launched]
        accepted = [j for j in active if j.state is JobState.Accepted]
        keep = max(sla.max - len(launched), 0) + self.config.sla_headroom_accepted
        excess = (
            launched[: max(len(launched) - sla.max, 0)] + accepted[: max(len(accepted) - keep, 0)]
        )
        for job in excess:
            self._end_job(
                job, CompletedReason.Killed, f"SLA max {sla.max} exceeded", SYSTEM_USER, now
            )

    def _enforce_sla_min(self, cluster: JobCluster, now: float) -> None:
        if cluster.definition.sla.min <= 0:  # the common case: no pass over its jobs
            return
        for _ in range(cluster.definition.sla.min - len(self._cluster_active(cluster))):
            self._submit(cluster, self._inherited_request(cluster), SYSTEM_USER, now)

    # ------------------------------------------------------------------ decisions

    def _begin(self) -> Outcome:
        self._out = Outcome()
        return self._out

    def _emit(self, event: Event) -> None:
        self._appliers[type(event)](event)
        self._out.events.append(event)

    def _publish(self, job: JobRecord, message: str, now: float, wid: str = "") -> None:
        self._out.effects.append(PublishStatus(job.job_id, wid, job.state.value, message, now))

    def _cluster_active(self, cluster: JobCluster) -> list[JobRecord]:
        return [self.jobs[j] for j in cluster.job_ids if not self.jobs[j].terminal]

    def _worker_timing(self, parameters: tuple[ParameterValue, ...]) -> tuple[float, float]:
        """Heartbeat interval and worker timeout, from job parameters or the defaults."""
        job_settings(parameters)  # refuses malformed autoscaling parameters too
        c = self.config
        return (
            _positive_param(parameters, HEARTBEAT_INTERVAL_PARAM, c.heartbeat_interval_secs),
            _positive_param(parameters, WORKER_TIMEOUT_PARAM, c.worker_timeout_secs),
        )

    def _check_can_submit(self, cluster: JobCluster) -> None:
        if cluster.disabled:
            raise Conflict(f"job cluster {cluster.definition.name!r} is disabled")

    def _inherited_request(self, cluster: JobCluster) -> JobRequest:
        jobs = [self.jobs[j] for j in reversed(cluster.job_ids)]
        source = next((j for j in jobs if not j.terminal), None)
        if source is None and not jobs:
            return JobRequest()
        d = (source or jobs[0]).definition
        # The last job ended, or its artifact version left the cluster: keep its settings but
        # take the cluster's newest artifact.
        keep = source is not None and d.version in {c.version for c in cluster.definition.configs}
        return JobRequest(
            d.artifact_name if keep else None,
            d.version if keep else None,
            d.job_jar_url if keep else None,
            d.scheduling_info,
            d.parameters,
            d.labels,
            d.job_sla,
            d.subscription_timeout_secs,
            d.deployment_strategy,
        )

    def _resolve(self, cluster: JobCluster, request: JobRequest, user: str) -> JobDefinition:
        d = cluster.definition
        config = d.config(request.version) if request.version else d.latest
        artifact = request.artifact_name or config.artifact_name
        labels = _merge(
            _merge(d.labels, request.labels),
            (
                Label("_mantis.artifact", artifact),
                Label("_mantis.version", config.version),
                Label("_mantis.submitter", user),
            ),
        )
        return JobDefinition(
            cluster_name=d.name,
            user=user,
            artifact_name=artifact,
            version=config.version,
            scheduling_info=self._inherit_instance_counts(
                cluster,
                request.scheduling_info or config.scheduling_info,
                request.deployment_strategy,
            ),
            job_jar_url=request.job_jar_url or config.job_jar_url,
            parameters=_merge(d.parameters, request.parameters),
            labels=labels,
            job_sla=request.job_sla or d.job_sla,
            subscription_timeout_secs=request.subscription_timeout_secs or 0,
            deployment_strategy=request.deployment_strategy,
        )

    def _inherit_instance_counts(
        self, cluster: JobCluster, info: SchedulingInfo, strategy: DeploymentStrategy | None
    ) -> SchedulingInfo:
        """Mantis' StageDeploymentStrategy.inheritInstanceCount: each such stage starts at the
        current size of the cluster's latest running job (as submitted without one)."""
        if strategy is None or not strategy.inherit_instance_count:
            return info
        for stage in strategy.inherit_instance_count:
            if not 1 <= stage <= len(info.stages):
                raise InvalidRequest(
                    "deploymentStrategy.stageDeploymentStrategyMap",
                    f"stage {stage} is not a stage of the job (1..{len(info.stages)})",
                )
        running = self._cluster_active(cluster)
        if not running:
            return info
        latest = running[-1]
        stages = list(info.stages)
        for stage in strategy.inherit_instance_count:
            size = len(latest.stages.get(stage, ()))
            if size:
                stages[stage - 1] = replace(stages[stage - 1], number_of_instances=size)
        return SchedulingInfo(tuple(stages))

    def _submit(self, cluster: JobCluster, request: JobRequest, user: str, now: float) -> str:
        definition = self._resolve(cluster, request, user)
        interval, timeout = self._worker_timing(definition.parameters)
        tag = definition.job_sla.unique_tag
        if tag:
            for job in self._cluster_active(cluster):
                if job.definition.job_sla.unique_tag == tag:
                    return job.job_id
        number = cluster.last_job_count + 1
        jid = job_id(cluster.definition.name, number)
        self._emit(JobAccepted(jid, number, definition, user, interval, timeout, now))
        job = self.jobs[jid]
        for stage, info in enumerate(definition.scheduling_info.stages, start=1):
            for index in range(info.number_of_instances):
                self._new_worker(job, stage, index, now, ready_at=now)
        self._publish(job, f"job submitted by {user}", now)
        return jid

    def _new_worker(
        self,
        job: JobRecord,
        stage: int,
        index: int,
        now: float,
        ready_at: float,
        replaces: Worker | None = None,
        backoff_step: int = -1,
    ) -> None:
        number = job.next_worker_number
        wid = worker_id(job.job_id, index, number)
        self._emit(
            WorkerAccepted(
                wid,
                job.job_id,
                stage,
                index,
                number,
                ready_at,
                now,
                resubmit_of=replaces.number if replaces else 0,
                resubmit_count=replaces.resubmit_count + 1 if replaces else 0,
                backoff_step=backoff_step,
            )
        )
        self._out.effects.append(self._launch_request(job, self.workers[wid]))

    def _new_matcher(self) -> Matcher:
        matcher = Matcher(DEFAULT_CONFIG)
        matcher.add_placements(self._placement(w) for w in self._placed.values())
        return matcher

    def _refile_placements(self, agent_id: str) -> None:
        """The agent's attributes changed (or became known, after a restart): its placements
        take the new zone."""
        host = self._matcher.hosts.get(agent_id)
        if host is not None and host.placed:
            wids = list(host.placed)
            self._matcher.remove_placements(wids)
            self._matcher.add_placements(self._placement(self.workers[wid]) for wid in wids)

    def _placement(self, w: Worker) -> Placement:
        job = self.jobs[w.job_id]
        info = job.definition.scheduling_info.stage(w.stage)
        m = info.machine_definition
        return Placement(
            w.worker_id,
            w.job_id,
            w.stage,
            w.agent_id,
            w.hostname,
            self._agent_attributes.get(w.agent_id, ()),
            job.definition.job_sla.duration_type,
            m.cpu_cores,
            m.memory_mb,
            m.disk_mb,
            m.network_mbps,
            info.hard_constraints,
            info.soft_constraints,
        )

    def _launch_request(self, job: JobRecord, w: Worker) -> LaunchRequest:
        info = job.definition.scheduling_info.stage(w.stage)
        return LaunchRequest(
            w.worker_id,
            job.job_id,
            w.stage,
            w.index,
            w.number,
            info.machine_definition,
            info.hard_constraints,
            info.soft_constraints,
            job.definition.job_sla.duration_type,
            w.ready_at,
        )

    def _fail(self, w: Worker, reason: CompletedReason, message: str, now: float) -> None:
        """A worker failed: replace it in place with back-off, or fail the job past the limit."""
        job = self.jobs[w.job_id]
        self._emit(WorkerStateChanged(w.worker_id, WorkerState.Failed, now, reason, message))
        self._out.effects.append(KillTask(w.worker_id, w.agent_id, message))
        if job.terminal:
            return
        recent = sum(1 for t in job.failure_times if t > now - HOUR)
        if recent >= self.config.max_worker_failures_per_hour:
            self._end_job(
                job,
                CompletedReason.Error,
                f"{recent} worker failures in the last hour",
                SYSTEM_USER,
                now,
            )
            return
        delays = self.config.resubmit_delays_secs
        step, expires_at = job.backoff.get((w.stage, w.index), (-1, now))
        step = min(step + 1, len(delays) - 1) if now < expires_at else 0
        self._new_worker(
            job, w.stage, w.index, now, now + delays[step], replaces=w, backoff_step=step
        )
        self._publish(
            job, f"worker {w.worker_id} failed ({reason.value}): {message}", now, w.worker_id
        )
        if w.started_at is not None:
            self._out.effects.append(PublishSchedulingInfo(job.job_id))

    def _after_worker_started(self, job: JobRecord, now: float) -> None:
        if job.state is JobState.Accepted and job.all_started():
            self._emit(
                JobStateChanged(job.job_id, JobState.Launched, now, None, "all workers started")
            )
            self._publish(job, "all workers started", now)
        self._out.effects.append(PublishSchedulingInfo(job.job_id))

    def _after_worker_ended(self, job: JobRecord, now: float) -> None:
        if not job.terminal and all(w.terminal for w in job.current_workers()):
            self._end_job(job, CompletedReason.Normal, "all workers completed", SYSTEM_USER, now)
        elif not job.terminal:
            self._out.effects.append(PublishSchedulingInfo(job.job_id))

    def _end_job(
        self, job: JobRecord, reason: CompletedReason, message: str, user: str, now: float
    ) -> None:
        self._emit(JobStateChanged(job.job_id, end_state(reason), now, reason, message, user))
        for w in self._draining_workers(job.job_id):
            self._out.effects.append(
                KillTask(w.worker_id, w.agent_id, message, self.config.scale_down_grace_secs)
            )
        self._draining.pop(job.job_id, None)
        for w in job.current_workers():
            if not w.terminal:
                self._emit(
                    WorkerStateChanged(
                        w.worker_id, WorkerState.Completed, now, CompletedReason.Killed, message
                    )
                )
                self._out.effects.append(KillTask(w.worker_id, w.agent_id, message))
        self._publish(job, message, now)
        self._out.effects.append(PublishSchedulingInfo(job.job_id))

    # ------------------------------------------------------------------ state changes

    def _on_cluster_created(self, e: ClusterCreated) -> None:
        name = e.definition.name
        self.clusters[name] = JobCluster(
            e.definition,
            e.at,
            last_job_count=self._deleted_job_counts.pop(name, 0),
            cron_next_at=_cron_next(e.definition.sla, e.at),
        )

    def _on_cluster_updated(self, e: ClusterUpdated) -> None:
        cluster = self.clusters[e.definition.name]
        if e.definition.sla != cluster.definition.sla:
            cluster.cron_next_at = _cron_next(e.definition.sla, e.at)
        cluster.definition = e.definition

    def _on_cluster_deleted(self, e: ClusterDeleted) -> None:
        cluster = self.clusters.pop(e.name)
        # Job numbers continue if the name is reused, so job ids never repeat.
        self._deleted_job_counts[e.name] = cluster.last_job_count

    def _on_cluster_enabled(self, e: ClusterEnabled) -> None:
        self.clusters[e.name].disabled = not e.enabled

    def _on_cron_fired(self, e: CronFired) -> None:
        cluster = self.clusters[e.name]
        cluster.cron_next_at = _cron_next(cluster.definition.sla, e.at)

    def _on_job_accepted(self, e: JobAccepted) -> None:
        cluster = self.clusters[e.definition.cluster_name]
        job = JobRecord(
            e.job_id,
            cluster.definition.name,
            e.number,
            e.definition,
            e.at,
            e.user,
            e.heartbeat_interval_secs,
            e.worker_timeout_secs,
        )
        job.stages = {s: [] for s in range(1, len(e.definition.scheduling_info.stages) + 1)}
        cluster.last_job_count = e.number
        cluster.job_ids.append(e.job_id)
        self.jobs[e.job_id] = job
        self._active[e.job_id] = job
        scalers = stage_autoscalers(e.definition)
        if scalers:
            self._autoscalers[e.job_id] = scalers
            for stage in scalers:
                heapq.heappush(self._autoscale_due, (e.at, e.job_id, stage))

    def _on_worker_accepted(self, e: WorkerAccepted) -> None:
        job = self.jobs[e.job_id]
        w = Worker(
            e.worker_id,
            e.job_id,
            e.stage,
            e.index,
            e.number,
            e.at,
            e.ready_at,
            e.resubmit_of,
            e.resubmit_count,
        )
        self.workers[e.worker_id] = w
        self._pending[e.worker_id] = w
        slots = job.stages[e.stage]
        if e.index < len(slots):
            w.replaced_reason, w.replaced_message = slots[e.index].reason, slots[e.index].message
            slots[e.index] = w
        else:
            slots.append(w)
        job.next_worker_number = e.number + 1
        if e.backoff_step >= 0 and self._live:  # volatile: a restarted master starts afresh
            job.backoff[(e.stage, e.index)] = (
                e.backoff_step,
                e.ready_at + self.config.resubmit_expiry_secs,
            )

    def _on_worker_launched(self, e: WorkerLaunched) -> None:
        w = self.workers[e.worker_id]
        self._move_worker(w, WorkerState.Launched)
        w.agent_id, w.hostname, w.ports, w.launched_at = e.agent_id, e.hostname, e.ports, e.at
        w.pending_reason = ""
        del self._pending[e.worker_id]
        self._placed[e.worker_id] = w
        self._launched[e.worker_id] = w
        if e.worker_id not in self._matcher.placement_agent:  # else its offer round placed it
            self._matcher.add_placements((self._placement(w),))
        heapq.heappush(self._deadlines, (self._deadline(w), e.worker_id))

    def _on_worker_state_changed(self, e: WorkerStateChanged) -> None:
        w = self.workers[e.worker_id]
        was_started = w.state is WorkerState.Started
        self._move_worker(w, e.state)
        self._launched.pop(e.worker_id, None)
        if was_started is not (e.state is WorkerState.Started):
            self.jobs[w.job_id].started_workers += 1 if not was_started else -1
        if e.state is WorkerState.Started:
            w.started_at = e.at
        elif e.state is WorkerState.Failed or e.state is WorkerState.Completed:
            w.completed_at, w.reason, w.message = e.at, e.reason, e.message
            self._pending.pop(e.worker_id, None)
            if self._placed.pop(e.worker_id, None) is not None:
                self._matcher.remove_placements((e.worker_id,))
            lost = e.reason is CompletedReason.Error or e.reason is CompletedReason.Lost
            if lost and self._live:  # volatile, as Mantis' WorkerResubmitRateLimiter
                self.jobs[w.job_id].failure_times.append(e.at)

    def _on_job_state_changed(self, e: JobStateChanged) -> None:
        job = self.jobs[e.job_id]
        if self._live:
            job.move(e.state)
        else:
            job.state = e.state
        if e.state is JobState.Launched:
            job.started_at = e.at
        else:
            job.ended_at, job.reason, job.message = e.at, e.reason, e.message
            self._active.pop(e.job_id, None)
            self._autoscalers.pop(e.job_id, None)

    def _on_stage_scaled(self, e: StageScaled) -> None:
        job = self.jobs[e.job_id]
        history = job.scalings.setdefault(e.stage, deque(maxlen=SCALING_HISTORY))
        history.append(Scaling(e.at, len(job.stages[e.stage]), e.workers, e.user, e.reason))
        del job.stages[e.stage][e.workers :]

    def _on_agent_mode_changed(self, e: AgentModeChanged) -> None:
        if e.mode is AgentMode.ACTIVE:
            self.agent_modes.pop(e.agent_id, None)
        else:
            self.agent_modes[e.agent_id] = (e.mode, e.hostname)

    def _move_worker(self, w: Worker, dest: WorkerState) -> None:
        if self._live:
            w.move(dest)
        else:
            w.state = dest

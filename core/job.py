"""A job: one run of a job cluster, its stages and workers, and its lifecycle machine.

States and allowed moves are Mantis' JobState (io.mantisrx.master.jobcluster.job.JobState). Like
workers, jobs share one Machine and fire triggers on the job object without `add_model`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from transitions import Machine, MachineError

from core.model import CompletedReason, JobDefinition
from core.worker import Worker


class JobState(Enum):
    Accepted = "Accepted"
    Launched = "Launched"
    Terminating_abnormal = "Terminating_abnormal"
    Terminating_normal = "Terminating_normal"
    Failed = "Failed"
    Completed = "Completed"
    Noop = "Noop"


S = JobState
TERMINAL = frozenset({S.Failed, S.Completed, S.Terminating_abnormal, S.Terminating_normal})

# (trigger, sources, destination), as for workers.
MOVES: tuple[tuple[str, tuple[JobState, ...], JobState], ...] = (
    ("launched", (S.Accepted,), S.Launched),
    ("terminate_abnormal", (S.Accepted, S.Launched), S.Terminating_abnormal),
    ("terminate_normal", (S.Accepted, S.Launched), S.Terminating_normal),
    ("failed", (S.Accepted, S.Launched, S.Terminating_abnormal), S.Failed),
    ("completed", (S.Accepted, S.Launched, S.Terminating_normal), S.Completed),
)
JOB_TRANSITIONS = [{"trigger": t, "source": list(src), "dest": d} for t, src, d in MOVES]
TRIGGER_TO: dict[JobState, str] = {d: t for t, _, d in MOVES}
ALLOWED: frozenset[tuple[JobState, JobState]] = frozenset(
    (s, d) for _, src, d in MOVES for s in src
)

JOB_MACHINE = Machine(
    model=None,
    states=JobState,
    transitions=JOB_TRANSITIONS,
    initial=None,
    auto_transitions=False,
    ignore_invalid_triggers=False,
    send_event=True,
)


SCALING_HISTORY = 20  # scalings kept per stage for the job's JSON


@dataclass(frozen=True, slots=True)
class Scaling:
    """One StageScaled, by a user or the autoscaler, with its reason."""

    at: float
    from_workers: int
    to_workers: int
    user: str
    reason: str


def end_state(reason: CompletedReason) -> JobState:
    """Mantis' kill path: Error or Lost end a job Failed, anything else Completed."""
    return S.Failed if reason in (CompletedReason.Error, CompletedReason.Lost) else S.Completed


@dataclass(slots=True, eq=False)
class JobRecord:
    """Mutable job record; changed only by ControlPlane's event appliers."""

    job_id: str
    cluster: str
    number: int
    definition: JobDefinition
    submitted_at: float
    submitted_by: str
    heartbeat_interval_secs: float
    worker_timeout_secs: float
    state: JobState = JobState.Accepted
    started_at: float | None = None
    ended_at: float | None = None
    reason: CompletedReason | None = None
    message: str = ""
    next_worker_number: int = 1
    # Volatile, as Mantis keeps its WorkerResubmitRateLimiter in the JobActor's memory: a
    # restarted master starts afresh, so workers lost to a cluster shutdown are not held back.
    failure_times: list[float] = field(default_factory=list)  # errors, for the hourly limit
    backoff: dict[tuple[int, int], tuple[int, float]] = field(
        default_factory=dict
    )  # (stage, index) -> (step, expires)
    # Current workers per stage, by index: the one non-terminal (or last) worker of each slot.
    stages: dict[int, list[Worker]] = field(default_factory=dict)
    started_workers: int = 0  # current workers in Started, kept by the appliers so checks are O(1)
    # The last scalings per stage, from StageScaled events: replayed, so cooldowns survive.
    scalings: dict[int, deque[Scaling]] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def move(self, dest: JobState) -> None:
        """Fire the transition to `dest`; raises MachineError if Mantis forbids it."""
        trigger = TRIGGER_TO.get(dest)
        if trigger is None:
            raise MachineError(f"no transition leads to {dest.name}")
        JOB_MACHINE.events[trigger].trigger(self)

    def last_scaled_at(self, stage: int) -> float | None:
        history = self.scalings.get(stage)
        return history[-1].at if history else None

    def current_workers(self) -> list[Worker]:
        return [w for stage in sorted(self.stages) for w in self.stages[stage]]

    def all_started(self) -> bool:
        size = sum(len(slots) for slots in self.stages.values())
        return size > 0 and self.started_workers == size

    def durable(self) -> tuple[object, ...]:
        return (
            self.job_id,
            self.definition,
            self.submitted_at,
            self.submitted_by,
            self.heartbeat_interval_secs,
            self.worker_timeout_secs,
            self.state,
            self.started_at,
            self.ended_at,
            self.reason,
            self.message,
            self.next_worker_number,
            {s: [w.worker_id for w in ws] for s, ws in self.stages.items()},
        )

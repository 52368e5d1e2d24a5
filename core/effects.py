"""Effects: what an adapter must do after the events of a command are persisted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.model import DurationType, JobConstraint, MachineDefinition

if TYPE_CHECKING:  # the matcher itself takes LaunchRequests: import its types lazily
    from core.scheduling import Assignment


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """A worker needs resources: place it on an agent no earlier than `ready_at`."""

    worker_id: str
    job_id: str
    stage: int
    index: int
    number: int
    machine: MachineDefinition
    hard_constraints: tuple[JobConstraint, ...]
    soft_constraints: tuple[JobConstraint, ...]
    duration_type: DurationType
    ready_at: float


@dataclass(frozen=True, slots=True)
class LaunchTask:
    """Start the worker's task where the matcher placed it, on that agent's offers."""

    request: LaunchRequest
    assignment: Assignment


@dataclass(frozen=True, slots=True)
class DeclineOffers:
    """Offers nothing was placed on; not offered again for `refuse_seconds` (or a revive)."""

    offer_ids: tuple[str, ...]
    refuse_seconds: float


@dataclass(frozen=True, slots=True)
class KillTask:
    """Stop a worker's task (or forget its pending launch request).

    `grace_secs`: how long the task may take to stop after SIGTERM before the agent sends
    SIGKILL (Mesos' KillPolicy.grace_period, mesos/v1/mesos.proto); None: the agent's own.
    A worker removed by a scale-down gets the scale-down grace to flush what it holds."""

    worker_id: str
    agent_id: str
    reason: str
    grace_secs: float | None = None


@dataclass(frozen=True, slots=True)
class WorkerLocation:
    index: int
    number: int
    hostname: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StageAssignment:
    stage: int
    num_workers: int
    hosts: tuple[WorkerLocation, ...]


@dataclass(frozen=True, slots=True)
class JobSchedulingInfo:
    """Mantis' JobSchedulingInfo: per stage, the Started workers and where they run."""

    job_id: str
    stages: tuple[StageAssignment, ...]


@dataclass(frozen=True, slots=True)
class PublishSchedulingInfo:
    """The job's Started workers changed: publish `ControlPlane.scheduling_info(job_id)`.

    A signal rather than the info itself, so that a stage of 1,500 workers starting costs
    O(n) and the adapter can coalesce bursts, as Mantis batches its assignment refreshes.
    """

    job_id: str


@dataclass(frozen=True, slots=True)
class PublishStatus:
    """A lifecycle message for the job status stream."""

    job_id: str
    worker_id: str
    state: str
    message: str
    at: float


Effect = (
    LaunchRequest | LaunchTask | DeclineOffers | KillTask | PublishSchedulingInfo | PublishStatus
)

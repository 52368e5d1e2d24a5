"""Domain events: what happened, the only thing the store persists.

The control plane's state is the fold of these events (`ControlPlane.replay`). Each event is
a frozen value holding everything its application needs, so that applying it never has to
look at a clock or recompute a decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.job import JobState
from core.migration import AgentMode
from core.model import CompletedReason, JobClusterDefinition, JobDefinition
from core.worker import WorkerState


@dataclass(frozen=True, slots=True)
class ClusterCreated:
    definition: JobClusterDefinition
    at: float


@dataclass(frozen=True, slots=True)
class ClusterUpdated:
    """Any change of a cluster's definition; `action` says which API call made it."""

    definition: JobClusterDefinition
    action: str
    user: str
    at: float


@dataclass(frozen=True, slots=True)
class ClusterDeleted:
    name: str
    user: str
    at: float


@dataclass(frozen=True, slots=True)
class ClusterEnabled:
    name: str
    enabled: bool
    user: str
    at: float


@dataclass(frozen=True, slots=True)
class CronFired:
    """The cluster's cron came due at `at`; the next fire time follows from the spec."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class JobAccepted:
    job_id: str
    number: int
    definition: JobDefinition
    user: str
    heartbeat_interval_secs: float
    worker_timeout_secs: float
    at: float


@dataclass(frozen=True, slots=True)
class WorkerAccepted:
    """A new worker for (stage, index): at submit, scale-up or as a replacement."""

    worker_id: str
    job_id: str
    stage: int
    index: int
    number: int
    ready_at: float
    at: float
    resubmit_of: int = 0
    resubmit_count: int = 0
    backoff_step: int = -1  # step of the resubmit back-off ladder; -1 when none applied


@dataclass(frozen=True, slots=True)
class WorkerLaunched:
    worker_id: str
    agent_id: str
    hostname: str
    ports: tuple[int, ...]
    at: float


@dataclass(frozen=True, slots=True)
class WorkerStateChanged:
    worker_id: str
    state: WorkerState
    at: float
    reason: CompletedReason | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class JobStateChanged:
    job_id: str
    state: JobState
    at: float
    reason: CompletedReason | None = None
    message: str = ""
    user: str = ""


@dataclass(frozen=True, slots=True)
class StageScaled:
    job_id: str
    stage: int
    workers: int
    user: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class AgentModeChanged:
    """An agent disabled, drained or enabled again (core/migration.py); `hostname` as it
    was known then, for people reading the log."""

    agent_id: str
    hostname: str
    mode: AgentMode
    user: str
    at: float


Event = (
    ClusterCreated
    | ClusterUpdated
    | ClusterDeleted
    | ClusterEnabled
    | CronFired
    | JobAccepted
    | WorkerAccepted
    | WorkerLaunched
    | WorkerStateChanged
    | JobStateChanged
    | StageScaled
    | AgentModeChanged
)

EVENT_TYPES: tuple[type[Event], ...] = (
    ClusterCreated,
    ClusterUpdated,
    ClusterDeleted,
    ClusterEnabled,
    CronFired,
    JobAccepted,
    WorkerAccepted,
    WorkerLaunched,
    WorkerStateChanged,
    JobStateChanged,
    StageScaled,
    AgentModeChanged,
)

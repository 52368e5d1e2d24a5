"""Value types of the domain: job cluster, job and stage definitions, SLAs, ids, resources.

Every type validates itself on construction and raises `InvalidRequest` naming the field in
Mantis' JSON spelling, so that a bad request is refused before it touches any state. Limits
are Mantis' (MantisJobDefinition, StageSchedulingInfo, MachineDefinition, JobSla in
mantis-common; io.mantisrx.server.master.config.MasterConfiguration).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum

from core.cron import CronError, parse_cron
from core.errors import InvalidRequest
from core.migration import DEFAULT_MIGRATION, WorkerMigrationConfig

MAX_CPU_CORES = 8.0
MAX_MEMORY_MB = 28000.0
MAX_NETWORK_MBPS = 1024.0
DEFAULT_NETWORK_MBPS = 128.0
MAX_WORKERS_PER_STAGE = 1500
SYSTEM_PORTS = 4  # Mantis asks for numPorts + 4: metrics, debug, console, custom
MAX_CLUSTER_VERSIONS = 4
SLA_MAX_MIN = 5
SLA_MAX_MAX = 100

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,99}")


class DurationType(StrEnum):
    Perpetual = "Perpetual"
    Transient = "Transient"


class CronPolicy(StrEnum):
    KEEP_EXISTING = "KEEP_EXISTING"
    KEEP_NEW = "KEEP_NEW"


class JobConstraint(StrEnum):
    """Mantis' placement constraint names (hard or soft per stage)."""

    UniqueHost = "UniqueHost"
    ExclusiveHost = "ExclusiveHost"
    ZoneBalance = "ZoneBalance"
    M3Cluster = "M3Cluster"
    M4Cluster = "M4Cluster"
    M5Cluster = "M5Cluster"


class CompletedReason(StrEnum):
    """Why a job or worker ended (Mantis' JobCompletedReason)."""

    Normal = "Normal"
    Error = "Error"
    Lost = "Lost"
    Killed = "Killed"
    Relaunched = "Relaunched"


def check_name(field_name: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(
            field_name,
            f"{name!r} must start with a letter and use only letters, digits, '_', '.', '-' "
            "(at most 100 characters)",
        )
    return name


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class MachineDefinition:
    """Resources one worker of a stage needs."""

    cpu_cores: float
    memory_mb: float
    network_mbps: float = DEFAULT_NETWORK_MBPS
    disk_mb: float = 0.0
    num_ports: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.cpu_cores <= MAX_CPU_CORES:
            raise InvalidRequest(
                "cpuCores", f"must be in (0, {MAX_CPU_CORES:g}], got {self.cpu_cores}"
            )
        if not 0 < self.memory_mb <= MAX_MEMORY_MB:
            raise InvalidRequest(
                "memoryMB", f"must be in (0, {MAX_MEMORY_MB:g}], got {self.memory_mb}"
            )
        if not 0 <= self.network_mbps <= MAX_NETWORK_MBPS:
            raise InvalidRequest(
                "networkMbps", f"must be in [0, {MAX_NETWORK_MBPS:g}], got {self.network_mbps}"
            )
        if self.disk_mb < 0:
            raise InvalidRequest("diskMB", f"must be >= 0, got {self.disk_mb}")
        if not 0 <= self.num_ports <= 100:
            raise InvalidRequest("numPorts", f"must be in [0, 100], got {self.num_ports}")
        if self.network_mbps == 0:
            _set(self, "network_mbps", DEFAULT_NETWORK_MBPS)
        if self.num_ports == 0:
            _set(self, "num_ports", 1)

    @property
    def ports_needed(self) -> int:
        return self.num_ports + SYSTEM_PORTS


def metrics_port(ports: tuple[int, ...]) -> int:
    """A worker's metrics port among the `ports` assigned to it, -1 if it has none: its data
    ports come first, then the SYSTEM_PORTS (metrics, debug, console, custom: the order of
    Mantis' WorkerPorts.getAllPorts), so the metrics port is the first of the last four."""
    return ports[-SYSTEM_PORTS] if len(ports) > SYSTEM_PORTS else -1


@dataclass(frozen=True, slots=True)
class ScalingStrategy:
    """One autoscaling signal with its thresholds and rolling window."""

    reason: str
    scale_down_below_pct: float = 0.0
    scale_up_above_pct: float = 0.0
    rolling_count: int = 1
    rolling_of: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.rolling_count <= self.rolling_of:
            raise InvalidRequest("rollingCount", "needs 1 <= count <= of")
        if self.scale_up_above_pct < self.scale_down_below_pct:
            _set(self, "scale_up_above_pct", self.scale_down_below_pct)


@dataclass(frozen=True, slots=True)
class StageScalingPolicy:
    stage: int
    min: int
    max: int
    increment: int = 1
    decrement: int = 1
    cool_down_secs: int = 0
    strategies: tuple[ScalingStrategy, ...] = ()

    def __post_init__(self) -> None:
        if self.min < 0:
            raise InvalidRequest("scalingPolicy.min", f"must be >= 0, got {self.min}")
        if self.cool_down_secs < 0:
            raise InvalidRequest("scalingPolicy.coolDownSecs", "must be >= 0")
        _set(self, "max", min(max(self.max, self.min), MAX_WORKERS_PER_STAGE))
        _set(self, "increment", max(self.increment, 1))
        _set(self, "decrement", max(self.decrement, 1))

    @property
    def enabled(self) -> bool:
        return self.min != self.max and bool(self.strategies)


@dataclass(frozen=True, slots=True)
class StageSchedulingInfo:
    number_of_instances: int
    machine_definition: MachineDefinition
    hard_constraints: tuple[JobConstraint, ...] = ()
    soft_constraints: tuple[JobConstraint, ...] = ()
    scalable: bool = False
    scaling_policy: StageScalingPolicy | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.number_of_instances <= MAX_WORKERS_PER_STAGE:
            raise InvalidRequest(
                "numberOfInstances",
                f"must be in [1, {MAX_WORKERS_PER_STAGE}], got {self.number_of_instances}",
            )
        both = set(self.hard_constraints) & set(self.soft_constraints)
        if both:
            raise InvalidRequest("softConstraints", f"{sorted(both)} already hard constraints")


@dataclass(frozen=True, slots=True)
class SchedulingInfo:
    """Stages 1..N of a job, in order (stage n is `stages[n - 1]`)."""

    stages: tuple[StageSchedulingInfo, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise InvalidRequest("schedulingInfo.stages", "a job needs at least one stage")

    def stage(self, number: int) -> StageSchedulingInfo:
        if not 1 <= number <= len(self.stages):
            raise InvalidRequest(
                "stageNumber", f"job has stages 1..{len(self.stages)}, not {number}"
            )
        return self.stages[number - 1]


@dataclass(frozen=True, slots=True)
class DeploymentStrategy:
    """Mantis' DeploymentStrategy (its stageDeploymentStrategyMap of StageDeploymentStrategy):
    the stages whose `inheritInstanceCount` is true. A new job of the cluster starts each of
    them at the current size of the cluster's latest running job, not at its submitted size,
    so a resubmission keeps what autoscaling or a user's scaleStage grew the stage to."""

    inherit_instance_count: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class JobSla:
    runtime_limit_secs: int = 0
    min_runtime_secs: int = 0
    sla_type: str = "Lossy"
    duration_type: DurationType = DurationType.Perpetual
    user_provided_type: str = ""

    def __post_init__(self) -> None:
        if self.runtime_limit_secs < 0:
            raise InvalidRequest("jobSla.runtimeLimitSecs", "must be >= 0")
        if self.min_runtime_secs < 0:
            raise InvalidRequest("jobSla.minRuntimeSecs", "must be >= 0")
        self.unique_tag  # noqa: B018 - validates the JSON early

    @property
    def unique_tag(self) -> str:
        """The `unique` key of userProvidedType: jobs with the same tag are deduplicated."""
        if not self.user_provided_type:
            return ""
        try:
            value = json.loads(self.user_provided_type)
        except ValueError as e:
            raise InvalidRequest("jobSla.userProvidedType", f"not JSON: {e}") from None
        if not isinstance(value, dict):
            raise InvalidRequest("jobSla.userProvidedType", "must be a JSON object")
        return str(value.get("unique", ""))


@dataclass(frozen=True, slots=True)
class ClusterSla:
    """How many jobs of a cluster run at once, or when a cron submits one."""

    min: int = 0
    max: int = 0
    cron_spec: str = ""
    cron_policy: CronPolicy | None = None

    def __post_init__(self) -> None:
        if self.cron_spec:
            try:
                parse_cron(self.cron_spec)
            except CronError as e:
                raise InvalidRequest("cronSpec", str(e)) from None
            _set(self, "min", 0)
            _set(self, "max", 1)
            if self.cron_policy is None:
                _set(self, "cron_policy", CronPolicy.KEEP_EXISTING)
            return
        _set(self, "cron_policy", None)
        if self.min < 0:
            raise InvalidRequest("slaMin", f"must be >= 0, got {self.min}")
        if self.min > SLA_MAX_MIN:
            raise InvalidRequest("slaMin", f"must be <= {SLA_MAX_MIN}, got {self.min}")
        if self.max > SLA_MAX_MAX:
            raise InvalidRequest("slaMax", f"must be <= {SLA_MAX_MAX}, got {self.max}")
        if self.max < self.min:
            raise InvalidRequest("slaMax", f"must be >= slaMin ({self.min}), got {self.max}")


@dataclass(frozen=True, slots=True)
class JobOwner:
    name: str = ""
    team_name: str = ""
    description: str = ""
    contact_email: str = ""
    repo: str = ""


@dataclass(frozen=True, slots=True)
class ParameterValue:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Label:
    name: str
    value: str


def _check_unique_names(
    field_name: str, items: tuple[ParameterValue, ...] | tuple[Label, ...]
) -> None:
    names = [i.name for i in items]
    if len(set(names)) != len(names):
        raise InvalidRequest(field_name, "names must be unique")


@dataclass(frozen=True, slots=True)
class JobClusterConfig:
    """One version of a cluster's artifact and scheduling info."""

    artifact_name: str
    version: str
    uploaded_at: float
    scheduling_info: SchedulingInfo
    job_jar_url: str = ""

    def __post_init__(self) -> None:
        if not self.artifact_name:
            raise InvalidRequest("artifactName", "must not be empty")
        if not self.version:
            raise InvalidRequest("version", "must not be empty")


@dataclass(frozen=True, slots=True)
class JobClusterDefinition:
    """A named, versioned job template; the newest config is the last one."""

    name: str
    configs: tuple[JobClusterConfig, ...]
    owner: JobOwner = field(default_factory=JobOwner)
    user: str = ""
    sla: ClusterSla = field(default_factory=ClusterSla)
    job_sla: JobSla = field(default_factory=JobSla)
    parameters: tuple[ParameterValue, ...] = ()
    labels: tuple[Label, ...] = ()
    migration_config: WorkerMigrationConfig = DEFAULT_MIGRATION
    """How workers move off disabled agents (core/migration.py)."""

    def __post_init__(self) -> None:
        check_name("name", self.name)
        if not self.configs:
            raise InvalidRequest("jobClusterConfigs", "a cluster needs at least one version")
        if len(self.configs) > MAX_CLUSTER_VERSIONS:
            raise InvalidRequest("jobClusterConfigs", f"at most {MAX_CLUSTER_VERSIONS} versions")
        versions = [c.version for c in self.configs]
        if len(set(versions)) != len(versions):
            raise InvalidRequest("version", "versions of a cluster must be unique")
        _check_unique_names("parameters", self.parameters)
        _check_unique_names("labels", self.labels)

    @property
    def latest(self) -> JobClusterConfig:
        return self.configs[-1]

    def config(self, version: str) -> JobClusterConfig:
        for c in self.configs:
            if c.version == version:
                return c
        raise InvalidRequest("version", f"cluster {self.name!r} has no version {version!r}")

    def with_config(self, config: JobClusterConfig) -> tuple[JobClusterConfig, ...]:
        """The config list after adding a new version: the last three plus the new one."""
        if any(c.version == config.version for c in self.configs):
            raise InvalidRequest("version", f"version {config.version!r} already exists")
        return (*self.configs[-(MAX_CLUSTER_VERSIONS - 1) :], config)


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a submitter may set; everything left None comes from the cluster or the last job."""

    artifact_name: str | None = None
    version: str | None = None
    job_jar_url: str | None = None
    scheduling_info: SchedulingInfo | None = None
    parameters: tuple[ParameterValue, ...] | None = None
    labels: tuple[Label, ...] | None = None
    job_sla: JobSla | None = None
    subscription_timeout_secs: int | None = None
    deployment_strategy: DeploymentStrategy | None = None

    def __post_init__(self) -> None:
        if self.subscription_timeout_secs is not None and self.subscription_timeout_secs < 0:
            raise InvalidRequest("subscriptionTimeoutSecs", "must be >= 0")
        if self.parameters is not None:
            _check_unique_names("parameters", self.parameters)
        if self.labels is not None:
            _check_unique_names("labels", self.labels)


@dataclass(frozen=True, slots=True)
class JobDefinition:
    """A fully resolved job: what was actually submitted."""

    cluster_name: str
    user: str
    artifact_name: str
    version: str
    scheduling_info: SchedulingInfo
    job_jar_url: str = ""
    parameters: tuple[ParameterValue, ...] = ()
    labels: tuple[Label, ...] = ()
    job_sla: JobSla = field(default_factory=JobSla)
    subscription_timeout_secs: int = 0
    deployment_strategy: DeploymentStrategy | None = None

    def parameter(self, name: str, default: str = "") -> str:
        for p in self.parameters:
            if p.name == name:
                return p.value
        return default


def job_id(cluster_name: str, number: int) -> str:
    return f"{cluster_name}-{number}"


def parse_job_id(value: str) -> tuple[str, int]:
    """Split `<cluster>-<n>` at the last dash, as Mantis does."""
    cluster, _, number = value.rpartition("-")
    if not cluster or not number.isdigit():
        raise InvalidRequest("jobId", f"{value!r} is not of the form <cluster>-<number>")
    return cluster, int(number)


def worker_id(job: str, index: int, number: int) -> str:
    return f"{job}-worker-{index}-{number}"


def parse_worker_id(value: str) -> tuple[str, int, int]:
    """`<job>-worker-<index>-<number>` -> (job id, index, number)."""
    job, sep, rest = value.rpartition("-worker-")
    index, _, number = rest.partition("-")
    if not sep or not job or not index.isdigit() or not number.isdigit():
        raise InvalidRequest(
            "workerId", f"{value!r} is not of the form <job>-worker-<index>-<number>"
        )
    return job, int(index), int(number)

"""Mantis' JSON request bodies -> core values, every field checked, a bad one named by its path.

The bodies' shapes and types are declared once in adapters/http/bodies.py (msgspec Structs,
which also give the OpenAPI schemas); this module turns a decoded body into the core's
values and checks what one field's type cannot say: required names, stage numbering, unique
parameter names, the artifact's name. The core's own rules (core/model.py) raise
`InvalidRequest` with the core's field name, which `within` prefixes with the JSON path, e.g.
`jobDefinition.schedulingInfo.stages.1.machineDefinition.cpuCores`. Stage `"0"` (the job
master) is accepted and ignored: Mantis' master adds it by itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from adapters.http import bodies
from adapters.http.bodies import (
    MAX_JSON_INT,
    MAX_NAME,
    MAX_URL,
    MAX_VALUE,
    SAFE_ARTIFACT_NAME,
    B,
    MantisJobDefinition,
    NamedJobDefinition,
    NameValue,
    convert,
    decode,
)
from adapters.http.responses import Json
from core.errors import InvalidRequest
from core.migration import DEFAULT_MIGRATION, WorkerMigrationConfig
from core.model import (
    ClusterSla,
    DeploymentStrategy,
    DurationType,
    JobClusterConfig,
    JobClusterDefinition,
    JobOwner,
    JobRequest,
    JobSla,
    Label,
    MachineDefinition,
    ParameterValue,
    ScalingStrategy,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
    check_name,
)

__all__ = ["MAX_JSON_INT", "MAX_NAME", "MAX_URL", "MAX_VALUE", "SAFE_ARTIFACT_NAME"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
RESERVED_ARTIFACT_NAMES = frozenset({"names"})  # GET /api/v1/jobArtifacts/names lists them
Named = TypeVar("Named", ParameterValue, Label)
_STAGE_KEY = re.compile(r"[0-9]{1,6}")


# ---------------------------------------------------------------------- reading fields


@contextmanager
def within(prefix: str) -> Iterator[None]:
    """Re-raise the core's `InvalidRequest("cpuCores")` as `InvalidRequest(prefix + "cpuCores")`."""
    try:
        yield
    except InvalidRequest as e:
        if e.field.startswith(prefix):
            raise
        message = e.message.removeprefix(f"{e.field}: ")
        raise InvalidRequest(prefix + e.field, message) from None


async def read_body(request: web.Request, kind: type[B], strict: bool = False) -> B:
    """The request body as a `kind` (adapters/http/bodies.py), or a 400 naming the field."""
    return decode(await request.read(), kind, strict)


def check_text(value: str, where: str, limit: int = MAX_VALUE, name: bool = False) -> str:
    """At most `limit` characters; no control characters in a `name` (a user, a label key)."""
    if len(value) > limit:
        raise InvalidRequest(where, f"must be at most {limit} characters, got {len(value)}")
    if name and _CONTROL.search(value):
        raise InvalidRequest(where, "must not contain control characters")
    return value


def check_artifact_name(name: str, where: str = "name") -> str:
    """An artifact's name: a plain file name, so nothing is ever written outside its folder."""
    if not SAFE_ARTIFACT_NAME.fullmatch(name) or name in RESERVED_ARTIFACT_NAMES:
        raise InvalidRequest(
            where,
            f"{name[:100]!r} is not a safe artifact name: use letters, digits, '.', '_', '-' "
            "(not first '.'; at most 255 characters; not 'names')",
        )
    return name


def required(value: str | None, where: str) -> str:
    """A string the body must give, not empty."""
    if not value:
        raise InvalidRequest(where, "is required" if value is None else "must not be empty")
    return value


def check_same(given: str | None, key: str, expected: str) -> None:
    """A body's `name` (or JobId) may be left out, but must equal the path's if given."""
    if given is not None and given != expected:
        raise InvalidRequest(key, f"must equal {expected!r} from the path, got {given!r}")


def to_int(value: object, where: str) -> int:
    """A query parameter's integer (queries.py); bodies are read by bodies.py."""
    if isinstance(value, bool):
        raise InvalidRequest(where, "must be an integer, got bool")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidRequest(where, f"must be an integer, got {value!r}") from None
    if not isinstance(value, int):
        raise InvalidRequest(where, f"must be an integer, got {type(value).__name__}")
    if abs(value) > MAX_JSON_INT:
        raise InvalidRequest(where, f"must be at most {MAX_JSON_INT} in size")
    return value


def to_bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidRequest(where, f"must be true or false, got {value!r}")


def _scalar_str(value: bodies.Scalar) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_named(kind: type[Named], items: list[NameValue], where: str) -> tuple[Named, ...]:
    """Mantis' `[{name, value}]` lists (parameters, labels): names given and unique."""
    out = tuple(
        kind(required(item.name, f"{where}[{i}].name"), _scalar_str(item.value))
        for i, item in enumerate(items)
    )
    names = [n.name for n in out]
    if len(set(names)) != len(names):
        raise InvalidRequest(where, "names must be unique")
    return out


# ---------------------------------------------------------------------- parsing definitions


def parse_machine(m: bodies.MachineDefinition, prefix: str) -> MachineDefinition:
    with within(prefix):
        return MachineDefinition(
            m.cpu_cores,
            m.memory_mb,
            0.0 if m.network_mbps is None else m.network_mbps,
            0.0 if m.disk_mb is None else m.disk_mb,
            1 if m.num_ports is None else m.num_ports,
        )


def parse_scaling_policy(
    p: bodies.StageScalingPolicy | None, prefix: str, stage: int
) -> StageScalingPolicy | None:
    if p is None:
        return None
    strategies = []
    for reason, s in (p.strategies or {}).items():
        rolling = s.rolling_count or bodies.RollingCount()
        with within(f"{prefix}strategies.{reason}."):
            strategies.append(
                ScalingStrategy(
                    reason,
                    s.scale_down_below_pct or 0.0,
                    s.scale_up_above_pct or 0.0,
                    1 if rolling.count is None else rolling.count,
                    1 if rolling.of is None else rolling.of,
                )
            )
    with within(prefix.removesuffix("scalingPolicy.")):
        return StageScalingPolicy(
            stage,
            p.min or 0,
            p.max or 0,
            1 if p.increment is None else p.increment,
            1 if p.decrement is None else p.decrement,
            p.cool_down_secs or 0,
            tuple(strategies),
        )


def parse_stage(s: bodies.StageSchedulingInfo, prefix: str, number: int) -> StageSchedulingInfo:
    with within(prefix):
        return StageSchedulingInfo(
            s.number_of_instances,
            parse_machine(s.machine_definition, prefix + "machineDefinition."),
            tuple(s.hard_constraints or ()),
            tuple(s.soft_constraints or ()),
            bool(s.scalable),
            parse_scaling_policy(s.scaling_policy, prefix + "scalingPolicy.", number),
        )


def parse_scheduling_info(info: bodies.SchedulingInfo, where: str) -> SchedulingInfo:
    """`{stages: {"1": {...}, "2": {...}}}`: user stages numbered 1..N (a stage "0" is ignored)."""
    if info.stages is None:
        raise InvalidRequest(f"{where}.stages", "is required")
    numbers: dict[int, bodies.StageSchedulingInfo] = {}
    for key, stage in info.stages.items():
        if not _STAGE_KEY.fullmatch(key):
            raise InvalidRequest(f"{where}.stages", f"stage keys must be numbers, got {key!r}")
        if int(key) != 0:
            numbers[int(key)] = stage
    if sorted(numbers) != list(range(1, len(numbers) + 1)) or not numbers:
        raise InvalidRequest(
            f"{where}.stages", f"stages must be numbered 1..N, got {sorted(info.stages)}"
        )
    return SchedulingInfo(
        tuple(
            parse_stage(numbers[n], f"{where}.stages.{n}.", n) for n in range(1, len(numbers) + 1)
        )
    )


def parse_job_sla(sla: bodies.JobSla, where: str) -> JobSla:
    with within(f"{where}.".removesuffix("jobSla.")):
        return JobSla(
            sla.runtime_limit_secs or 0,
            sla.min_runtime_secs or 0,
            sla.sla_type or "Lossy",
            sla.duration_type or DurationType.Perpetual,
            sla.user_provided_type or "",
        )


def artifact_of(
    url: str | None, given: str | None, prefix: str, key: str = "artifactName"
) -> str | None:
    """The artifact's name: the one given, or the last segment of the artifact's URL."""
    if given:
        return check_artifact_name(given, prefix + key)
    if url:
        return urlsplit(url).path.rstrip("/").rpartition("/")[2] or None
    return None


def parse_cluster_definition(
    body: NamedJobDefinition | Json, now: float
) -> tuple[JobClusterDefinition, str]:
    """A NamedJobDefinition `{jobDefinition, owner}` -> the cluster definition and its user."""
    if not isinstance(body, NamedJobDefinition):
        body = convert(body, NamedJobDefinition)
    d = body.job_definition
    p = "jobDefinition."
    name = required(d.name, p + "name")
    user = required(d.user, p + "user")
    with within(p):
        check_name("name", name)
    url = d.job_jar_file_location or d.url
    artifact = artifact_of(url, d.artifact_name, p)
    if not artifact:
        raise InvalidRequest(
            p + "jobJarFileLocation", "an artifact URL (or artifactName) is required"
        )
    if d.scheduling_info is None:
        raise InvalidRequest(p + "schedulingInfo", "is required")
    info = parse_scheduling_info(d.scheduling_info, p + "schedulingInfo")
    version = d.version or str(int(now * 1000))
    o = body.owner or bodies.Owner()
    owner = JobOwner(
        o.name or "", o.team_name or "", o.description or "", o.contact_email or "", o.repo or ""
    )
    migration = DEFAULT_MIGRATION
    if d.migration_config is not None:
        migration = WorkerMigrationConfig.from_json(
            msgspec.to_builtins(d.migration_config), p + "migrationConfig"
        )
    with within(p):
        return JobClusterDefinition(
            name=name,
            configs=(JobClusterConfig(artifact, version, now, info, url or ""),),
            owner=owner,
            user=user,
            sla=ClusterSla(d.sla_min or 0, d.sla_max or 0, d.cron_spec or "", d.cron_policy),
            job_sla=parse_job_sla(d.job_sla, p + "jobSla") if d.job_sla else JobSla(),
            parameters=parse_named(ParameterValue, d.parameters or [], p + "parameters"),
            labels=parse_named(Label, d.labels or [], p + "labels"),
            migration_config=migration,
        ), user


def parse_deployment_strategy(s: bodies.DeploymentStrategy, where: str) -> DeploymentStrategy:
    """Mantis' DeploymentStrategy: `{"stageDeploymentStrategyMap": {"1": {"inheritInstanceCount":
    true}}}` (stage number -> StageDeploymentStrategy)."""
    at = where + ".stageDeploymentStrategyMap"
    inherit: list[int] = []
    for key, strategy in (s.stage_deployment_strategy_map or {}).items():
        stage = to_int(key, f"{at}.{key}")
        if stage < 1:
            raise InvalidRequest(f"{at}.{key}", "must be a stage number >= 1")
        if strategy.inherit_instance_count:
            inherit.append(stage)
    return DeploymentStrategy(tuple(sorted(inherit)))


def parse_job_request(o: MantisJobDefinition | Json, prefix: str = "") -> JobRequest:
    """A MantisJobDefinition's overrides; what is left out comes from the cluster."""
    if not isinstance(o, MantisJobDefinition):
        o = convert(o, MantisJobDefinition, prefix.removesuffix("."))
    url = o.job_jar_file_location or o.url
    info, sla, strategy = o.scheduling_info, o.job_sla, o.deployment_strategy
    with within(prefix):
        return JobRequest(
            artifact_name=artifact_of(url, o.artifact_name, prefix),
            version=o.version or None,
            job_jar_url=url,
            scheduling_info=parse_scheduling_info(info, prefix + "schedulingInfo")
            if info is not None and info.stages is not None
            else None,
            parameters=parse_named(ParameterValue, o.parameters, prefix + "parameters")
            if o.parameters is not None
            else None,
            labels=parse_named(Label, o.labels, prefix + "labels")
            if o.labels is not None
            else None,
            job_sla=parse_job_sla(sla, prefix + "jobSla") if sla else None,
            subscription_timeout_secs=o.subscription_timeout_secs or None,
            deployment_strategy=None
            if strategy is None
            else parse_deployment_strategy(strategy, prefix + "deploymentStrategy"),
        )

"""Every JSON request body of the API, declared once as msgspec Structs: shape and types.

`decode` reads a body into its Struct (https://jcristharif.com/msgspec/): lax by default, so
numbers and booleans may come as strings (`"1"`, `"true"`), as Jackson reads them for Mantis;
unknown fields are ignored, as Mantis ignores them. A failure is an `InvalidRequest` naming
the field by its JSON path (`jobDefinition.schedulingInfo.stages.1.machineDefinition.cpuCores`).
`components` derives the OpenAPI schemas of the same Structs (adapters/http/openapi.py).
What needs more than one field or the core (stage numbering, unique names, the cluster's
rules) is checked in adapters/http/parsing.py and core/model.py.

Field names are Mantis' own: MantisJobDefinition, NamedJobDefinition, SchedulingInfo,
StageSchedulingInfo, MachineDefinition, StageScalingPolicy, JobSla, JobOwner,
WorkerMigrationConfig (io.mantisrx.runtime / io.mantisrx.server.master), the v1 routes'
request classes (ScaleStageRequest, ResubmitWorkerRequest, UpdateJobClusterArtifactRequest,
UpdateJobClusterSLARequest, UpdateJobClusterLabelsRequest, SubmitJobRequest) and
io.mantisrx.server.core.Status (postJobStatus).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct, field

from core.errors import InvalidRequest
from core.model import CompletedReason, CronPolicy, DurationType, JobConstraint
from core.worker import WorkerState

MAX_JSON_INT = 2**53  # larger integers do not survive a round trip through JSON numbers
# Longest strings taken from a body or query (Mantis' own names are short): a 900 KB `user`
# would otherwise be stored in every event that names it.
MAX_NAME = 256
"""Names, users, versions, label and parameter names."""
MAX_VALUE = 4096
"""Parameter and label values, descriptions, reasons."""
MAX_URL = 2048
"""Artifact URLs."""
MAX_PAYLOADS = 32
NO_CONTROL = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
SAFE_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")

Int = Annotated[int, Meta(ge=-MAX_JSON_INT, le=MAX_JSON_INT)]
Float = Annotated[float, Meta(ge=-MAX_JSON_INT, le=MAX_JSON_INT)]
Name = Annotated[str, Meta(max_length=MAX_NAME, pattern=NO_CONTROL)]
"""A name, user, version, label key: no control characters."""
Required = Annotated[str, Meta(min_length=1, max_length=MAX_NAME, pattern=NO_CONTROL)]
"""A name the body must give, not empty."""
Text = Annotated[str, Meta(max_length=MAX_NAME)]
Value = Annotated[str, Meta(max_length=MAX_VALUE)]
Url = Annotated[str, Meta(max_length=MAX_URL, pattern=NO_CONTROL)]
Scalar = Value | Int | Float | bool | None
"""A parameter or label value: Mantis clients send numbers and booleans too."""


class Body(Struct, rename="camel", omit_defaults=True):
    """Base of the bodies: Mantis' camelCase field names."""


class NameValue(Body):
    """A parameter or a label (Mantis' Parameter, Label)."""

    name: Name
    value: Scalar = None


class MachineDefinition(Body):
    cpu_cores: Float
    memory_mb: Float = field(name="memoryMB")
    network_mbps: Float | None = None
    disk_mb: Float | None = field(default=None, name="diskMB")
    num_ports: Int | None = None


class RollingCount(Body):
    count: Int | None = None
    of: Int | None = None


class ScalingStrategy(Body):
    scale_down_below_pct: Float | None = None
    scale_up_above_pct: Float | None = None
    rolling_count: RollingCount | None = None


class StageScalingPolicy(Body):
    min: Int | None = None
    max: Int | None = None
    increment: Int | None = None
    decrement: Int | None = None
    cool_down_secs: Int | None = None
    strategies: dict[Name, ScalingStrategy] | None = None


class StageSchedulingInfo(Body):
    number_of_instances: Int
    machine_definition: MachineDefinition
    hard_constraints: list[JobConstraint] | None = None
    soft_constraints: list[JobConstraint] | None = None
    scalable: bool | None = None
    scaling_policy: StageScalingPolicy | None = None


class SchedulingInfo(Body):
    stages: (
        Annotated[
            dict[str, StageSchedulingInfo],
            Meta(description='stage number ("1".."N"; "0", the job master, is ignored) -> stage'),
        ]
        | None
    ) = None


class JobSla(Body):
    runtime_limit_secs: Int | None = None
    min_runtime_secs: Int | None = None
    sla_type: Name | None = None
    duration_type: DurationType | None = None
    user_provided_type: Name | None = None


class Owner(Body):
    name: Text | None = None
    team_name: Text | None = None
    description: Value | None = None
    contact_email: Text | None = None
    repo: Annotated[str, Meta(max_length=MAX_URL)] | None = None


class MigrationConfig(Body):
    """core/migration.py WorkerMigrationConfig checks the configString."""

    strategy: Literal["ONE_WORKER", "PERCENTAGE"] | None = None
    config_string: (
        Annotated[
            str,
            Meta(
                max_length=1024,
                description='PERCENTAGE: JSON {"percentToMove": 1..100, "intervalMs": >= 0}',
            ),
        ]
        | None
    ) = None


class StageDeploymentStrategy(Body):
    inherit_instance_count: bool | None = None


class DeploymentStrategy(Body):
    stage_deployment_strategy_map: dict[str, StageDeploymentStrategy] | None = None


ArtifactName = Annotated[
    str,
    Meta(
        pattern=f"^{SAFE_ARTIFACT_NAME.pattern}$",
        description="an artifact's file name, or a module name",
    ),
]


class MantisJobDefinition(Body):
    """A job (its overrides of the cluster's) or, within NamedJobDefinition, a cluster."""

    name: Name | None = None
    user: Name | None = None
    job_jar_file_location: Url | None = None
    url: Url | None = None
    artifact_name: ArtifactName | None = None
    version: Name | None = None
    scheduling_info: SchedulingInfo | None = None
    parameters: list[NameValue] | None = None
    labels: list[NameValue] | None = None
    job_sla: JobSla | None = None
    subscription_timeout_secs: Int | None = None
    deployment_strategy: DeploymentStrategy | None = None
    sla_min: Int | None = None
    sla_max: Int | None = None
    cron_spec: Name | None = None
    cron_policy: CronPolicy | None = None
    is_ready_for_job_master: bool | None = None
    migration_config: MigrationConfig | None = None


class NamedJobDefinition(Body):
    """A job cluster: create and full update."""

    job_definition: MantisJobDefinition
    owner: Owner | None = None


class QuickSubmit(Body):
    """Mantis' SubmitJobRequest: a job like the cluster's last, `jobDefinition` overriding."""

    name: Required
    user: Required
    submit_latest_job_cluster: bool | None = None
    job_definition: MantisJobDefinition | None = None
    job_sla: dict[str, Any] | None = None  # refused: it goes in jobDefinition.jobSla


class ScaleStage(Body, rename="pascal"):
    """Mantis' ScaleStageRequest, capitalised."""

    stage_number: Int
    num_workers: Int
    job_id: Name | None = field(default=None, name="JobId")
    user: Name | None = None
    reason: Value | None = None


class ResubmitWorker(Body):
    worker_number: Int
    user: Required
    reason: Value | None = None


class ClusterAction(Body):
    """enableCluster, disableCluster; the base of the other cluster actions."""

    user: Required
    name: Name | None = None


class UpdateArtifact(ClusterAction, kw_only=True):
    version: Required
    url: Url | None = None
    artifact_name: ArtifactName | None = None
    skipsubmit: bool | None = None


class UpdateSchedulingInfo(ClusterAction, kw_only=True):
    version: Required
    scheduling_info: SchedulingInfo


class UpdateSla(ClusterAction, rename="lower"):
    """Mantis' UpdateJobClusterSLARequest: lower-case names."""

    min: Int | None = None
    max: Int | None = None
    cronspec: Name | None = None
    cronpolicy: CronPolicy | None = None
    forceenable: bool | None = None


class UpdateLabels(ClusterAction, kw_only=True):
    labels: list[NameValue]


class UpdateMigrationStrategy(ClusterAction, kw_only=True):
    migration_config: MigrationConfig


class AgentAction(Body):
    user: Required


class StatusPayload(Body):
    type: Name
    data: Value


class Status(Body):
    """io.mantisrx.server.core.Status; `message` is cut, not refused (status.py)."""

    job_id: Name
    stage_num: Int
    worker_index: Annotated[int, Meta(ge=0, le=MAX_JSON_INT)]
    worker_number: Annotated[int, Meta(ge=1, le=MAX_JSON_INT)]
    type: Literal["ERROR", "WARN", "INFO", "DEBUG", "HEARTBEAT"]
    message: Annotated[str, Meta(description="cut to 4096 characters")] | None = None
    state: WorkerState | None = None
    hostname: Name | None = None
    timestamp: Int | Float | None = None
    reason: CompletedReason | None = None
    payloads: Annotated[list[StatusPayload], Meta(max_length=MAX_PAYLOADS)] | None = None


class JobStatus(Body):
    """postJobStatus; strict: a worker sends canonical JSON types."""

    job_id: Name
    status: Status


BODIES: tuple[type[Body], ...] = (
    NamedJobDefinition,
    MantisJobDefinition,
    QuickSubmit,
    ScaleStage,
    ResubmitWorker,
    ClusterAction,
    UpdateArtifact,
    UpdateSchedulingInfo,
    UpdateSla,
    UpdateLabels,
    UpdateMigrationStrategy,
    AgentAction,
    JobStatus,
)
B = TypeVar("B", bound=Body)


# ---------------------------------------------------------------------- decoding


def decode(raw: bytes, kind: type[B], strict: bool = False) -> B:
    """The body as a `kind`, or an `InvalidRequest` naming the failing field (`body` for all)."""
    try:
        return msgspec.json.decode(raw, type=kind, strict=strict)
    except msgspec.ValidationError as e:
        raise _invalid(kind, msgspec.json.decode(raw), e, strict, "") from None
    except msgspec.DecodeError:
        raise InvalidRequest("body", "is not valid JSON") from None


def convert(value: object, kind: type[B], where: str = "") -> B:
    """An already parsed JSON value as a `kind` (lax), failures named from `where`."""
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as e:
        raise _invalid(kind, value, e, False, where) from None


def _invalid(
    kind: Any, data: object, error: msgspec.ValidationError, strict: bool, where: str
) -> InvalidRequest:
    path, message = _locate(kind, data, error, strict)
    return InvalidRequest((where + path).removeprefix(".") or where or "body", message)


_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _locate(kind: Any, data: Any, error: msgspec.ValidationError, strict: bool) -> tuple[str, str]:
    """(path, message) of a failure. msgspec writes a dict's value as `[...]`: the key is
    found by converting the dict's values one by one (on the error path only)."""
    message, _, at = str(error).partition(" - at `$")
    path = at.removesuffix("`")
    head, unnamed, _ = path.partition("[...]")
    if unnamed:
        try:
            container, value_type = data, kind
            for name, index in _SEGMENT.findall(head):
                container = container[int(index)] if index else container[name]
                value_type = _inner(value_type, None if index else name)
            value_type = _inner(value_type, None)
            entries = list(container.items())
        except (LookupError, TypeError, AttributeError, StopIteration):
            return head, message  # named up to the dict: never a 500 for a bad body
        for key, value in entries:
            try:
                msgspec.convert(value, value_type, strict=strict)
            except msgspec.ValidationError as inner:
                sub, message = _locate(value_type, value, inner, strict)
                return f"{head}.{key[:MAX_NAME]}{sub}", message
        return head, message
    missing = _MISSING.fullmatch(message)
    if missing:
        return f"{path}.{missing.group(1)}", "is required"
    return path, message


def _inner(kind: Any, name: str | None) -> Any:
    """The type of field `name` (by its JSON name) of Struct `kind`, or of the items of a
    list or dict `kind` (name None); Annotated and `| None` taken off."""
    kind = _bare(kind)
    if name is None:
        return _bare(kind.__args__[-1])
    info = msgspec.structs.fields(kind)
    return _bare(next(f.type for f in info if f.encode_name == name))


def _bare(kind: Any) -> Any:
    while True:
        if getattr(kind, "__metadata__", None) is not None:
            kind = kind.__origin__
            continue
        args = getattr(kind, "__args__", ())
        if type(None) in args and getattr(kind, "__origin__", None) is not dict:
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1:
                kind = rest[0]
                continue
        return kind


# ---------------------------------------------------------------------- OpenAPI


def components() -> dict[str, Any]:
    """The bodies' schemas as OpenAPI 3.0 components (msgspec writes JSON Schema 2020-12)."""
    _, schemas = msgspec.json.schema_components(BODIES, ref_template="#/components/schemas/{name}")
    return {name: _openapi_3_0(schema) for name, schema in schemas.items()}


def _openapi_3_0(schema: Any) -> Any:
    """`anyOf [X, null]` -> X nullable; no `propertyNames` (3.1 only), null defaults or empty
    `required`; string enums typed."""
    if isinstance(schema, list):
        return [_openapi_3_0(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: _openapi_3_0(v)
        for k, v in schema.items()
        if k != "propertyNames" and (k, v) not in (("default", None), ("required", []))
    }
    options = out.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out.update(rest[0])
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if "enum" in out and all(isinstance(v, str) for v in out["enum"]):
        out["type"] = "string"
    return out

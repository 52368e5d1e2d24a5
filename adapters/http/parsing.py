"""Mantis' JSON request bodies -> core values, every field checked, a bad one named by its path.

Field names are Mantis' own (MantisJobDefinition, JobClusterDefinitionImpl). Parsing checks
every field before any command runs and raises `InvalidRequest` naming the JSON path, e.g.
`jobDefinition.schedulingInfo.stages.1.machineDefinition.cpuCores`. As Jackson does for Mantis,
numbers and booleans may also come as strings (`"1"`, `"true"`): Mantis' own examples send them
so. Stage `"0"` (the job master) is accepted and ignored: Mantis' master adds it by itself.
Strings are bounded (MAX_NAME, MAX_VALUE, MAX_URL).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TypeVar
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from adapters.http.responses import Json
from core.errors import InvalidRequest
from core.migration import DEFAULT_MIGRATION, WorkerMigrationConfig
from core.model import (
    ClusterSla,
    CronPolicy,
    DeploymentStrategy,
    DurationType,
    JobClusterConfig,
    JobClusterDefinition,
    JobConstraint,
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

MAX_JSON_INT = 2**53  # larger integers do not survive a round trip through JSON numbers
# Longest strings taken from a body or query (Mantis' own names are short): a 900 KB `user`
# would otherwise be stored in every event that names it.
MAX_NAME = 256
"""Names, users, versions, label and parameter names."""
MAX_VALUE = 4096
"""Parameter and label values, descriptions, reasons."""
MAX_URL = 2048
"""Artifact URLs."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SAFE_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")
RESERVED_ARTIFACT_NAMES = frozenset({"names"})  # GET /api/v1/jobArtifacts/names lists them
E = TypeVar("E", bound=Enum)
T = TypeVar("T")
Named = TypeVar("Named", ParameterValue, Label)


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


def as_object(value: object, where: str) -> Json:
    if not isinstance(value, dict):
        raise InvalidRequest(where, "must be a JSON object")
    return value


async def read_json(request: web.Request) -> Json:
    """The request body as a JSON object, or a 400 naming `body`."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise InvalidRequest("body", "is not valid JSON") from None
    return as_object(body, "body")


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


def get_str(
    o: Json, key: str, prefix: str = "", limit: int = MAX_VALUE, name: bool = False
) -> str | None:
    value = o.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(prefix + key, f"must be a string, got {type(value).__name__}")
    return check_text(value, prefix + key, limit, name)


def get_name(o: Json, key: str, prefix: str = "") -> str | None:
    """A name-like string: at most MAX_NAME characters, no control characters."""
    return get_str(o, key, prefix, MAX_NAME, name=True)


def need_str(o: Json, key: str, prefix: str = "", limit: int = MAX_NAME, name: bool = True) -> str:
    """A string that must be given and not empty; a name unless told otherwise."""
    value = get_str(o, key, prefix, limit, name)
    if not value:
        raise InvalidRequest(prefix + key, "is required" if value is None else "must not be empty")
    return value


def to_int(value: object, where: str) -> int:
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


def to_float(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(where, f"must be a number, got {type(value).__name__}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise InvalidRequest(where, f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or abs(number) > MAX_JSON_INT:
        raise InvalidRequest(where, f"must be a finite number, got {value!r}")
    return number


def to_bool(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidRequest(where, f"must be true or false, got {value!r}")


def to_enum(kind: type[E], value: object, where: str) -> E:
    try:
        return kind(value)
    except ValueError:
        names = [m.value for m in kind]
        raise InvalidRequest(where, f"must be one of {names}, got {value!r}") from None


def get(o: Json, key: str, prefix: str, convert: Callable[[object, str], T], default: T) -> T:
    value = o.get(key)
    return default if value is None else convert(value, prefix + key)


def _scalar_str(value: object, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return check_text(str(value), where)
    raise InvalidRequest(where, "must be a string, number or boolean")


def parse_named(kind: type[Named], value: object, where: str) -> tuple[Named, ...]:
    """Mantis' `[{name, value}]` lists (parameters, labels)."""
    if not isinstance(value, list):
        raise InvalidRequest(where, "must be a list of {name, value}")
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        o = as_object(item, at)
        name = need_str(o, "name", f"{at}.")
        out.append(kind(name, _scalar_str(o.get("value"), f"{at}.value")))
    names = [n.name for n in out]
    if len(set(names)) != len(names):
        raise InvalidRequest(where, "names must be unique")
    return tuple(out)


# ---------------------------------------------------------------------- parsing definitions


def parse_machine(value: object, prefix: str) -> MachineDefinition:
    o = as_object(value, prefix.rstrip("."))
    for key in ("cpuCores", "memoryMB"):
        if o.get(key) is None:
            raise InvalidRequest(prefix + key, "is required")
    with within(prefix):
        return MachineDefinition(
            to_float(o["cpuCores"], prefix + "cpuCores"),
            to_float(o["memoryMB"], prefix + "memoryMB"),
            get(o, "networkMbps", prefix, to_float, 0.0),
            get(o, "diskMB", prefix, to_float, 0.0),
            get(o, "numPorts", prefix, to_int, 1),
        )


def parse_constraints(value: object, where: str) -> tuple[JobConstraint, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest(where, "must be a list of constraint names")
    return tuple(to_enum(JobConstraint, v, f"{where}[{i}]") for i, v in enumerate(value))


def parse_scaling_policy(value: object, prefix: str, stage: int) -> StageScalingPolicy | None:
    if value is None:
        return None
    o = as_object(value, prefix.rstrip("."))
    strategies = []
    raw = o.get("strategies") or {}
    for reason, item in as_object(raw, prefix + "strategies").items():
        at = f"{prefix}strategies.{reason[:MAX_NAME]}."
        check_text(reason, at.rstrip("."), MAX_NAME, name=True)
        s = as_object(item, at.rstrip("."))
        rolling = as_object(s.get("rollingCount") or {}, at + "rollingCount")
        with within(at):
            strategies.append(
                ScalingStrategy(
                    str(reason),
                    get(s, "scaleDownBelowPct", at, to_float, 0.0),
                    get(s, "scaleUpAbovePct", at, to_float, 0.0),
                    get(rolling, "count", at + "rollingCount.", to_int, 1),
                    get(rolling, "of", at + "rollingCount.", to_int, 1),
                )
            )
    with within(prefix.removesuffix("scalingPolicy.")):
        return StageScalingPolicy(
            stage,
            get(o, "min", prefix, to_int, 0),
            get(o, "max", prefix, to_int, 0),
            get(o, "increment", prefix, to_int, 1),
            get(o, "decrement", prefix, to_int, 1),
            get(o, "coolDownSecs", prefix, to_int, 0),
            tuple(strategies),
        )


def parse_stage(value: object, prefix: str, number: int) -> StageSchedulingInfo:
    o = as_object(value, prefix.rstrip("."))
    if o.get("numberOfInstances") is None:
        raise InvalidRequest(prefix + "numberOfInstances", "is required")
    if o.get("machineDefinition") is None:
        raise InvalidRequest(prefix + "machineDefinition", "is required")
    with within(prefix):
        return StageSchedulingInfo(
            to_int(o["numberOfInstances"], prefix + "numberOfInstances"),
            parse_machine(o["machineDefinition"], prefix + "machineDefinition."),
            parse_constraints(o.get("hardConstraints"), prefix + "hardConstraints"),
            parse_constraints(o.get("softConstraints"), prefix + "softConstraints"),
            get(o, "scalable", prefix, to_bool, False),
            parse_scaling_policy(o.get("scalingPolicy"), prefix + "scalingPolicy.", number),
        )


def parse_scheduling_info(value: object, where: str) -> SchedulingInfo:
    """`{stages: {"1": {...}, "2": {...}}}`: user stages numbered 1..N (a stage "0" is ignored)."""
    o = as_object(value, where)
    stages = as_object(o.get("stages"), f"{where}.stages")
    numbers: dict[int, object] = {}
    for key, stage in stages.items():
        if not re.fullmatch(r"[0-9]{1,6}", key):
            raise InvalidRequest(f"{where}.stages", f"stage keys must be numbers, got {key!r}")
        if int(key) != 0:
            numbers[int(key)] = stage
    if sorted(numbers) != list(range(1, len(numbers) + 1)) or not numbers:
        raise InvalidRequest(
            f"{where}.stages", f"stages must be numbered 1..N, got {sorted(stages)}"
        )
    return SchedulingInfo(
        tuple(
            parse_stage(numbers[n], f"{where}.stages.{n}.", n) for n in range(1, len(numbers) + 1)
        )
    )


def parse_job_sla(value: object, where: str) -> JobSla:
    o = as_object(value, where)
    p = f"{where}."
    with within(p.removesuffix("jobSla.")):
        return JobSla(
            get(o, "runtimeLimitSecs", p, to_int, 0),
            get(o, "minRuntimeSecs", p, to_int, 0),
            get_name(o, "slaType", p) or "Lossy",
            get(
                o,
                "durationType",
                p,
                lambda v, w: to_enum(DurationType, v, w),
                DurationType.Perpetual,
            ),
            get_name(o, "userProvidedType", p) or "",
        )


def artifact_of(o: Json, prefix: str) -> tuple[str | None, str | None]:
    """(artifactName, url): the name is given, or the last segment of the artifact's URL."""
    url = get_str(o, "jobJarFileLocation", prefix, MAX_URL, name=True) or get_str(
        o, "url", prefix, MAX_URL, name=True
    )
    name = get_str(o, "artifactName", prefix)
    if name:
        check_artifact_name(name, prefix + "artifactName")
    elif url:
        name = urlsplit(url).path.rstrip("/").rpartition("/")[2] or None
    return name, url


def parse_cluster_definition(body: Json, now: float) -> tuple[JobClusterDefinition, str]:
    """A NamedJobDefinition `{jobDefinition, owner}` -> the cluster definition and its user."""
    d = as_object(body.get("jobDefinition"), "jobDefinition")
    p = "jobDefinition."
    name = need_str(d, "name", p)
    user = need_str(d, "user", p)
    with within(p):
        check_name("name", name)
    artifact, url = artifact_of(d, p)
    if not artifact:
        raise InvalidRequest(
            p + "jobJarFileLocation", "an artifact URL (or artifactName) is required"
        )
    if d.get("schedulingInfo") is None:
        raise InvalidRequest(p + "schedulingInfo", "is required")
    info = parse_scheduling_info(d["schedulingInfo"], p + "schedulingInfo")
    version = get_name(d, "version", p) or str(int(now * 1000))
    cron_policy = get(d, "cronPolicy", p, lambda v, w: to_enum(CronPolicy, v, w), None)
    owner = as_object(body.get("owner") or {}, "owner")
    job_owner = JobOwner(
        *(
            get_str(owner, k, "owner.", limit) or ""
            for k, limit in (
                ("name", MAX_NAME),
                ("teamName", MAX_NAME),
                ("description", MAX_VALUE),
                ("contactEmail", MAX_NAME),
                ("repo", MAX_URL),
            )
        )
    )
    with within(p):
        return JobClusterDefinition(
            name=name,
            configs=(JobClusterConfig(artifact, version, now, info, url or ""),),
            owner=job_owner,
            user=user,
            sla=ClusterSla(
                get(d, "slaMin", p, to_int, 0),
                get(d, "slaMax", p, to_int, 0),
                get_str(d, "cronSpec", p, MAX_NAME, name=True) or "",
                cron_policy,
            ),
            job_sla=parse_job_sla(d["jobSla"], p + "jobSla") if d.get("jobSla") else JobSla(),
            parameters=parse_named(ParameterValue, d.get("parameters") or [], p + "parameters"),
            labels=parse_named(Label, d.get("labels") or [], p + "labels"),
            migration_config=DEFAULT_MIGRATION
            if d.get("migrationConfig") is None
            else WorkerMigrationConfig.from_json(d["migrationConfig"], p + "migrationConfig"),
        ), user


def parse_deployment_strategy(value: object, where: str) -> DeploymentStrategy:
    """Mantis' DeploymentStrategy: `{"stageDeploymentStrategyMap": {"1": {"inheritInstanceCount":
    true}}}` (stage number -> StageDeploymentStrategy)."""
    o = as_object(value, where)
    at = where + ".stageDeploymentStrategyMap"
    inherit: list[int] = []
    stages = o.get("stageDeploymentStrategyMap")
    for key, strategy in as_object({} if stages is None else stages, at).items():
        stage = to_int(key, f"{at}.{key}")
        if stage < 1:
            raise InvalidRequest(f"{at}.{key}", "must be a stage number >= 1")
        s = as_object(strategy, f"{at}.{key}")
        if get(s, "inheritInstanceCount", f"{at}.{key}.", to_bool, False):
            inherit.append(stage)
    return DeploymentStrategy(tuple(sorted(inherit)))


def parse_job_request(o: Json, prefix: str = "") -> JobRequest:
    """A MantisJobDefinition's overrides; what is left out comes from the cluster."""
    artifact, url = artifact_of(o, prefix)
    info = o.get("schedulingInfo")
    sla = o.get("jobSla")
    params, labels = o.get("parameters"), o.get("labels")
    with within(prefix):
        return JobRequest(
            artifact_name=artifact,
            version=get_name(o, "version", prefix) or None,
            job_jar_url=url,
            scheduling_info=parse_scheduling_info(info, prefix + "schedulingInfo")
            if info
            else None,
            parameters=parse_named(ParameterValue, params, prefix + "parameters")
            if params is not None
            else None,
            labels=parse_named(Label, labels, prefix + "labels") if labels is not None else None,
            job_sla=parse_job_sla(sla, prefix + "jobSla") if sla else None,
            subscription_timeout_secs=get(o, "subscriptionTimeoutSecs", prefix, to_int, 0) or None,
            deployment_strategy=get(
                o, "deploymentStrategy", prefix, parse_deployment_strategy, None
            ),
        )


def check_same(o: Json, key: str, expected: str) -> None:
    """A body's `name` (or JobId) may be left out, but must equal the path's if given."""
    given = get_name(o, key)
    if given is not None and given != expected:
        raise InvalidRequest(key, f"must equal {expected!r} from the path, got {given!r}")

"""Mesos v1 vocabulary shared by master and agent: task states, reasons, ids, status messages.

Names and JSON shapes follow include/mesos/v1/mesos.proto and scheduler.proto: ids are
`{"value": ...}`, bytes fields are base64, timestamps are seconds as doubles.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

MESOS_VERSION = "1.11.0"  # what /version answers; pymesos parses it as dotted integers

# TaskState (mesos.proto)
STAGING = "TASK_STAGING"
STARTING = "TASK_STARTING"
RUNNING = "TASK_RUNNING"
KILLING = "TASK_KILLING"
FINISHED = "TASK_FINISHED"
FAILED = "TASK_FAILED"
KILLED = "TASK_KILLED"
ERROR = "TASK_ERROR"
LOST = "TASK_LOST"
DROPPED = "TASK_DROPPED"
UNREACHABLE = "TASK_UNREACHABLE"
GONE = "TASK_GONE"
GONE_BY_OPERATOR = "TASK_GONE_BY_OPERATOR"
UNKNOWN = "TASK_UNKNOWN"

TASK_STATES = frozenset(
    {
        STAGING,
        STARTING,
        RUNNING,
        KILLING,
        FINISHED,
        FAILED,
        KILLED,
        ERROR,
        LOST,
        DROPPED,
        UNREACHABLE,
        GONE,
        GONE_BY_OPERATOR,
        UNKNOWN,
    }
)
# Mesos' isTerminalState (src/common/protobuf_utils.cpp).
TERMINAL = frozenset({FINISHED, FAILED, KILLED, LOST, ERROR, DROPPED, GONE, GONE_BY_OPERATOR})

# TaskStatus.Source
SOURCE_MASTER = "SOURCE_MASTER"
SOURCE_AGENT = "SOURCE_AGENT"
SOURCE_EXECUTOR = "SOURCE_EXECUTOR"

# TaskStatus.Reason (the ones mesoslite sends)
REASON_COMMAND_EXECUTOR_FAILED = "REASON_COMMAND_EXECUTOR_FAILED"
REASON_FRAMEWORK_REMOVED = "REASON_FRAMEWORK_REMOVED"
REASON_INVALID_OFFERS = "REASON_INVALID_OFFERS"
REASON_RECONCILIATION = "REASON_RECONCILIATION"
REASON_AGENT_REMOVED = "REASON_AGENT_REMOVED"
REASON_AGENT_REMOVED_BY_OPERATOR = "REASON_AGENT_REMOVED_BY_OPERATOR"
REASON_AGENT_RESTARTED = "REASON_AGENT_RESTARTED"
REASON_TASK_INVALID = "REASON_TASK_INVALID"
REASON_TASK_KILLED_DURING_LAUNCH = "REASON_TASK_KILLED_DURING_LAUNCH"
REASON_CONTAINER_LAUNCH_FAILED = "REASON_CONTAINER_LAUNCH_FAILED"
REASON_EXECUTOR_TERMINATED = "REASON_EXECUTOR_TERMINATED"
REASON_MAX_COMPLETION_TIME_REACHED = "REASON_MAX_COMPLETION_TIME_REACHED"
REASON_TASK_HEALTH_CHECK_STATUS_UPDATED = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"

# FrameworkInfo.Capability types
PARTITION_AWARE = "PARTITION_AWARE"
TASK_KILLING_STATE = "TASK_KILLING_STATE"

SCHEDULER_CALLS = frozenset(
    {
        "SUBSCRIBE",
        "TEARDOWN",
        "ACCEPT",
        "DECLINE",
        "ACCEPT_INVERSE_OFFERS",
        "DECLINE_INVERSE_OFFERS",
        "REVIVE",
        "KILL",
        "SHUTDOWN",
        "ACKNOWLEDGE",
        "ACKNOWLEDGE_OPERATION_STATUS",
        "RECONCILE",
        "RECONCILE_OPERATIONS",
        "MESSAGE",
        "REQUEST",
        "SUPPRESS",
        "UPDATE_FRAMEWORK",
    }
)
OPERATION_TYPES = frozenset(
    {
        "LAUNCH",
        "LAUNCH_GROUP",
        "RESERVE",
        "UNRESERVE",
        "CREATE",
        "DESTROY",
        "GROW_VOLUME",
        "SHRINK_VOLUME",
        "CREATE_DISK",
        "DESTROY_DISK",
    }
)

DEFAULT_REFUSE_SECONDS = 5.0  # Filters.refuse_seconds (mesos.proto)
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0
DEFAULT_KILL_GRACE_SECONDS = 3.0  # the command executor's (launcher/executor.cpp)


class InvalidCall(ValueError):
    """A call or message that breaks the protocol: the HTTP answer is `status` with `message`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def new_uuid() -> str:
    """A TaskStatus.uuid: 16 random bytes, base64 as JSON carries bytes."""
    return base64.b64encode(uuid.uuid4().bytes).decode("ascii")


def id_of(message: Any, field: str, where: str = "") -> str:
    """`message[field]["value"]` as a non-empty string, or InvalidCall naming the field."""
    path = f"{where}.{field}" if where else field
    if not isinstance(message, dict) or field not in message:
        raise InvalidCall(f"Expecting '{path}' to be present")
    value = message[field].get("value") if isinstance(message[field], dict) else None
    if not isinstance(value, str) or not value:
        raise InvalidCall(f"'{path}' must be an object with a non-empty string 'value'")
    return value


def optional_id(message: dict[str, Any], field: str, where: str = "") -> str | None:
    return id_of(message, field, where) if field in message else None


def sub_message(call: dict[str, Any], field: str, required: bool = True) -> dict[str, Any]:
    """The call's sub-message `field` (e.g. `accept`), an empty one when optional and absent."""
    value = call.get(field)
    if value is None:
        if required:
            raise InvalidCall(f"Expecting '{field}' to be present")
        return {}
    if not isinstance(value, dict):
        raise InvalidCall(f"'{field}' must be an object")
    return value


def refuse_seconds(filters: Any) -> float:
    """Filters.refuse_seconds with Mesos' defaults: absent or negative -> 5 s; capped at 365 d."""
    if not isinstance(filters, dict) or "refuse_seconds" not in filters:
        return DEFAULT_REFUSE_SECONDS
    try:
        value = float(filters["refuse_seconds"])
    except (TypeError, ValueError):
        raise InvalidCall("'filters.refuse_seconds' must be a number") from None
    if not value >= 0:
        return DEFAULT_REFUSE_SECONDS
    return min(value, MAX_REFUSE_SECONDS)


def duration_seconds(duration: Any) -> float | None:
    """A DurationInfo `{"nanoseconds": n}` in seconds."""
    if isinstance(duration, dict) and "nanoseconds" in duration:
        try:
            return max(0.0, int(duration["nanoseconds"]) / 1e9)
        except (TypeError, ValueError):
            return None
    return None


def task_status(
    task_id: str,
    state: str,
    *,
    agent_id: str | None = None,
    source: str = SOURCE_MASTER,
    reason: str | None = None,
    message: str | None = None,
    reliable: bool = True,
    executor_id: str | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """A TaskStatus; `reliable` ones carry a uuid and must be acknowledged."""
    status: dict[str, Any] = {
        "task_id": {"value": task_id},
        "state": state,
        "source": source,
        "timestamp": time.time() if timestamp is None else timestamp,
    }
    if agent_id is not None:
        status["agent_id"] = {"value": agent_id}
    if executor_id is not None:
        status["executor_id"] = {"value": executor_id}
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    if reliable:
        status["uuid"] = new_uuid()
    return status


def has_capability(framework_info: dict[str, Any], capability: str) -> bool:
    caps = framework_info.get("capabilities") or []
    return any(isinstance(c, dict) and c.get("type") == capability for c in caps)


def framework_role(framework_info: dict[str, Any]) -> str:
    """The one role mesoslite allocates for: the first of `roles`, else `role`, else `*`."""
    roles = framework_info.get("roles")
    if isinstance(roles, list) and roles and isinstance(roles[0], str):
        return roles[0]
    role = framework_info.get("role")
    return role if isinstance(role, str) and role else "*"

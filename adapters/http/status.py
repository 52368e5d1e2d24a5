"""Mantis' postJobStatus body (io.mantisrx.server.core.Status) parsed into one ControlPlane call.

Every field is checked before anything runs, so a bad body raises `InvalidRequest` naming
the field and changes nothing. Strings are bounded (parsing.MAX_NAME, MAX_VALUE) except the
`message`, which is cut to MAX_MESSAGE characters instead: a worker's failure, whatever its
exception said, must still reach the job's status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.http.parsing import MAX_NAME, MAX_VALUE, check_text
from core.control import ControlPlane, Outcome
from core.errors import InvalidRequest
from core.model import CompletedReason, worker_id
from core.worker import WorkerState

STATUS_TYPES = frozenset({"ERROR", "WARN", "INFO", "DEBUG", "HEARTBEAT"})  # Mantis Status.TYPE
REPORTED = frozenset(
    {WorkerState.StartInitiated, WorkerState.Started, WorkerState.Completed, WorkerState.Failed}
)

Command = Callable[[ControlPlane, float], Outcome]
MAX_MESSAGE = 4096
MAX_PAYLOADS = 32


def _ignored(plane: ControlPlane, now: float) -> Outcome:
    return Outcome()


def _get(
    obj: dict[str, Any], key: str, prefix: str, kind: type | tuple[type, ...], required: bool = True
) -> Any:
    field = f"{prefix}{key}"
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidRequest(field, "is required")
        return None
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidRequest(field, f"must be a {names}, got {type(value).__name__}")
    return value


def parse_status(body: object) -> Command:
    """The call a postJobStatus body asks for: heartbeat, worker_status, or nothing.

    A HEARTBEAT (by `type`) is a heartbeat whatever its state (Mantis' workers send `Noop`).
    Otherwise StartInitiated/Started/Completed/Failed are applied; Accepted, Launched, Noop
    and Unknown are ignored, as Mantis ignores them.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("body", "must be a JSON object")
    jid: str = check_text(_get(body, "jobId", "", str), "jobId", MAX_NAME, name=True)
    status: dict[str, Any] = _get(body, "status", "", dict)
    p = "status."
    if _get(status, "jobId", p, str) != jid:
        raise InvalidRequest("status.jobId", f"must equal jobId {jid!r}")
    _get(status, "stageNum", p, int)
    index: int = _get(status, "workerIndex", p, int)
    number: int = _get(status, "workerNumber", p, int)
    if index < 0:
        raise InvalidRequest("status.workerIndex", f"must be >= 0, got {index}")
    if number < 1:
        raise InvalidRequest("status.workerNumber", f"must be >= 1, got {number}")
    kind: str = _get(status, "type", p, str)
    if kind not in STATUS_TYPES:
        raise InvalidRequest("status.type", f"must be one of {sorted(STATUS_TYPES)}, got {kind!r}")
    message: str = _get(status, "message", p, str, required=False) or ""
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]}... ({len(message) - MAX_MESSAGE} characters cut)"
    check_text(
        _get(status, "hostname", p, str, required=False) or "", p + "hostname", MAX_NAME, name=True
    )
    _get(status, "timestamp", p, (int, float), required=False)
    raw_state: str | None = _get(status, "state", p, str, required=kind != "HEARTBEAT")
    state = None
    if raw_state is not None:
        try:
            state = WorkerState(raw_state)
        except ValueError:
            raise InvalidRequest("status.state", f"unknown worker state {raw_state!r}") from None
    raw_reason: str | None = _get(status, "reason", p, str, required=False)
    reason = None
    if raw_reason is not None:
        try:
            reason = CompletedReason(raw_reason)
        except ValueError:
            raise InvalidRequest("status.reason", f"unknown reason {raw_reason!r}") from None
    payloads = _payloads(_get(status, "payloads", p, list, required=False) or [])
    wid = worker_id(jid, index, number)

    if kind == "HEARTBEAT":
        return lambda plane, now: plane.heartbeat(wid, now, payloads)
    if state not in REPORTED:
        return _ignored
    reported: WorkerState = state
    return lambda plane, now: plane.worker_status(wid, reported, now, reason, message)


def _payloads(items: list[Any]) -> dict[str, str]:
    if len(items) > MAX_PAYLOADS:
        raise InvalidRequest("status.payloads", f"at most {MAX_PAYLOADS}, got {len(items)}")
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        prefix = f"status.payloads[{i}]."
        if not isinstance(item, dict):
            raise InvalidRequest(f"status.payloads[{i}]", "must be an object {type, data}")
        kind = check_text(_get(item, "type", prefix, str), prefix + "type", MAX_NAME, name=True)
        out[kind] = check_text(_get(item, "data", prefix, str), prefix + "data", MAX_VALUE)
    return out

"""Mantis' postJobStatus body (io.mantisrx.server.core.Status) parsed into one ControlPlane call.

The body is declared in adapters/http/bodies.py (`JobStatus`, read strictly: a worker sends
canonical JSON types); a bad one raises `InvalidRequest` naming the field and changes
nothing. The `message` is cut to MAX_MESSAGE characters rather than refused: a worker's
failure, whatever its exception said, must still reach the job's status.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.http.bodies import JobStatus
from core.control import ControlPlane, Outcome
from core.errors import InvalidRequest
from core.model import worker_id
from core.worker import WorkerState

REPORTED = frozenset(
    {WorkerState.StartInitiated, WorkerState.Started, WorkerState.Completed, WorkerState.Failed}
)

Command = Callable[[ControlPlane, float], Outcome]
MAX_MESSAGE = 4096


def _ignored(plane: ControlPlane, now: float) -> Outcome:
    return Outcome()


def parse_status(body: JobStatus) -> Command:
    """The call a postJobStatus body asks for: heartbeat, worker_status, or nothing.

    A HEARTBEAT (by `type`) is a heartbeat whatever its state (Mantis' workers send `Noop`).
    Otherwise StartInitiated/Started/Completed/Failed are applied; Accepted, Launched, Noop
    and Unknown are ignored, as Mantis ignores them.
    """
    jid, status = body.job_id, body.status
    if status.job_id != jid:
        raise InvalidRequest("status.jobId", f"must equal jobId {jid!r}")
    message = status.message or ""
    if len(message) > MAX_MESSAGE:
        message = f"{message[:MAX_MESSAGE]}... ({len(message) - MAX_MESSAGE} characters cut)"
    if status.state is None and status.type != "HEARTBEAT":
        raise InvalidRequest("status.state", "is required")
    payloads = {p.type: p.data for p in status.payloads or ()}
    wid = worker_id(jid, status.worker_index, status.worker_number)

    if status.type == "HEARTBEAT":
        return lambda plane, now: plane.heartbeat(wid, now, payloads)
    reported, reason = status.state, status.reason
    if reported is None or reported not in REPORTED:
        return _ignored
    return lambda plane, now: plane.worker_status(wid, reported, now, reason, message)

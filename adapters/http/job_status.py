"""`/api/v1/jobStatusStream/{jobId}`: a job's lifecycle messages over WebSocket, as Mantis.

Each message is `{"status": {"jobId", "workerId", "state", "message", "timestamp", "type"}}`:
first the job's recent history (what the master kept, `Watchers.statuses`), then each new
one as it happens (submitted, workers started or failed, scaled, ended). The stream ends after
a message of a terminal job state; a request that is not a WebSocket upgrade gets a 400.
"""

from __future__ import annotations

from aiohttp import web

from adapters.http.job_output import serve_websocket
from adapters.http.keys import MASTER
from adapters.http.rendering import render_status
from core.effects import PublishStatus
from core.errors import InvalidRequest
from core.job import TERMINAL


async def job_status_stream(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER]
    jid = request.match_info["jobId"]
    master.plane.job(jid)  # 404 for an unknown job
    ws = web.WebSocketResponse(heartbeat=30)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("Upgrade", "this stream is a WebSocket: connect with ws://")
    await ws.prepare(request)
    terminal = {s.value for s in TERMINAL}
    with master.watchers.status(jid) as signal:

        async def send() -> None:
            last: PublishStatus | None = None
            while not master.watchers.closing:
                signal.clear()
                for status in _after(list(master.watchers.statuses.get(jid, ())), last):
                    await ws.send_json(render_status(status))
                    last = status
                    if status.state in terminal:
                        return
                await signal.wait()

        await serve_websocket(ws, send)
    return ws


def _after(history: list[PublishStatus], last: PublishStatus | None) -> list[PublishStatus]:
    """The messages of `history` after `last` (all, if `last` is None or rotated out)."""
    if last is not None:
        for i in range(len(history) - 1, -1, -1):
            if history[i] is last:
                return history[i + 1 :]
    return history

"""The aiohttp application: Mantis v1 paths the worker needs, on a `MasterService`.

Routes (Mantis' v1 JobsRoute, JobDiscoveryStreamRoute, LastSubmittedJobIdStreamRoute):

- `POST /api/v1/jobs/actions/postJobStatus`: a worker's status or heartbeat; 204.
- `GET /api/v1/jobDiscoveryStream/{jobId}?sendHB=`: SSE of JobSchedulingInfo (Started
  workers only): the current info at once, then one frame per change; ends after the final
  info of a terminal job.
- `GET /api/v1/lastSubmittedJobIdStream/{cluster}?sendHB=`: SSE of `{"name", "jobId"}`: the
  cluster's last submitted job at once (if any), then one frame per new submission.

Frames are `data: <json>\\n\\n`. With `sendHB=true` a stream also sends Mantis' heartbeat
frames every `heartbeat_secs` (default 29 s: the 30 s idle timeout minus one):
`data: {"jobId":"HB_JobId","workerAssignments":{}}` on the discovery stream and
`data: {"name":"HB_JobId","jobId":"HB_JobId"}` on the last-submitted stream (Mantis'
`JobSchedulingInfo.HB_JobId`; Mantis clients drop these).

The REST API (job clusters, jobs, artifacts) is in clusters.py, jobs.py and artifacts.py;
`GET /api/v1/openapi.json` documents every route (openapi.py); `GET /api/v1/masterInfo` and
`GET /api/v1/healthcheck` are here.

Errors are mapped in one place, `error_middleware`: a `CommandRejected` becomes its
`status` with `{"error": message}` (plus `"field"` for an `InvalidRequest`), an HTTP error
becomes `{"error": reason}`, anything else a 500 `{"error": "internal server error"}`.

Drive-by calls from web pages (cross-site mutations, DNS rebinding, `text/plain` bodies) are
refused by security.py's middleware, whatever the token.

With an API token (the CLI's `--api-token` or $MANTIS_API_TOKEN), every POST, PUT and
DELETE needs `Authorization: Bearer <token>`, else 401; reads stay open (workers download
artifacts with a plain GET). The token is compared in constant time. No request header is
ever logged: aiohttp's access log is off, and requests are logged by method, path and status.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.typedefs import Middleware

from adapters.http import clusters, job_output, jobs, openapi, security
from adapters.http.artifacts import ARTIFACTS, UPLOAD_TYPES, ArtifactStore
from adapters.http.artifacts import BASE as ARTIFACTS_PATH
from adapters.http.artifacts import add_routes as add_artifact_routes
from adapters.http.job_status import job_status_stream
from adapters.http.status import parse_status
from adapters.http.views import MASTER, json_response, ms
from common.sse import HB_JOB_ID, HEADERS, frame
from core.control import ControlPlane
from core.effects import JobSchedulingInfo
from core.errors import CommandRejected, InvalidRequest
from service.master import MasterService, NotPersisted

log = structlog.get_logger()

HEARTBEAT_SECS = web.AppKey("heartbeat_secs", float)
CREATED_AT = web.AppKey("created_at", float)
STATUS_PATH = "/api/v1/jobs/actions/postJobStatus"
DEFAULT_HEARTBEAT_SECS = 29.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    master: MasterService,
    heartbeat_secs: float = DEFAULT_HEARTBEAT_SECS,
    *,
    artifacts: ArtifactStore | None = None,
    api_token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
) -> web.Application:
    """The master's HTTP API; artifact routes only with an `artifacts` store.

    `allowed_hosts` (names besides loopback ones) and `allowed_origins` (e.g. a console's
    `https://mantis.example` behind a proxy) widen what security.py lets through.
    """
    guard = security.guard(allowed_hosts, allowed_origins, {ARTIFACTS_PATH: UPLOAD_TYPES})
    middlewares = [error_middleware, guard] + ([bearer_auth(api_token)] if api_token else [])
    app = web.Application(middlewares=middlewares)
    app.on_response_prepare.append(security.no_cors_on_mutations)
    app[MASTER] = master
    app[HEARTBEAT_SECS] = heartbeat_secs
    app[CREATED_AT] = master.clock()
    app.router.add_post(STATUS_PATH, post_job_status)
    app.router.add_get("/api/v1/jobDiscoveryStream/{jobId}", job_discovery_stream)
    app.router.add_get("/api/v1/lastSubmittedJobIdStream/{cluster}", last_submitted_stream)
    clusters.add_routes(app.router)
    jobs.add_routes(app.router)
    if artifacts is not None:
        app[ARTIFACTS] = artifacts
        add_artifact_routes(app.router)
    job_output.add_routes(app, master)
    app.router.add_get("/api/v1/jobStatusStream/{jobId}", job_status_stream)
    app.router.add_get("/api/v1/masterInfo", master_info)
    app.router.add_get("/api/v1/healthcheck", healthcheck)
    openapi.add_route(app, with_artifacts=artifacts is not None)
    app.on_shutdown.append(_close_streams)
    return app


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Start `app` on host:port (loopback by default); returns the runner and the bound port."""
    runner = _JsonErrorRunner(app, handler_cancellation=True, access_log=None,
                              max_line_size=MAX_URL_BYTES, max_field_size=MAX_FIELD_BYTES)  # fmt: skip
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])


# aiohttp raises the same LineTooLong for a long URL and a long header, naming its limit: the
# two limits differ so that the limit named tells which it was (a 414 or a 431).
MAX_URL_BYTES = 8192
MAX_FIELD_BYTES = 8190  # aiohttp's default, as Jetty's 8 KiB for Mantis' own master


class _JsonErrorHandler(web.RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse in JSON too.

    aiohttp answers those (URL or header too long, too many headers, a bad request line)
    itself, before any middleware, in text/plain (`RequestHandler.handle_error`).
    """

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:  # fmt: skip
        field: str | None = None
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logged with its traceback
            message = "internal server error"
        elif request.writer.output_size > 0:
            raise ConnectionError("an answer was already being sent: no error answer possible")
        elif isinstance(exc, LineTooLong) and exc.args[1] == self.max_line_size:
            status, field, message = 414, "url", f"longer than {self.max_line_size} bytes"
        elif isinstance(exc, LineTooLong):
            status, field, message = 431, "headers", f"a field is longer than {self.max_field_size} bytes"
        elif isinstance(exc, BadHttpMessage) and "headers" in exc.message.lower():
            status, field, message = 431, "headers", f"at most {self.max_headers} header fields"
        else:
            message = f"malformed request: {(message or 'bad request')[:200]}"
        if status < 500:
            log.info("http_bad_request", status=status, error=message)
        response = _error(status, f"{field}: {message}" if field else message, field)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class _JsonErrorRunner(web.AppRunner):
    """An AppRunner whose connections are `_JsonErrorHandler`s."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server


async def _close_streams(app: web.Application) -> None:
    app[MASTER].watchers.close()


# ---------------------------------------------------------------------- errors, in one place


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    log.debug("http_request", method=request.method, path=request.path, status=response.status)
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CommandRejected as e:
        return _error(e.status, e.message, e.field if isinstance(e, InvalidRequest) else None)
    except NotPersisted as e:  # nothing changed; 507 tells a full disk from other failures
        return _error(507 if e.out_of_space else 503, str(e), "store")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        response = _error(e.status, e.reason)
        if "Allow" in e.headers:  # a 405 names the methods that are allowed
            response.headers["Allow"] = e.headers["Allow"]
        return response
    except ConnectionResetError:
        raise  # the client went away: nothing to answer
    except Exception:
        log.exception("http_request_failed", method=request.method, path=request.path)
        return _error(500, "internal server error")


def bearer_auth(token: str) -> Middleware:
    """Every mutating call needs `Authorization: Bearer <token>`; 401 otherwise."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in security.MUTATING:
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                log.warning("http_unauthorized", method=request.method, path=request.path)
                response = _error(401, "a valid bearer token is required", "Authorization")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return await handler(request)

    return auth_middleware


# ---------------------------------------------------------------------- admin


async def master_info(request: web.Request) -> web.Response:
    """Mantis' MasterDescription, with the address and port this request came in on."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    host_ip, port = (str(sockname[0]), int(sockname[1])) if sockname else ("127.0.0.1", 0)
    authority = f"[{host_ip}]:{port}" if ":" in host_ip else f"{host_ip}:{port}"
    return json_response({
        "hostname": socket.gethostname(), "hostIP": host_ip, "apiPort": port,
        "schedInfoPort": port, "apiPortV2": port, "consolePort": port,
        "apiStatusUri": STATUS_PATH.lstrip("/"), "createTime": ms(request.app[CREATED_AT]),
        "fullApiStatusUri": f"http://{authority}{STATUS_PATH}",
    })  # fmt: skip


async def healthcheck(request: web.Request) -> web.Response:
    """200 while serving; 503 once the master is shutting down or while its store cannot write."""
    master = request.app[MASTER]
    if master.watchers.closing:
        return json_response({"isHealthy": False, "failureReason": "shutting down"}, status=503)
    if not master.healthy:
        return json_response({"isHealthy": False, "failureReason": master.last_error}, status=503)
    return json_response({"isHealthy": True, "failureReason": None})


# ---------------------------------------------------------------------- worker status


async def post_job_status(request: web.Request) -> web.StreamResponse:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise InvalidRequest("body", "is not valid JSON") from None
    command = parse_status(body)
    await request.app[MASTER].call(command)
    return web.Response(status=204)


# ---------------------------------------------------------------------- streams


def scheduling_info_json(info: JobSchedulingInfo) -> dict[str, Any]:
    """Mantis' JobSchedulingInfo JSON (maps keyed by stage and worker number as strings)."""
    return {
        "jobId": info.job_id,
        "workerAssignments": {
            str(s.stage): {
                "stage": s.stage,
                "numWorkers": s.num_workers,
                "hosts": {
                    str(h.number): {
                        "host": h.hostname,
                        "state": "Started",
                        "workerIndex": h.index,
                        "workerNumber": h.number,
                        "port": list(h.ports),
                    }
                    for h in s.hosts
                },
            }
            for s in info.stages
        },
    }


def _send_hb(request: web.Request) -> bool:
    raw = request.query.get("sendHB", "false").lower()
    if raw not in ("true", "false"):
        raise InvalidRequest("sendHB", f"must be true or false, got {raw!r}")
    return raw == "true"


async def _open_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers=HEADERS)
    await resp.prepare(request)
    return resp


async def _stream(
    request: web.Request, signal: asyncio.Event, current: Callable[[ControlPlane], object | None],
    done: Callable[[ControlPlane], bool], heartbeat: object, send_hb: bool,
) -> web.StreamResponse:  # fmt: skip
    """Send `current` when it changes (after each wake-up) until `done`; heartbeats between."""
    master = request.app[MASTER]
    interval = request.app[HEARTBEAT_SECS]
    resp = await _open_stream(request)
    loop = asyncio.get_running_loop()
    next_hb = loop.time() + interval
    last: object | None = None
    try:
        while not master.watchers.closing:
            signal.clear()
            value = current(master.plane)
            if value is not None and value != last:
                await resp.write(frame(value))
                last = value
            if done(master.plane):
                break
            timeout = max(next_hb - loop.time(), 0.0) if send_hb else None
            try:
                await asyncio.wait_for(signal.wait(), timeout)
            except TimeoutError:
                await resp.write(frame(heartbeat))
                next_hb = loop.time() + interval
    except ConnectionResetError:
        pass  # the client went away
    except Exception:
        # The headers are sent: no error response is possible any more, so end the stream
        # (the client reconnects) rather than let the middleware answer a second time.
        log.exception("sse_stream_failed", path=request.path)
    return resp


async def job_discovery_stream(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER]
    jid = request.match_info["jobId"]
    master.plane.job(jid)  # 404 for an unknown job
    send_hb = _send_hb(request)  # a 400 must come before the stream starts
    with master.watchers.job(jid) as signal:
        return await _stream(
            request, signal,
            lambda plane: scheduling_info_json(plane.scheduling_info(jid)),
            lambda plane: plane.job(jid).terminal,
            {"jobId": HB_JOB_ID, "workerAssignments": {}},
            send_hb,
        )  # fmt: skip


async def last_submitted_stream(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER]
    name = request.match_info["cluster"]
    master.plane.cluster(name)  # 404 for an unknown cluster
    send_hb = _send_hb(request)

    def current(plane: ControlPlane) -> object | None:
        jid = master.last_submitted.get(name)
        return {"name": name, "jobId": jid} if jid else None

    with master.watchers.cluster(name) as signal:
        return await _stream(
            request,
            signal,
            current,
            lambda plane: name not in plane.clusters,
            {"name": HB_JOB_ID, "jobId": HB_JOB_ID},
            send_hb,
        )

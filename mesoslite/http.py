"""The mesoslite master's HTTP endpoints (as Mesos' src/master/http.cpp): the v1 scheduler API,
the agent API, the read-only state endpoints, the operator's teardown; and `serve`, which binds
them to an address.

- `POST /api/v1/scheduler` (also `/master/api/v1/scheduler`), JSON only. SUBSCRIBE answers
  200 with a chunked RecordIO event stream and a `Mesos-Stream-Id` header; every other call
  answers 202 (UPDATE_FRAMEWORK and RECONCILE_OPERATIONS 200) and must carry that header.
- Errors use Mesos' status codes and messages: 405 for a method other than POST; 400
  "Expecting 'Content-Type' to be present"; 415 for another content type (protobuf included:
  mesoslite speaks JSON only); 400 for a body that is not a valid Call; 406 when `Accept`
  allows no JSON; 400 for a stream id on SUBSCRIBE or a missing or wrong one later, and for an
  unknown framework ("Framework cannot be found"); 403 "Framework is not subscribed" while it
  is disconnected. Bodies are plain text.
- `POST /mesoslite/api/v1/agent`: agents register, follow their event stream and call (status
  updates, pongs, executor messages, unregistration; see mesoslite.agent).
- `GET /master/state` (also `/state`): Mesos-like JSON, whose `leader` and `leader_info` name
  the leading master. `GET /master/redirect` answers 307 to the leader (`//host:port`).
  `GET /version` and `/health`.
- `POST /master/teardown` (form field `frameworkId`): the operator removes a framework.
- `POST /api/v1`: the v1 operator API (mesoslite.operator, maintenance in
  mesoslite.maintenance); the other read-only endpoints (`/master/tasks`, `/slaves`,
  `/metrics/snapshot`, ...) are mesoslite.readonly's. Their shared request handling is in
  mesoslite.httputil.

With `--zk` (mesoslite.zk, mesoslite.leadership) a standby master answers the scheduler API, the
agent API, the operator API and the teardown with 307 to the leader's same path, and 503 "No leader elected"
while it knows none; its `/master/state` is its own (no frameworks, no agents) with the leader's
fields.

With framework authentication (`--authenticate-http-frameworks`, see mesoslite.auth) the
scheduler API and the teardown need valid HTTP Basic credentials first: 401 with a
`WWW-Authenticate` challenge otherwise (realms `mesos-master-scheduler` and
`mesos-master-readwrite`, as Mesos'); a framework's calls must come from the principal it
subscribed as. With agent authentication (`--authenticate-agents`, as Mesos' master flag),
every call of the agent API needs valid credentials too (realm `mesoslite-master-agent`), so
that no other local process can pose as an agent and be sent tasks with their environment.
The read-only endpoints stay open.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import socket
from collections.abc import Callable

import orjson
import structlog
from aiohttp import web

from mesoslite import readonly
from mesoslite.auth import (
    AGENT_REALM,
    READWRITE_REALM,
    SCHEDULER_REALM,
    Credentials,
)
from mesoslite.flags import MasterConfig, resolve_allocator
from mesoslite.httputil import (
    AGENT_CREDENTIALS_KEY,
    CREDENTIALS_KEY,
    LEADERSHIP_KEY,
    accepts_json,
    authenticated,
    elsewhere,
    location,
    read_call,
    serve_stream,
    text,
)
from mesoslite.leadership import Leadership
from mesoslite.master import MesosliteMaster
from mesoslite.operator import PATHS as OPERATOR_PATHS
from mesoslite.operator import operator_api
from mesoslite.protocol import MESOS_VERSION, SCHEDULER_CALLS, InvalidCall
from mesoslite.wire import AGENT_SESSION_HEADER, STREAM_ID_HEADER
from mesoslite.zk import MasterGroup, ZkUrl

log = structlog.get_logger()

SCHEDULER_PATHS = ("/api/v1/scheduler", "/master/api/v1/scheduler")
AGENT_PATH = "/mesoslite/api/v1/agent"


async def scheduler_api(request: web.Request) -> web.StreamResponse:
    principal = authenticated(request, SCHEDULER_REALM)
    redirect = elsewhere(request)
    if redirect is not None:
        return redirect
    master = request.app[LEADERSHIP_KEY].master
    call = await read_call(request)
    if isinstance(call, web.Response):
        return call
    kind = call.get("type")
    if kind not in SCHEDULER_CALLS:
        return text(400, f"Failed to convert JSON into Call protobuf: unknown call type {kind!r}")
    try:
        if kind == "SUBSCRIBE":
            if not accepts_json(request):
                return text(406, "Expecting 'Accept' to allow 'application/json'")
            if STREAM_ID_HEADER in request.headers:
                return text(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
            fw, stream = master.subscribe(call, principal)

            def closed() -> None:
                if fw is not None:
                    master.stream_closed(fw, stream)

            return await serve_stream(request, stream, {STREAM_ID_HEADER: stream.id}, closed)
        fw = master.framework_for_call(call, request.headers.get(STREAM_ID_HEADER), principal)
        result = master.handle_call(fw, call)
    except InvalidCall as e:
        log.info("call_rejected", type=kind, status=e.status, error=e.message)
        return text(e.status, e.message)
    except Exception as e:
        log.exception("call_failed", type=kind)
        return text(500, f"mesoslite failed on this {kind} call: {e!r}")
    if result is None:
        return web.Response(status=202)
    return web.json_response(result, dumps=lambda o: orjson.dumps(o).decode())


async def agent_api(request: web.Request) -> web.StreamResponse:
    authenticated(request, AGENT_REALM, AGENT_CREDENTIALS_KEY)
    redirect = elsewhere(request)
    if redirect is not None:
        return redirect
    master = request.app[LEADERSHIP_KEY].master
    call = await read_call(request)
    if isinstance(call, web.Response):
        return call
    try:
        if call.get("type") == "REGISTER":
            agent, stream = master.register_agent(call)
            return await serve_stream(
                request,
                stream,
                {AGENT_SESSION_HEADER: stream.id},
                lambda: master.agent_stream_closed(agent, stream),
            )
        master.agent_call(call, request.headers.get(AGENT_SESSION_HEADER))
    except InvalidCall as e:
        log.info("agent_call_rejected", type=call.get("type"), status=e.status, error=e.message)
        return text(e.status, e.message)
    return web.Response(status=202)


async def state_endpoint(request: web.Request) -> web.Response:
    state = request.app[LEADERSHIP_KEY].state()
    return web.json_response(state, dumps=lambda o: orjson.dumps(o).decode())


async def redirect_endpoint(request: web.Request) -> web.Response:
    leader = request.app[LEADERSHIP_KEY].leader()
    if leader is None:
        return text(503, "No leader elected")
    return web.Response(status=307, headers={"Location": location(leader)})


async def version_endpoint(request: web.Request) -> web.Response:
    return web.json_response({"version": MESOS_VERSION, "build_user": "mesoslite", "git_tag": ""})


async def health_endpoint(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def teardown_endpoint(request: web.Request) -> web.Response:
    """The operator's `/master/teardown` (form field `frameworkId`)."""
    authenticated(request, READWRITE_REALM)
    redirect = elsewhere(request)
    if redirect is not None:
        return redirect
    master = request.app[LEADERSHIP_KEY].master
    form = await request.post()
    fid = form.get("frameworkId")
    fw = master.frameworks.get(str(fid)) if fid is not None else None
    if fw is None:
        return text(400, "No framework found with specified ID")
    master.remove_framework(fw, "operator teardown")
    return web.Response(status=200)


def create_app(
    master: MesosliteMaster | Leadership,
    credentials: Credentials | None = None,
    agent_credentials: Credentials | None = None,
) -> web.Application:
    """The master's endpoints, for one master that leads alone or for an elected one; with
    `credentials` frameworks must authenticate, with `agent_credentials` agents must."""
    leadership = Leadership.sole(master) if isinstance(master, MesosliteMaster) else master
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[LEADERSHIP_KEY] = leadership
    if credentials is not None:
        app[CREDENTIALS_KEY] = credentials
    if agent_credentials is not None:
        app[AGENT_CREDENTIALS_KEY] = agent_credentials
    for path in SCHEDULER_PATHS:
        app.router.add_route("*", path, scheduler_api)
    app.router.add_route("*", AGENT_PATH, agent_api)
    for path in ("/master/state", "/state", "/master/state.json", "/state.json"):
        app.router.add_get(path, state_endpoint)
    for path in ("/master/redirect", "/redirect"):
        app.router.add_get(path, redirect_endpoint)
    app.router.add_get("/version", version_endpoint)
    app.router.add_get("/health", health_endpoint)
    app.router.add_get("/master/health", health_endpoint)
    app.router.add_post("/master/teardown", teardown_endpoint)
    for path in OPERATOR_PATHS:
        app.router.add_route("*", path, operator_api)
    readonly.add_routes(app)

    async def on_startup(_: web.Application) -> None:
        await leadership.start()

    async def on_shutdown(_: web.Application) -> None:
        await leadership.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


async def serve(
    config: MasterConfig,
    ready: Callable[[MesosliteMaster], None] | None = None,
    credentials: Credentials | None = None,
    agent_credentials: Credentials | None = None,
) -> None:
    """Run a master until SIGTERM or SIGINT: bound first, so that the MasterInfo it contends
    with in ZooKeeper (`--zk`) has its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
    except OSError:
        sock.close()
        raise
    port = sock.getsockname()[1]

    def new_master() -> MesosliteMaster:
        master = MesosliteMaster(config, resolve_allocator(config.allocator))
        master.port = port
        return master

    zk = None if config.zk is None else ZkUrl.parse(config.zk)
    group = None
    if zk is not None:
        group = functools.partial(MasterGroup, zk, session_timeout=config.zk_session_timeout)
    leadership = Leadership(new_master, group)
    app = create_app(leadership, credentials, agent_credentials)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    master = leadership.master
    log.info(
        "master_started",
        url=f"http://{config.host}:{port}",
        id=master.id,
        zk=None if zk is None else str(zk),
        allocator=config.allocator,
        authenticate_http_frameworks=credentials is not None,
        authenticate_agents=agent_credentials is not None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(master)
    try:
        await stop.wait()
    finally:
        log.info("master_stopping")
        await runner.cleanup()

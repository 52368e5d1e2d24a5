"""What the master's endpoint modules (mesoslite.http, .operator, .readonly) share: the app key
of the Leadership, reading a JSON Call with Mesos' status codes (src/master/http.cpp's `api` and
`scheduler`), HTTP Basic authentication (mesoslite.auth), a standby's redirect, RecordIO event
streams, plain-text and JSON answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from mesoslite.auth import Credentials, challenge
from mesoslite.leadership import Leadership
from mesoslite.streams import EventStream

log = structlog.get_logger()

LEADERSHIP_KEY = web.AppKey("leadership", Leadership)

# Absent: no authentication.
CREDENTIALS_KEY = web.AppKey("framework_credentials", Credentials)
AGENT_CREDENTIALS_KEY = web.AppKey("agent_credentials", Credentials)


def text(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message, headers=headers)


def json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def read_call(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON Call, or the error response Mesos would give."""
    if request.method != "POST":
        return text(405, f"Expecting 'POST', received '{request.method}'", Allow="POST")
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        return text(400, "Expecting 'Content-Type' to be present")
    mime = content_type.split(";")[0].strip().lower()
    if mime == "application/x-protobuf":
        return text(415, "mesoslite speaks JSON only: expecting 'Content-Type' of application/json")
    if mime != "application/json":
        return text(415, "Expecting 'Content-Type' of application/json or application/x-protobuf")
    body = await request.read()
    try:
        call = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return text(400, f"Failed to parse body into JSON: {e}")
    if not isinstance(call, dict):
        return text(400, "Failed to convert JSON into Call protobuf: expected a JSON object")
    return call


def accepts_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept")
    if not accept:
        return True
    for part in accept.split(","):
        mime = part.split(";")[0].strip().lower()
        if mime in ("application/json", "application/*", "*/*"):
            return True
    return False


def elsewhere(request: web.Request) -> web.Response | None:
    """None on the leader; on a standby 307 to the leader's same path, or 503 while no leader
    is known (Mesos' Master::Http::redirect)."""
    leadership = request.app[LEADERSHIP_KEY]
    if leadership.leading:
        return None
    leader = leadership.redirect_target()
    if leader is None:
        return text(503, "No leader elected")
    return web.Response(status=307, headers={"Location": location(leader) + request.path_qs})


def location(leader: dict[str, Any]) -> str:
    """`//host:port` of a master: its hostname, else its address (as Mesos' redirect)."""
    address = leader.get("address") or {}
    host = leader.get("hostname") or address.get("hostname") or address.get("ip")
    return f"//{host}:{leader.get('port') or address.get('port')}"


def authenticated(
    request: web.Request,
    realm: str,
    key: web.AppKey[Credentials] = CREDENTIALS_KEY,
) -> str | None:
    """The principal the request proves; None when its kind of caller (frameworks under
    CREDENTIALS_KEY, agents under AGENT_CREDENTIALS_KEY) is not authenticated.
    Without valid credentials: HTTPUnauthorized, before the request is even read."""
    credentials = request.app.get(key)
    if credentials is None:
        return None
    principal = credentials.authenticate(request.headers.get("Authorization"))
    if principal is None:
        log.info("request_unauthenticated", path=request.path, realm=realm)
        raise web.HTTPUnauthorized(
            text="Expecting HTTP Basic credentials of a known principal in 'Authorization'",
            headers={"WWW-Authenticate": challenge(realm)},
        )
    return principal


async def serve_stream(
    request: web.Request,
    stream: EventStream,
    headers: dict[str, str],
    on_close: Callable[[], Any],
) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "application/json",
            "Cache-Control": "no-cache",
            **headers,
        },
    )
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        await stream.pump(response)
    except (ConnectionError, RuntimeError) as e:
        log.debug("stream_broken", error=repr(e))
    finally:
        on_close()
    return response

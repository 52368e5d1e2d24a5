"""No drive-by calls: the master refuses what a web page in the user's browser could send it.

A page the user visits may send "simple" requests to http://127.0.0.1:8100 without a CORS
preflight: any method-less form or `fetch(..., {mode: "no-cors"})` POST with a `text/plain`,
`application/x-www-form-urlencoded` or `multipart/form-data` body (Fetch standard, "CORS
safelisted request header"; https://fetch.spec.whatwg.org/#cors-safelisted-request-header).
The browser does not let the page read the answer, but the call has happened: an artifact
uploaded, a job submitted, code run as the user. A DNS-rebinding page (its own name resolved to
127.0.0.1 after loading) is even same-origin to the browser and can read answers too. So:

- `Host` (every request, reads too) must be a loopback name or address (`localhost`,
  127.0.0.0/8, `[::1]`) or one of `allowed_hosts` whenever the connection came in on a
  loopback address: a rebinding page's requests carry the attacker's name. 403 naming `Host`.
- Mutations (POST, PUT, DELETE, PATCH) with an `Origin` must come from the server's own origin
  (the `Origin`'s host and port equal the `Host`'s) or one of `allowed_origins`; a
  `Sec-Fetch-Site: cross-site` mutation is refused too. 403 naming `Origin` /
  `Sec-Fetch-Site`. Requests without either (curl, the CLI, workers) pass.
- A mutation's body must be `application/json`, or one of a route's declared types (artifact
  upload): `text/plain` and form posts never reach a handler. 415 naming `Content-Type`.
- A WebSocket handshake is checked as a mutation is: browsers let any page open one to any
  server (no CORS), so a cross-site page could otherwise read job output and status.
- No CORS: a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered 403
  without any `Access-Control-Allow-*`, and a mutation's response never carries one.
- Reads under `/api/v1/` carry `Access-Control-Allow-Origin` (Mantis' v1 BaseRoute sends `*`
  on every answer) for `allowed_origins` only: `*` would let any page the user visits read
  every job's definition and output, which the answer's unreadability protects today. An
  allowed origin is echoed (with `Vary: Origin`); `*` among them sends `*` to every origin,
  as Mantis does, and still lets no other origin change anything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from adapters.http.responses import error_response

log = structlog.get_logger()

MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
READS = frozenset({"GET", "HEAD"})
JSON_ONLY = frozenset({"application/json"})
ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]
LOOPBACK_NAMES = frozenset({"localhost"})


def refuse(status: int, field: str, message: str) -> web.Response:
    return error_response(status, f"{field}: {message}", field)


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _arrived_on_loopback(request: web.Request) -> bool:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return isinstance(sockname, tuple) and _loopback(str(sockname[0]))


def _authority(value: str) -> URL | None:
    """`host[:port]` (a Host header) as a URL, or None if it is not one."""
    try:
        url = URL(f"http://{value}")
        return url if url.host and not url.path.strip("/") and not url.user else None
    except ValueError:
        return None


def _same_origin(origin: str, host: str) -> bool:
    """`Origin` names the same host and port as `Host` (a port left out is the scheme's)."""
    try:
        o = URL(origin)
    except ValueError:
        return False
    h = _authority(host)
    if h is None or o.scheme not in ("http", "https") or o.host is None:
        return False
    if h.explicit_port is None:  # behind a proxy: the default port of the origin's scheme
        return o.host == h.host and o.explicit_port is None
    return o.host == h.host and o.port == h.explicit_port


def guard(
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    body_types: Mapping[str, frozenset[str]] | None = None,
) -> Middleware:
    """The middleware; `body_types` maps a route's path to the types its mutations take."""
    hosts = LOOPBACK_NAMES | {h.lower().strip("[]") for h in allowed_hosts}
    origins = frozenset(o.lower().rstrip("/") for o in allowed_origins)
    types = dict(body_types or {})

    def host_allowed(value: str) -> bool:
        url = _authority(value)
        return (
            url is not None and url.host is not None and (url.host in hosts or _loopback(url.host))
        )

    @web.middleware
    async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if host is not None and _arrived_on_loopback(request) and not host_allowed(host):
            log.warning("http_refused", why="host", method=request.method, path=request.path)
            return refuse(
                403,
                "Host",
                f"{host[:100]!r} is not a name of this server "
                "(a loopback name, or one of the master's allowed hosts)",
            )
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return refuse(403, "Origin", "cross-origin calls are not allowed (no CORS)")
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if request.method not in MUTATING and not websocket:
            return await handler(request)
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            log.warning("http_refused", why="cross-site", method=request.method, path=request.path)
            return refuse(403, "Sec-Fetch-Site", "cross-site calls may not change anything")
        origin = request.headers.get("Origin")
        if (
            origin is not None
            and origin.lower().rstrip("/") not in origins
            and not (host is not None and _same_origin(origin, host))
        ):
            log.warning("http_refused", why="origin", method=request.method, path=request.path)
            return refuse(
                403,
                "Origin",
                f"{origin[:100]!r} is not this server's origin: "
                "cross-origin pages may not change anything nor open WebSockets",
            )
        routed = request.match_info.http_exception is None  # else the 404 or 405 it is
        if routed and not websocket and (request.body_exists or "Content-Type" in request.headers):
            resource = request.match_info.route.resource
            accepted = types.get(resource.canonical, JSON_ONLY) if resource else JSON_ONLY
            given = request.headers.get("Content-Type")
            if given is None or request.content_type not in accepted:
                return refuse(
                    415,
                    "Content-Type",
                    f"must be one of {sorted(accepted)}, got {(given or 'none')[:100]!r}",
                )
        return await handler(request)

    return guard_middleware


def cors_reads(allowed_origins: Iterable[str]) -> ResponseHook:
    """`on_response_prepare`: `Access-Control-Allow-Origin` on v1 reads for the allowed origins
    (see the module docstring); nothing when there are none."""
    origins = frozenset(o.lower().rstrip("/") for o in allowed_origins)

    async def allow_reads(request: web.Request, response: web.StreamResponse) -> None:
        if request.method not in READS or not request.path.startswith("/api/v1/"):
            return  # a refused preflight allows nothing either
        if "*" in origins:
            response.headers["Access-Control-Allow-Origin"] = "*"
            return
        response.headers.add("Vary", "Origin")
        origin = request.headers.get("Origin", "")
        if origin.lower().rstrip("/") in origins:
            response.headers["Access-Control-Allow-Origin"] = origin

    return allow_reads


async def no_cors_on_mutations(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: a mutation's answer never allows another origin to read it."""
    if request.method in MUTATING:
        for name in [n for n in response.headers if n.lower().startswith("access-control-")]:
            del response.headers[name]

"""The API token: with one, every mutation needs `Authorization: Bearer <token>`, else a 401.

Mutations are POST, PUT, DELETE and PATCH; the 401 names `Authorization` and carries
`WWW-Authenticate: Bearer`. Reads stay open: workers download artifacts with a plain GET.
The token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from adapters.http import security
from adapters.http.responses import error_response

log = structlog.get_logger()


def bearer_auth(token: str) -> Middleware:
    """Every mutating call needs `Authorization: Bearer <token>`; 401 otherwise."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in security.MUTATING:
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                log.warning("http_unauthorized", method=request.method, path=request.path)
                response = error_response(401, "a valid bearer token is required", "Authorization")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return await handler(request)

    return auth_middleware

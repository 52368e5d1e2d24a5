"""The JSON answers every route sends: a JSON body, no content, and a refusal naming its field."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

Json = dict[str, Any]
"""A JSON object, as a request body holds one or a route answers one."""


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def no_content(status: int = 204) -> web.Response:
    return web.Response(status=status)


def error_response(status: int, message: str, field: str | None = None) -> web.Response:
    """`{"error": message}`, plus `"field"` when one field is to blame."""
    body: Json = {"error": message}
    if field is not None:
        body["field"] = field
    return json_response(body, status)

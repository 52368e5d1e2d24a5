"""Every error answered in JSON, mapped in one place.

`error_middleware` answers what a handler raises: a `CommandRejected` becomes its `status`
with `{"error": message}` (plus `"field"` for an `InvalidRequest`), a `NotPersisted` a 507
(the store's disk is full) or 503 naming `store`, an HTTP error `{"error": reason}`, anything
else a 500 `{"error": "internal server error"}`. `JsonErrorRunner` answers, in the same JSON,
what aiohttp refuses before any middleware runs (a URL or header too long, a bad request line).
"""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.typedefs import Handler

from adapters.http.responses import error_response
from core.errors import CommandRejected, InvalidRequest
from service.master import NotPersisted

log = structlog.get_logger()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    log.debug("http_request", method=request.method, path=request.path, status=response.status)
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CommandRejected as e:
        field = e.field if isinstance(e, InvalidRequest) else None
        return error_response(e.status, e.message, field)
    except NotPersisted as e:  # nothing changed; 507 tells a full disk from other failures
        return error_response(507 if e.out_of_space else 503, str(e), "store")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        response = error_response(e.status, e.reason)
        if "Allow" in e.headers:  # a 405 names the methods that are allowed
            response.headers["Allow"] = e.headers["Allow"]
        return response
    except ConnectionResetError:
        raise  # the client went away: nothing to answer
    except Exception:
        log.exception("http_request_failed", method=request.method, path=request.path)
        return error_response(500, "internal server error")


class _JsonErrorHandler(web.RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse in JSON too.

    aiohttp answers those (URL or header too long, too many headers, a bad request line)
    itself, before any middleware, in text/plain (`RequestHandler.handle_error`). A long URL
    and a long header raise the same `LineTooLong`, naming the limit passed: app.serve sets
    the two limits apart, so the limit named tells a 414 from a 431.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        field: str | None = None
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logged with its traceback
            message = "internal server error"
        elif request.writer.output_size > 0:
            raise ConnectionError("an answer was already being sent: no error answer possible")
        elif isinstance(exc, LineTooLong) and exc.args[1] == self.max_line_size:
            status, field, message = 414, "url", f"longer than {self.max_line_size} bytes"
        elif isinstance(exc, LineTooLong):
            status, field, message = (
                431,
                "headers",
                f"a field is longer than {self.max_field_size} bytes",
            )
        elif isinstance(exc, BadHttpMessage) and "headers" in exc.message.lower():
            status, field, message = 431, "headers", f"at most {self.max_headers} header fields"
        else:
            message = f"malformed request: {(message or 'bad request')[:200]}"
        if status < 500:
            log.info("http_bad_request", status=status, error=message)
        response = error_response(status, f"{field}: {message}" if field else message, field)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """An AppRunner whose connections are `_JsonErrorHandler`s."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server

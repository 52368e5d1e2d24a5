"""``GET /metrics``: the master's metrics as Prometheus text (service.metrics), and what the
HTTP layer adds to them: each call's response time by route, and the SSE streams open.

The route label is the route's pattern (``/api/v1/jobs/{jobId}``), so that ids do not make a
series each; calls that match no route are ``unmatched``. A stream (SSE, or the WebSocket of
jobStatusStream) is not a call: it is counted while open, and its length is not a latency.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client.exposition import choose_encoder

from adapters.http.keys import MASTER

PATH = "/metrics"
STREAMING = web.RequestKey("streaming", str)
"""Set on a request whose answer is an SSE stream: its route label."""


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def add_routes(app: web.Application) -> None:
    """The ``/metrics`` route and the SSE stream count (an ``on_response_prepare`` hook)."""
    app.router.add_get(PATH, prometheus)
    app.on_response_prepare.append(_count_stream)


def middleware() -> Middleware:
    """Times every call (the outermost middleware, so refusals count too)."""

    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        metrics = request.app[MASTER].metrics
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            streamed = request.get(STREAMING)
            if streamed is not None:
                metrics.sse_clients.labels(streamed).dec()
            elif status != 101:  # a WebSocket: its answer came long ago
                metrics.api_latency.labels(request.method, route_of(request), str(status)).observe(
                    time.perf_counter() - started
                )

    return metrics_middleware


async def _count_stream(request: web.Request, response: web.StreamResponse) -> None:
    if response.content_type == "text/event-stream" and STREAMING not in request:
        route = route_of(request)
        request[STREAMING] = route
        request.app[MASTER].metrics.sse_clients.labels(route).inc()


async def prometheus(request: web.Request) -> web.Response:
    """Prometheus text, or OpenMetrics if the scraper's Accept asks for it."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encode(request.app[MASTER].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})

"""Job output through the master: Mantis API's push routes, as SSE or WebSocket.

- `GET /jobconnectbyid/{jobId}`: the merged output of the job's sink workers;
- `GET /jobconnectbyname/{cluster}`: the same for the cluster's newest job, switching when a
  newer one is submitted;
- `POST /jobsubmitandconnect`: submit (body as `POST /api/v1/jobs`), then connect;
each also under `/api/v1`. A request with `Upgrade: websocket` gets one text message per event,
otherwise SSE frames `data: ...` (mantis-api's PushConnectionDetails and MantisSSEHandler).

As Mantis API's ConnectionBroker: the query parameters (clientId, sample, ...) are forwarded to
every sink worker, identical subscriptions (same job, same query) share one upstream
connection per sink worker, the set of sink workers follows the job's scheduling info
(a replaced worker is dropped and its replacement connected), and the upstream connections of
a subscription close when its last client leaves. A slow client does not slow the others: what
does not fit its bounded buffer is dropped and counted. SSE clients of one job are served by the
subscription's `common.sse_sink.SseSink` (one framed block written to every socket from one loop
callback, as a sink worker does); WebSocket clients and `jobconnectbyname` (which moves its
clients from job to job) read a per-client queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from adapters.http.bodies import MantisJobDefinition
from adapters.http.job_sinks import JobSinks, Sink
from adapters.http.parsing import parse_job_request, read_body, required
from common.backoff import Backoff
from common.mql import sink_filter
from common.sse import HEADERS, frame
from common.sse_client import RETRYABLE, sse_payloads
from common.sse_sink import InvalidQuery, SseParams, SseSink
from core.errors import InvalidRequest
from service.master import MasterService

log = structlog.get_logger()

Query = tuple[tuple[str, str], ...]


class Client:
    """One connected client: a bounded queue of events' SSE data."""

    def __init__(self, limit: int) -> None:
        self.events: deque[bytes] = deque()
        self.limit = limit
        self.dropped = 0
        self.ended = False
        self._ready = asyncio.Event()

    def put(self, events: list[bytes]) -> None:
        room = self.limit - len(self.events)
        if room < len(events):
            self.dropped += len(events) - max(room, 0)
            events = events[: max(room, 0)]
        self.events.extend(events)
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    async def take(self) -> list[bytes]:
        """What is queued (waiting for something); empty once the stream ended."""
        while not self.events and not self.ended:
            self._ready.clear()
            await self._ready.wait()
        out = list(self.events)
        self.events.clear()
        return out


class Subscription:
    """A job's sink workers read with one query, shared by every client asking the same."""

    def __init__(self, hub: JobOutputHub, job_id: str, query: Query) -> None:
        self.hub = hub
        self.job_id = job_id
        self.query = query
        self.users = 0
        self.sink = SseSink(buffer_events=hub.client_queue)
        """Serves the SSE clients (each its own group: everyone gets everything)."""
        self.clients: set[Client] = set()
        """The queue clients."""
        self.connections = 0
        self._readers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._task = asyncio.create_task(self._follow(), name=f"job-output {job_id}")

    async def _follow(self) -> None:
        async for sinks in self.hub.sinks.sinks(self.job_id):
            self._connect(sinks)
        self._connect(frozenset())
        for client in list(self.clients):
            client.end()
        await self.sink.close()

    def _connect(self, wanted: frozenset[Sink]) -> None:
        for key in list(self._readers):
            if key not in wanted:
                self._readers.pop(key).cancel()
        for key in sorted(wanted - self._readers.keys()):
            self._readers[key] = asyncio.create_task(self._read(*key))

    async def _read(self, host: str, port: int) -> None:
        """One sink worker's stream, reconnecting with back-off until it is dropped."""
        url = f"http://{host}:{port}/"
        attempt, rng = 0, random.Random()
        while True:
            self.connections += 1
            try:
                async for payloads in sse_payloads(self.hub.session(), url, dict(self.query)):
                    attempt = 0
                    self.sink.publish_many(payloads)
                    for client in self.clients:
                        client.put(payloads)
            except RETRYABLE as e:  # said once per loss, not per retry
                (log.info if attempt == 0 else log.debug)(
                    "job_output_upstream_lost",
                    job_id=self.job_id,
                    url=url,
                    error=repr(e),
                    attempt=attempt,
                )
            finally:
                self.connections -= 1
            await asyncio.sleep(self.hub.backoff.delay(attempt, rng))
            attempt += 1

    async def close(self) -> None:
        self._task.cancel()
        readers = list(self._readers.values())
        for task in readers:
            task.cancel()
        await asyncio.gather(self._task, *readers, return_exceptions=True)
        await self.sink.close()


class JobOutputHub:
    """Every shared subscription of one master."""

    def __init__(self, sinks: JobSinks, client_queue: int = 65536) -> None:
        self.sinks = sinks
        self.client_queue = client_queue
        self.backoff = Backoff(initial=0.05, maximum=2.0)
        self.subscriptions: dict[tuple[str, Query], Subscription] = {}
        self.closed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    @property
    def upstream_connections(self) -> int:
        """Open connections to sink workers (a test counts them for leaks)."""
        return sum(s.connections for s in self.subscriptions.values())

    def subscribe(self, job_id: str, query: Query) -> Subscription:
        """The subscription for (job, query), shared; `release` it when done."""
        key = (job_id, query)
        sub = self.subscriptions.get(key)
        if sub is None:
            sub = self.subscriptions[key] = Subscription(self, job_id, query)
        sub.users += 1
        return sub

    def queue(self, sub: Subscription) -> Client:
        client = Client(self.client_queue)
        sub.clients.add(client)
        return client

    async def release(self, sub: Subscription, client: Client | None = None) -> None:
        if client is not None:
            sub.clients.discard(client)
            if client.dropped:
                log.info("job_output_client_dropped", job_id=sub.job_id, dropped=client.dropped)
        sub.users -= 1
        if sub.users == 0 and self.subscriptions.get((sub.job_id, sub.query)) is sub:
            del self.subscriptions[(sub.job_id, sub.query)]
            await sub.close()

    async def close(self) -> None:
        self.closed.set()
        for sub in list(self.subscriptions.values()):
            for client in sub.clients:
                client.end()
            await sub.close()
        self.subscriptions.clear()
        if self._session is not None:
            await self._session.close()


OUTPUT = web.AppKey("job_output", JobOutputHub)
SUBMITS = web.AppKey("job_output_master", MasterService)


def add_routes(app: web.Application, sinks: JobSinks, master: MasterService | None) -> None:
    """The connect routes on `sinks`; the submit route too where `master` leads."""
    app[OUTPUT] = JobOutputHub(sinks)
    for prefix in ("", "/api/v1"):
        app.router.add_get(prefix + "/jobconnectbyid/{jobId}", connect_by_id)
        app.router.add_get(prefix + "/jobconnectbyname/{cluster}", connect_by_name)
        if master is not None:
            app[SUBMITS] = master
            app.router.add_post(prefix + "/jobsubmitandconnect", submit_and_connect)
    app.on_shutdown.append(_close)


async def _close(app: web.Application) -> None:
    await app[OUTPUT].close()


def _query(request: web.Request) -> Query:
    """The sink query parameters to forward (checked here: a 400 comes before the stream,
    where every sink worker would refuse a bad MQL query with its own)."""
    for name, value in request.query.items():
        if len(value) > 4096:
            raise InvalidRequest(name, "is longer than 4096 characters")
    try:
        sink_filter(request.query)
    except InvalidQuery as e:
        raise InvalidRequest(e.field, e.message) from None
    return tuple(sorted(request.query.items()))


async def connect_by_id(request: web.Request) -> web.StreamResponse:
    jid = await request.app[OUTPUT].sinks.job_id(request.match_info["jobId"])  # or 404
    return await _connect(request, jid)


async def _connect(request: web.Request, jid: str) -> web.StreamResponse:
    if web.WebSocketResponse().can_prepare(request).ok:
        return await _respond(request, _job_frames(request, jid))
    hub = request.app[OUTPUT]
    sub = hub.subscribe(jid, _query(request))
    try:
        return await sub.sink.handle(request, SseParams())
    finally:
        await hub.release(sub)


async def connect_by_name(request: web.Request) -> web.StreamResponse:
    name = request.match_info["cluster"]
    await request.app[OUTPUT].sinks.check_cluster(name)  # 404 for an unknown cluster
    return await _respond(request, _cluster_frames(request, name))


async def submit_and_connect(request: web.Request) -> web.StreamResponse:
    """Body as `POST /api/v1/jobs` (`name` is the cluster); errors are answered before the
    stream starts."""
    body = await read_body(request, MantisJobDefinition)
    cluster, user = required(body.name, "name"), required(body.user, "user")
    job_request = parse_job_request(body)
    _query(request)
    outcome = await request.app[SUBMITS].call(
        lambda plane, now: plane.submit_job(cluster, job_request, user, now)
    )
    assert outcome.job_id is not None
    return await _connect(request, outcome.job_id)


async def _job_frames(request: web.Request, jid: str) -> AsyncGenerator[list[bytes], None]:
    hub = request.app[OUTPUT]
    sub = hub.subscribe(jid, _query(request))
    client = hub.queue(sub)
    try:
        while frames := await client.take():
            yield frames
    finally:
        await hub.release(sub, client)


async def _cluster_frames(request: web.Request, name: str) -> AsyncGenerator[list[bytes], None]:
    """The newest job's output; on a new submission, the new job's."""
    hub = request.app[OUTPUT]
    jobs = hub.sinks.latest_jobs(name)
    newer = asyncio.ensure_future(anext(jobs))
    closed = asyncio.ensure_future(hub.closed.wait())
    try:
        while True:
            # the first job, a newer one, or the next after one ended
            await asyncio.wait({newer, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed.done():
                return
            try:
                jid = newer.result()
            except StopAsyncIteration:
                return
            newer = asyncio.ensure_future(anext(jobs))
            sub = hub.subscribe(jid, _query(request))
            client = hub.queue(sub)
            try:
                while not client.ended:
                    take = asyncio.ensure_future(client.take())
                    await asyncio.wait({take, newer}, return_when=asyncio.FIRST_COMPLETED)
                    if not take.done():
                        take.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await take
                        break
                    if frames := take.result():
                        yield frames
            finally:
                await hub.release(sub, client)
    finally:
        newer.cancel()
        closed.cancel()
        await asyncio.gather(newer, closed, return_exceptions=True)
        await jobs.aclose()


async def _respond(
    request: web.Request, frames: AsyncGenerator[list[bytes], None]
) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=30)
    if ws.can_prepare(request).ok:
        await ws.prepare(request)

        async def send() -> None:
            async for batch in frames:
                for data in batch:
                    await ws.send_str(data.decode())

        try:
            await serve_websocket(ws, send)
        finally:
            await frames.aclose()
        return ws
    resp = web.StreamResponse(headers=HEADERS)
    await resp.prepare(request)
    try:
        async for batch in frames:
            await resp.write(b"".join([frame(data) for data in batch]))
    except ConnectionResetError:
        pass  # the client left
    finally:
        await frames.aclose()
    return resp


async def serve_websocket(
    ws: web.WebSocketResponse, send: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run `send` until it ends or the client closes (only reading notices a close), then
    close the socket."""

    async def receive() -> None:
        async for _ in ws:
            pass

    tasks = {asyncio.create_task(send()), asyncio.create_task(receive())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.close()

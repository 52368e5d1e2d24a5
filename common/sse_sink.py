"""SSE sink: events fanned out to HTTP clients as Server-Sent Events, as Mantis' push server does.

A job's last stage serves its output with it, and the master its job output streams (so it is
here, importing nothing of the runtime). Every event goes out as one ``data: <json>\\n\\n``
frame of common.sse (bytes events are sent as they are, already-encoded JSON). ``GET /`` and any other path (Mantis' push server answers on every path,
e.g. ``/events`` or ``/api/v1/jobs/{id}/stream`` behind a proxy) take Mantis' query parameters
(Mantis' ``MantisSSEConstants`` and ``ServerSentEventRequestHandler``):

- ``clientId`` (or ``groupId``; clientId wins): connections with the same id form a group that
  shares the stream, each event going to one of them (round robin; a full connection drops its
  share); connections with distinct ids, or none, each get every event.
- ``sample`` (seconds) / ``sampleMSec`` (>= 50 ms): send only the newest event of each period
  (RxJava ``sample``); sampleMSec wins.
- ``heartbeatSec`` (>= 1) / ``enablePings=true`` (every 2 s): write ``data: ping`` when nothing
  else was written for that long.
- ``enableMetaMessages=true`` / ``metaMessagesSec`` (milliseconds despite its name, >= 250,
  default 1000): a ``{"mantis.meta":"droppedMessageCount","value":"N","time":ms}`` frame per
  period in which events were dropped for this connection.
- ``mql`` and any other parameter the sink's ``connection_filter`` reads (common.mql, as Mantis'
  ServerSentEventsSink ``Predicate``): that connection gets the filter's output of each batch;
  a group (same clientId) is the connections with the same filter too.
- ``format=text`` (default; ``json`` is a synonym) or ``format=binary`` (also
  ``mantis.EnableCompressedBinary=true``): one frame per write carrying the events packed by
  ``common.sse.pack_binary``, joined by ``mantis.CompressionDelimiter`` (default ``$$$``).

Writes are coalesced: a connection is written at most once per turn of the event loop (or
per ``EARLY_FLUSH_EVENTS``), with everything queued for it since its last write (measured:
1.74 M events/s against 0.30 M with one write per event), directly on its transport from one
loop callback for all connections, not from a task per connection. A frame block is built once per ``publish_many`` and shared
by every connection that gets the whole batch. Backpressure is per connection: a connection
whose socket holds more than ``WRITE_HIGH_WATER`` unsent bytes is not written to (and is
polled every millisecond until it drains); at most ``buffer_events`` events wait for it, beyond
that they are dropped and counted (Mantis' lossy sink), or, with ``Backpressure.BLOCKING``,
``send_many`` waits for room.

Subscriber tracking for transient jobs: ``subscriber_count``, ``idle_since`` (monotonic time
the count last fell to 0) and ``on_subscription_change(has_subscribers)`` callbacks fired on
every 0 <-> >0 transition. The server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog
from aiohttp import web

from common.backpressure import Backpressure
from common.sse import DEFAULT_DELIMITER, HEADERS, PING_FRAME, frame, frame_all, pack_binary

log = structlog.get_logger()

DEFAULT_PING_SEC = 2.0
DEFAULT_META_MS = 1000
MIN_SAMPLE_MS = 50
MIN_META_MS = 250

WRITE_HIGH_WATER = 256 * 1024
"""Bytes waiting in a connection's transport beyond which it is not written to (a slow client)."""
BLOCKED_POLL_SEC = 0.001
"""How often a blocked connection is checked for room."""
EARLY_FLUSH_EVENTS = 1024
"""A connection with this many events queued is written at once, not at the end of the loop
turn: a publisher that does not yield would otherwise build writes of many megabytes, and
copying those (to join, to frame, into the transport) cost more than the syscalls saved."""


class InvalidQuery(ValueError):
    """A sink query parameter is wrong (answered 400, naming it)."""

    def __init__(self, field: str, message: str, **details: object) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.details = details  # more keys of the 400's body (a position, ...)


ConnectionFilter = Callable[
    [Mapping[str, str]], tuple[str, Callable[[Sequence[Any]], list[Any]]] | None
]
"""From a connection's query: None, or (a key naming the filter, the batch filter)."""


def _truthy(value: str) -> bool:
    return value.lower() == "true"


def _number(query: Mapping[str, str], name: str) -> float:
    try:
        return float(query[name])
    except ValueError:
        raise InvalidQuery(name, f"not a number: {query[name]!r}") from None


@dataclass(frozen=True)
class SseParams:
    """What one connection asked for, parsed from Mantis' query parameters."""

    group: str | None = None
    sample_ms: int | None = None
    ping_sec: float | None = None
    meta_ms: int | None = None
    binary: bool = False
    delimiter: bytes = DEFAULT_DELIMITER

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SseParams:
        """Parse and validate; raises InvalidQuery(field, message)."""
        group = query.get("clientId") or query.get("groupId") or None
        sample_ms: int | None = None
        if "sample" in query:
            sample_ms = round(_number(query, "sample") * 1000)
            if sample_ms < MIN_SAMPLE_MS:
                raise InvalidQuery("sample", f"must be at least {MIN_SAMPLE_MS} ms")
        if "sampleMSec" in query:
            sample_ms = round(_number(query, "sampleMSec"))
            if sample_ms < MIN_SAMPLE_MS:
                raise InvalidQuery("sampleMSec", f"must be at least {MIN_SAMPLE_MS}")
        ping_sec: float | None = None
        if _truthy(query.get("enablePings", "")):
            ping_sec = DEFAULT_PING_SEC
        if "heartbeatSec" in query:
            ping_sec = _number(query, "heartbeatSec")
            if ping_sec < 1:
                raise InvalidQuery("heartbeatSec", "must be at least 1")
        meta_ms: int | None = None
        if _truthy(query.get("enableMetaMessages", "")):
            meta_ms = DEFAULT_META_MS
        if "metaMessagesSec" in query:
            meta_ms = round(_number(query, "metaMessagesSec"))
            if meta_ms < MIN_META_MS:
                raise InvalidQuery("metaMessagesSec", f"must be at least {MIN_META_MS} (ms)")
        fmt = query.get("format", "text").lower()
        if fmt not in ("text", "json", "binary"):
            raise InvalidQuery("format", "must be text, json or binary")
        binary = fmt == "binary" or _truthy(query.get("mantis.EnableCompressedBinary", ""))
        delimiter = query.get("mantis.CompressionDelimiter", "").encode() or DEFAULT_DELIMITER
        return cls(group, sample_ms, ping_sec, meta_ms, binary, delimiter)


@dataclass(frozen=True)
class SinkStats:
    """Counters of an SseSink.

    ``on_next_count``: events published while anyone listened; ``dropped_count``: deliveries
    dropped for full connections; ``sent_count``: deliveries handed to connections' sockets.
    """

    on_next_count: int
    dropped_count: int
    sent_count: int
    subscribers: int
    groups: int


class _Group:
    """Connections sharing one clientId; each event goes to one of them."""

    __slots__ = ("name", "subs", "rr", "transform")

    def __init__(self, name: str, transform: Callable[[Sequence[Any]], list[Any]] | None) -> None:
        self.name = name
        self.subs: list[_Subscriber] = []
        self.rr = 0
        self.transform = transform


class _Subscriber:
    """One SSE connection: what waits to be written to it, its timers, and its writes."""

    __slots__ = (
        "sink",
        "params",
        "request",
        "transport",
        "group",
        "pending",
        "items",
        "pending_events",
        "latest",
        "dropped",
        "dropped_since_meta",
        "sent",
        "closed",
        "done",
        "dirty",
        "blocked",
        "ping_due",
        "meta_value",
        "last_write",
        "timers",
        "chunked",
        "filter",
    )

    def __init__(
        self,
        sink: SseSink,
        params: SseParams,
        request: web.Request,
        transport: asyncio.BaseTransport,
    ) -> None:
        self.sink = sink
        self.params = params
        self.request = request
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.group: _Group | None = None
        self.pending: list[bytes] = []  # frame blocks (text format)
        self.items: list[bytes] = []  # encoded events (binary format)
        self.pending_events = 0
        self.latest: bytes | None = None  # newest event frame of this sample period
        self.dropped = 0
        self.dropped_since_meta = 0
        self.sent = 0
        self.closed = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.dirty = False  # queued for the sink's next flush
        self.blocked = False  # the socket is full: polling until it drains
        self.ping_due = False
        self.meta_value = 0
        self.last_write = time.monotonic()
        self.timers: list[asyncio.TimerHandle | None] = []
        # aiohttp makes an HTTP/1.1 response without a length chunked; HTTP/1.0 gets the
        # bare body, ended by closing the connection.
        self.chunked = request.version >= (1, 1)
        self.filter: tuple[str, Callable[[Sequence[Any]], list[Any]]] | None = None

    def push(self, block: bytes | None, frames: Sequence[bytes]) -> None:
        """Queue event frames for the next write (``block``: them joined, if already built)."""
        n = len(frames)
        if self.params.sample_ms is not None:
            self.latest = frames[-1]
            return
        if self.pending_events + n > self.sink.buffer_events and self.pending_events:
            self.dropped += n
            self.dropped_since_meta += n
            self.sink.dropped_count += n
            return
        if self.params.binary:
            self.items.extend(f[6:-2] for f in frames)
        else:
            self.pending.append(block if block is not None else b"".join(frames))
        self.pending_events += n
        if self.blocked:
            return
        if self.pending_events >= EARLY_FLUSH_EVENTS:
            self.flush(time.monotonic())  # a big backlog goes now, in writes of bounded size
        elif not self.dirty:
            self.dirty = True
            self.sink._schedule(self)

    def take(self) -> list[bytes]:
        """Everything to write now (frames, then meta and ping frames), as parts to join."""
        parts = self.pending
        self.pending = []
        if self.items:
            parts.append(frame(pack_binary(self.items, self.params.delimiter)))
            self.items = []
        if self.meta_value:
            meta = {
                "mantis.meta": "droppedMessageCount",
                "value": str(self.meta_value),
                "time": int(time.time() * 1000),
            }
            parts.append(frame(meta))
            self.meta_value = 0
        if self.ping_due:
            self.ping_due = False
            if not parts:
                parts.append(PING_FRAME)
        self.sent += self.pending_events
        self.sink.sent_count += self.pending_events
        self.pending_events = 0
        return parts

    def flush(self, now: float) -> None:
        """Write what is queued, in one write, unless the socket is full (then poll)."""
        self.dirty = False
        if self.closed:
            return
        transport = self.transport
        if transport.is_closing():
            self.close()
            return
        if transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            self.blocked = True
            loop = asyncio.get_running_loop()
            loop.call_later(BLOCKED_POLL_SEC, self._unblock)
            return
        parts = self.take()
        if not parts:
            return
        if self.chunked:  # one chunk per write, copied once
            size = len(parts[0]) if len(parts) == 1 else sum(map(len, parts))
            transport.write(b"".join([b"%x\r\n" % size, *parts, b"\r\n"]))
        else:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            size = len(data)
            transport.write(data)
        self.sink.sent_bytes += size
        self.last_write = now

    def _unblock(self) -> None:
        self.blocked = False
        self.flush(time.monotonic())
        self.sink._capacity_freed()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.stop_timers()
        if not self.done.done():
            self.done.set_result(None)

    def _mark(self) -> None:
        if not self.dirty and not self.blocked and not self.closed:
            self.dirty = True
            self.sink._schedule(self)

    # timers (loop callbacks) ------------------------------------------------------------------

    def start_timers(self, loop: asyncio.AbstractEventLoop) -> None:
        p = self.params
        if p.sample_ms is not None:
            self._every(loop, p.sample_ms / 1000, self._on_sample)
        if p.ping_sec is not None:
            self._every(loop, p.ping_sec, self._on_ping)
        if p.meta_ms is not None:
            self._every(loop, p.meta_ms / 1000, self._on_meta)

    def stop_timers(self) -> None:
        for handle in self.timers:
            if handle is not None:
                handle.cancel()
        self.timers = [None] * len(self.timers)

    def _every(
        self, loop: asyncio.AbstractEventLoop, period: float, fn: Callable[[], None]
    ) -> None:
        slot = len(self.timers)
        start = loop.time()
        ticks = itertools.count(1)

        def tick() -> None:
            if self.closed:
                return
            fn()
            # Scheduled on a fixed grid, so periods do not drift with callback latency.
            self.timers[slot] = loop.call_at(start + next(ticks) * period, tick)

        self.timers.append(loop.call_at(start + next(ticks) * period, tick))

    def _on_sample(self) -> None:
        if self.latest is not None:
            self.pending.append(self.latest)
            self.pending_events += 1
            self.latest = None
            self._mark()

    def _on_ping(self) -> None:
        assert self.params.ping_sec is not None
        if time.monotonic() - self.last_write >= self.params.ping_sec * 0.99:
            self.ping_due = True
            self._mark()

    def _on_meta(self) -> None:
        if self.dropped_since_meta:
            self.meta_value = self.dropped_since_meta
            self.dropped_since_meta = 0
            self._mark()


class SseSink:
    """The SSE sink of a job's last stage: ``publish*`` events, clients ``GET`` them.

    Run it with ``await sink.serve(host, port)`` (returns the port) and ``await sink.close()``,
    or mount ``create_app(sink)`` in another aiohttp server.
    """

    def __init__(
        self,
        *,
        backpressure: Backpressure = Backpressure.LOSSY,
        buffer_events: int = 65536,
        reap_interval: float = 0.5,
        connection_filter: ConnectionFilter | None = None,
    ) -> None:
        self.backpressure = backpressure
        self.connection_filter = connection_filter
        self.buffer_events = buffer_events
        self.reap_interval = reap_interval
        self.on_next_count = 0
        self.dropped_count = 0
        self.sent_count = 0
        self.sent_bytes = 0
        """Bytes of events written to subscribers (the worker's network metrics)."""
        self.idle_since: float | None = time.monotonic()
        self._groups: dict[str, _Group] = {}
        self._subs: set[_Subscriber] = set()
        self._anon = itertools.count()
        self._listeners: list[Callable[[bool], None]] = []
        self._count_waiter: asyncio.Future[None] | None = None
        self._capacity_waiter: asyncio.Future[None] | None = None
        self._reaper: asyncio.TimerHandle | None = None
        self._dirty: list[_Subscriber] = []
        self._flush_scheduled = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closed = False

    # serving ----------------------------------------------------------------------------------

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start an HTTP server for this sink; returns its port."""
        runner = web.AppRunner(create_app(self), handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("sse_sink_listening", host=host, port=self._port)
        return self._port

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("not serving")
        return self._port

    async def close(self) -> None:
        """End every stream and stop the server."""
        self._closed = True
        now = time.monotonic()
        for sub in list(self._subs):
            sub.flush(now)  # what is queued still goes out, where the socket takes it
            sub.close()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle(
        self, request: web.Request, params: SseParams | None = None
    ) -> web.StreamResponse:
        """The aiohttp handler: one SSE stream per request, until either side ends it.

        `params` default to the request's query (Mantis' sink parameters); a proxy that has
        applied them upstream passes its own (the master's job output does)."""
        selected = None
        if params is None:
            try:
                params = SseParams.from_query(request.query)
                if self.connection_filter is not None:
                    selected = self.connection_filter(request.query)
            except InvalidQuery as e:
                body = {"message": e.message, "field": e.field, **e.details}
                return web.json_response(body, status=400)
        if self._closed:
            return web.json_response({"message": "sink closed"}, status=503)
        resp = web.StreamResponse(headers=HEADERS)
        await resp.prepare(request)  # sends the headers now, and makes the body chunked
        transport = request.transport
        if transport is None or transport.is_closing():
            return resp
        sub = _Subscriber(self, params, request, transport)
        sub.filter = selected
        self._add(sub)
        sub.start_timers(asyncio.get_running_loop())
        try:
            await sub.done  # writes happen in flush(), from the loop, not in this task
        finally:
            sub.close()
            self._remove(sub)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write_eof()
        return resp

    # publishing -------------------------------------------------------------------------------

    def publish(self, event: Any) -> None:
        """Send one event to every group (to one connection within a group). Never waits."""
        if not self._groups:
            return
        block = frame(event)
        frames = (block,)
        self.on_next_count += 1
        for group in self._groups.values():
            if group.transform is not None:
                self._publish_filtered(group, (event,))
                continue
            subs = group.subs
            if len(subs) == 1:
                subs[0].push(block, frames)
            else:
                subs[group.rr % len(subs)].push(block, frames)
                group.rr += 1

    def publish_many(self, events: Sequence[Any]) -> None:
        """Send a batch: every group gets it all, split round-robin within a group."""
        if not self._groups or not events:
            return
        frames: list[bytes] | None = None
        self.on_next_count += len(events)
        block: bytes | None = None
        for group in self._groups.values():
            if group.transform is not None:
                self._publish_filtered(group, events)
                continue
            if frames is None:
                frames = frame_all(events)
            subs = group.subs
            k = len(subs)
            if k == 1:
                if block is None:
                    block = b"".join(frames)
                subs[0].push(block, frames)
                continue
            self._share(group, frames)

    def _publish_filtered(self, group: _Group, events: Sequence[Any]) -> None:
        """A group with a connection filter gets what the filter makes of the batch."""
        assert group.transform is not None
        selected = group.transform(events)
        if selected:
            self._share(group, frame_all(selected))

    @staticmethod
    def _share(group: _Group, frames: list[bytes]) -> None:
        subs = group.subs
        k = len(subs)
        start = group.rr
        group.rr += 1
        for i in range(k):
            part = frames[i::k]
            if part:
                subs[(start + i) % k].push(None, part)

    async def send_many(self, events: Sequence[Any]) -> None:
        """``publish_many``; in blocking mode first waits until every connection has room."""
        if self.backpressure is Backpressure.BLOCKING:
            n = len(events)
            limit = self.buffer_events
            while any(s.pending_events and s.pending_events + n > limit for s in self._subs):
                waiter = self._capacity_waiter
                if waiter is None or waiter.done():
                    waiter = self._capacity_waiter = asyncio.get_running_loop().create_future()
                await waiter
        self.publish_many(events)

    async def send(self, event: Any) -> None:
        """``publish``; in blocking mode first waits until every connection has room."""
        await self.send_many((event,))

    # subscribers ------------------------------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subs)

    @property
    def pending_events(self) -> int:
        """Events queued for subscribers, not yet written (for the worker's metrics)."""
        return sum(s.pending_events for s in self._subs)

    def on_subscription_change(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(True)`` when the first client connects, ``(False)`` when the last leaves."""
        self._listeners.append(callback)

    def stats(self) -> SinkStats:
        return SinkStats(
            on_next_count=self.on_next_count,
            dropped_count=self.dropped_count,
            sent_count=self.sent_count,
            subscribers=len(self._subs),
            groups=len(self._groups),
        )

    def group_sizes(self) -> dict[str, int]:
        """Connections per group, by group name (anonymous connections are ``~N``)."""
        return {name: len(g.subs) for name, g in self._groups.items()}

    async def wait_for_subscribers(self, n: int, timeout: float | None = None) -> None:
        """Until exactly `n` clients are connected; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while len(self._subs) != n:
                if self._count_waiter is None or self._count_waiter.done():
                    self._count_waiter = asyncio.get_running_loop().create_future()
                await self._count_waiter

    def _add(self, sub: _Subscriber) -> None:
        name = sub.params.group or f"~{next(self._anon)}"
        if sub.filter is not None:
            name = f"{name} {sub.filter[0]}"
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group(name, sub.filter[1] if sub.filter else None)
        group.subs.append(sub)
        sub.group = group
        self._subs.add(sub)
        log.info("sse_subscribed", group=name, subscribers=len(self._subs))
        if len(self._subs) == 1:
            self.idle_since = None
            self._notify(True)
            self._arm_reaper()
        self._count_changed()

    def _remove(self, sub: _Subscriber) -> None:
        if sub not in self._subs:
            return
        self._subs.discard(sub)
        group = sub.group
        if group is not None:
            group.subs.remove(sub)
            if not group.subs:
                del self._groups[group.name]
        log.info(
            "sse_unsubscribed",
            group=group.name if group else None,
            subscribers=len(self._subs),
            sent=sub.sent,
            dropped=sub.dropped,
        )
        if not self._subs:
            self.idle_since = time.monotonic()
            self._notify(False)
        self._count_changed()
        self._capacity_freed()

    def _schedule(self, sub: _Subscriber) -> None:
        """Flush `sub` at the end of this loop iteration, with whatever else arrives by then."""
        self._dirty.append(sub)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        now = time.monotonic()
        for sub in dirty:
            sub.flush(now)
        if self._capacity_waiter is not None:
            self._capacity_freed()

    def _notify(self, has_subscribers: bool) -> None:
        for callback in list(self._listeners):
            try:
                callback(has_subscribers)
            except Exception:
                log.exception("sse_subscription_callback_failed")

    def _count_changed(self) -> None:
        waiter = self._count_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _capacity_freed(self) -> None:
        waiter = self._capacity_waiter
        if waiter is not None:
            self._capacity_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _arm_reaper(self) -> None:
        if self._reaper is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(self.reap_interval, self._reap)

    def _reap(self) -> None:
        """Notice clients that went away while nothing was being written to them."""
        self._reaper = None
        for sub in list(self._subs):
            if sub.transport.is_closing():
                sub.close()
        if self._subs:
            self._arm_reaper()


SINK_KEY = web.AppKey("sse_sink", SseSink)


def create_app(sink: SseSink) -> web.Application:
    """An aiohttp app serving `sink` on ``GET /`` and on every other path."""
    app = web.Application()
    app[SINK_KEY] = sink
    app.router.add_get("/", sink.handle)
    app.router.add_get("/{tail:.*}", sink.handle)
    return app

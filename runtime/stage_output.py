"""The sending side of the stage-to-stage transport: a worker's output, served over TCP.

See runtime.transport for the design (who connects to whom, batching, routing, backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import structlog

from runtime.codec import (
    END_FRAME,
    HEARTBEAT_FRAME,
    Codec,
    FrameDecoder,
    FrameError,
    FrameKind,
    decode_ack,
    decode_hello,
    encode_bytes_batch,
    encode_json_batch,
    encode_keyed_batch,
    encode_refusal,
)
from runtime.routing import DEFAULT_VNODES, HashRing, hash64, key_bytes
from runtime.transport import (
    Backpressure,
    OutputStats,
    Routing,
    TransportClosed,
    WorkerId,
    resolve,
)

log = structlog.get_logger()

_KEY_CACHE_MAX = 100_000
_CACHEABLE_KEY_TYPES = (str, bytes, int)


class _Downstream(asyncio.Protocol):
    """One connection from a downstream worker, with its buffer of events to send."""

    def __init__(self, server: StageOutputServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder(max_frame=64 * 1024)
        self.slot: str | None = None
        self.partition = 0
        self.worker: WorkerId | None = None
        self.refused = False
        self.pending: list[Any] = []
        self.paused = False
        self.closed = False
        self.wrote = False
        self.sent = 0
        self.acked = 0
        self._hello_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.server.write_buffer_high)
        loop = asyncio.get_running_loop()
        self._hello_timer = loop.call_later(self.server.hello_timeout, self._no_hello)
        self.server._accepted.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
            for kind, payload in frames:
                if self.refused:
                    return
                if kind == FrameKind.HELLO and self.slot is None:
                    self.slot, self.partition = decode_hello(payload)
                    self.worker = WorkerId.from_hello(payload)
                    if self._hello_timer is not None:
                        self._hello_timer.cancel()
                        self._hello_timer = None
                    self.server._on_hello(self)
                elif kind == FrameKind.ACK:
                    self.acked = decode_ack(payload)
                    resolve(self.server._membership_waiter)  # finish() waits for the last
                elif kind != FrameKind.HEARTBEAT:
                    raise FrameError(f"unexpected frame kind {kind} from a downstream worker")
        except FrameError as e:
            log.warning("transport_bad_frame", side="output", error=str(e), peer=self._peer())
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self.server._on_lost(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()
        self.server._capacity_freed()

    # sending --------------------------------------------------------------------------------

    def add(self, events: Sequence[Any]) -> None:
        self.pending.extend(events)
        if len(self.pending) >= self.server.batch_size:
            self.flush()
        else:
            self.server._arm_flush()

    def flush(self) -> None:
        """Write what is buffered, in frames of at most ``batch_size``, while writable."""
        pending = self.pending
        if not pending or self.paused or self.closed:
            return
        size = self.server.batch_size
        if len(pending) <= size:
            self.pending = []
            self._write(pending)
            return
        i, n = 0, len(pending)
        while i < n and not self.paused and not self.closed:
            chunk = pending[i : i + size]
            i += len(chunk)
            self._write(chunk)
        self.pending = pending[i:]

    def _write(self, events: list[Any]) -> None:
        server = self.server
        transport = self.transport
        if transport is None or transport.is_closing():  # lost; connection_lost is coming
            server.dropped_count += len(events)
            return
        try:
            frame = server._encode(events)
        except TypeError:
            events = self._encodable(events)
            if not events:
                return
            frame = server._encode(events)
        transport.write(frame)
        server.sent_bytes += len(frame)
        self.wrote = True
        self.sent += len(events)
        server.sent_count += len(events)

    def _encodable(self, events: list[Any]) -> list[Any]:
        """The events of a batch that encode; the others are dropped, counted and logged."""
        server = self.server
        good: list[Any] = []
        for event in events:
            try:
                server._encode([event])
            except TypeError as e:
                server.dropped_count += 1
                server.encode_errors += 1
                log.error("transport_encode_failed", error=str(e), item=repr(event)[:200])
            else:
                good.append(event)
        return good

    def heartbeat(self) -> None:
        if not self.wrote and not self.paused and not self.closed and self.transport:
            self.transport.write(HEARTBEAT_FRAME)
        self.wrote = False

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def refuse(self, reason: str) -> None:
        """Say why in a REFUSE frame, then close (what is buffered for it is dropped)."""
        self.refused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_refusal(reason))
            self.transport.close()

    def _no_hello(self) -> None:
        self._hello_timer = None
        log.warning("transport_no_hello", peer=self._peer())
        self.abort()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer)


class StageOutputServer:
    """The output of a worker's stage, served to the next stage's workers over TCP.

    ``offer*`` never waits (in blocking mode too, where it drops what does not fit, like lossy);
    ``send*`` waits for room in blocking mode and behaves like ``offer*`` in lossy mode.
    Keyed output takes (key, event) pairs; downstream workers receive ``[key, event]`` lists.
    Binds 127.0.0.1 by default; a worker passes its host's address, and `worker` (itself):
    then only workers of its job's next stage are served, and only the newest number of each
    slot (see runtime.transport, Admission). A worker also declares its downstream's slots
    (``set_downstream_slots``): keys are then hashed over those, connected or not (see
    runtime.transport, Declared membership), and round-robin output goes to those only.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        routing: Routing = Routing.ROUND_ROBIN,
        backpressure: Backpressure = Backpressure.LOSSY,
        codec: Codec = Codec.JSON,
        batch_size: int = 512,
        flush_interval: float = 0.002,
        buffer_events: int = 8192,
        vnodes: int = DEFAULT_VNODES,
        heartbeat_interval: float = 1.0,
        hello_timeout: float = 5.0,
        write_buffer_high: int = 512 * 1024,
        worker: WorkerId | None = None,
    ) -> None:
        if batch_size < 1 or buffer_events < batch_size:
            raise ValueError("need 1 <= batch_size <= buffer_events")
        if routing is Routing.KEYED and codec is not Codec.JSON:
            raise ValueError("keyed output needs the JSON codec")
        self.host = host
        self.requested_port = port
        self.routing = routing
        self.backpressure = backpressure
        self.codec = codec
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.buffer_events = buffer_events
        self.heartbeat_interval = heartbeat_interval
        self.hello_timeout = hello_timeout
        self.write_buffer_high = write_buffer_high
        self.worker = worker
        self._newest: dict[int, int] = {}  # downstream index -> newest worker number known
        self.refused_count = 0
        self.on_next_count = 0
        self.dropped_count = 0
        self.sent_count = 0
        self.sent_bytes = 0
        self.encode_errors = 0
        self.lost_in_flight = 0
        """Events written to a connection that was lost before the receiver acknowledged them."""
        self._encode: Callable[[list[Any]], bytes] = (
            encode_keyed_batch
            if routing is Routing.KEYED
            else encode_json_batch
            if codec is Codec.JSON
            else encode_bytes_batch
        )
        self._accepted: set[_Downstream] = set()
        self._conns: list[_Downstream] = []
        self._rr_conns: list[_Downstream] = []
        """The connections round-robin output chooses from: those of declared slots (all of
        them until slots are declared). A slot a scale-down removed leaves it at once, while its
        connection stays to send what it holds (the removed worker drains)."""
        self._slots: dict[str, list[_Downstream]] = {}
        self._ring = HashRing(vnodes=vnodes)
        self._key_cache: dict[Any, _Downstream] = {}
        self._rr = 0
        self._server: asyncio.Server | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._heartbeat_handle: asyncio.TimerHandle | None = None
        self._capacity_waiter: asyncio.Future[None] | None = None
        self._membership_waiter: asyncio.Future[None] | None = None
        self._declared: frozenset[str] | None = None
        self._listeners: list[Callable[[int], None]] = []
        self._closed = False

    # lifecycle --------------------------------------------------------------------------------

    async def start(self) -> int:
        """Listen; returns the port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Downstream(self), self.host, self.requested_port, reuse_address=True
        )
        self._heartbeat_handle = loop.call_later(self.heartbeat_interval, self._heartbeat)
        log.info("transport_listening", host=self.host, port=self.port, routing=self.routing.value)
        return self.port

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Flush what can be written, close every connection and stop listening."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        for handle in (self._flush_handle, self._heartbeat_handle):
            if handle is not None:
                handle.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._accepted):
            if conn.transport is not None:
                conn.transport.close()
        resolve(self._capacity_waiter, TransportClosed("output server closed"))
        resolve(self._membership_waiter, TransportClosed("output server closed"))
        if self._server is not None:
            await self._server.wait_closed()

    async def finish(self, timeout: float) -> None:
        """The stage completed: send what is buffered (waiting up to `timeout` for slow
        connections), then an END frame on every connection, and close once every event sent
        was acknowledged (what was not is counted as lost in flight)."""
        if self._closed:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        with contextlib.suppress(TimeoutError, TransportClosed):
            async with asyncio.timeout_at(deadline):
                self.flush()
                while any(conn.pending for conn in self._conns):
                    await self._wait_capacity()
                    self.flush()
        for conn in self._conns:  # END even after a timeout: the downstream must not wait on
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(END_FRAME)
        with contextlib.suppress(TimeoutError, TransportClosed):
            async with asyncio.timeout_at(deadline):
                while any(conn.acked < conn.sent for conn in self._conns):
                    await self._membership_changed()
        log.info("transport_output_ended", connections=len(self._conns), sent=self.sent_count)
        await self.close()

    async def __aenter__(self) -> StageOutputServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # state ------------------------------------------------------------------------------------

    def stats(self) -> OutputStats:
        return OutputStats(
            on_next_count=self.on_next_count,
            dropped_count=self.dropped_count,
            sent_count=self.sent_count,
            encode_errors=self.encode_errors,
            lost_in_flight=self.lost_in_flight,
            connections=len(self._conns),
            slots=tuple(sorted(self._slots)),
        )

    @property
    def connection_count(self) -> int:
        """Downstream connections that said HELLO (the ones output is routed to)."""
        return len(self._conns)

    @property
    def pending_events(self) -> int:
        """Events buffered for the connections, not yet written (for the worker's metrics)."""
        return sum(len(conn.pending) for conn in self._conns)

    @property
    def waiting_for_capacity(self) -> bool:
        """True while a blocking sender waits for room (the stage is being back-pressured)."""
        waiter = self._capacity_waiter
        return waiter is not None and not waiter.done()

    @property
    def declared_slots_connected(self) -> bool:
        """True once slots are declared and every one of them has a connection."""
        declared = self._declared
        return declared is not None and all(slot in self._slots for slot in declared)

    def on_connections_change(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(connections)`` whenever a downstream connection is routed or lost."""
        self._listeners.append(callback)

    async def wait_for_declared_slots(self, timeout: float | None = None) -> None:
        """Until slots are declared and each has a connection; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while not self.declared_slots_connected:
                await self._membership_changed()

    async def _membership_changed(self) -> None:
        if self._closed:
            raise TransportClosed("output server closed")
        if self._membership_waiter is None or self._membership_waiter.done():
            self._membership_waiter = asyncio.get_running_loop().create_future()
        await self._membership_waiter

    async def wait_for_connections(self, n: int, timeout: float | None = None) -> None:
        """Until at least `n` downstream connections are routable; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while len(self._conns) < n:
                await self._membership_changed()

    def flush(self) -> None:
        """Write every buffered event now (where the socket takes it)."""
        for conn in self._conns:
            conn.flush()

    # scalar output ----------------------------------------------------------------------------

    def offer(self, event: Any) -> bool:
        """Route one event round-robin; False (and counted) if it was dropped."""
        conns = self._rr_conns
        k = len(conns)
        limit = self.buffer_events
        for _ in range(k):
            conn = conns[self._rr % k]
            self._rr += 1
            if len(conn.pending) < limit:
                conn.pending.append(event)
                self.on_next_count += 1
                if len(conn.pending) >= self.batch_size:
                    conn.flush()
                elif self._flush_handle is None:
                    self._arm_flush()
                return True
        self.dropped_count += 1
        return False

    def offer_many(self, events: Sequence[Any]) -> int:
        """Route a batch round-robin (in contiguous shares); returns how many were accepted."""
        rest = self._place_many(events)
        accepted = len(events) - len(rest)
        self.on_next_count += accepted
        self.dropped_count += len(rest)
        return accepted

    async def send(self, event: Any) -> None:
        """Like ``offer``; in blocking mode waits for room instead of dropping."""
        if self.backpressure is Backpressure.LOSSY:
            self.offer(event)
            return
        await self.send_many((event,))

    async def send_many(self, events: Sequence[Any]) -> None:
        """Like ``offer_many``; in blocking mode waits for room instead of dropping."""
        if self.backpressure is Backpressure.LOSSY:
            self.offer_many(events)
            return
        rest = self._place_many(events)
        self.on_next_count += len(events) - len(rest)
        while rest:
            await self._wait_capacity()
            n = len(rest)
            rest = self._place_many(rest)
            self.on_next_count += n - len(rest)

    def _place_many(self, events: Sequence[Any]) -> Sequence[Any]:
        """Put as many events as fit into connection buffers; return the rest."""
        conns = self._rr_conns
        k = len(conns)
        n = len(events)
        if k == 0 or n == 0:
            return events
        limit = self.buffer_events
        if k == 1:
            conn = conns[0]
            room = limit - len(conn.pending)
            if room >= n:
                conn.add(events)
                return ()
            if room > 0:
                conn.add(events[:room])
            return events[max(room, 0) :]
        start = self._rr
        self._rr += 1
        pos = 0
        for i in range(k):
            if pos >= n:
                break
            conn = conns[(start + i) % k]
            room = limit - len(conn.pending)
            if room <= 0:
                continue
            share = -(-(n - pos) // (k - i))
            take = min(share, room)
            conn.add(events[pos : pos + take])
            pos += take
        if pos < n:  # some shares did not fit: spill into any room left
            for i in range(k):
                conn = conns[(start + i) % k]
                room = limit - len(conn.pending)
                if room > 0:
                    take = min(room, n - pos)
                    conn.add(events[pos : pos + take])
                    pos += take
                    if pos >= n:
                        break
        return events[pos:]

    # keyed output -----------------------------------------------------------------------------

    def offer_keyed(self, key: Any, event: Any) -> bool:
        """Route one event by key; False (and counted) if it was dropped."""
        conn = self._conn_for_key(key)
        if conn is None or len(conn.pending) >= self.buffer_events:
            self.dropped_count += 1
            return False
        conn.pending.append((key, event))
        self.on_next_count += 1
        if len(conn.pending) >= self.batch_size:
            conn.flush()
        elif self._flush_handle is None:
            self._arm_flush()
        return True

    def offer_keyed_many(self, pairs: Iterable[tuple[Any, Any]]) -> int:
        """Route (key, event) pairs by key; returns how many were accepted."""
        before = self.on_next_count
        rest = self._place_keyed(pairs)
        self.dropped_count += len(rest)
        return self.on_next_count - before

    async def send_keyed_many(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        """Like ``offer_keyed_many``; in blocking mode waits for room, keeping per-key order."""
        if self.backpressure is Backpressure.LOSSY:
            self.offer_keyed_many(pairs)
            return
        rest = self._place_keyed(pairs)
        while rest:
            await self._wait_capacity()
            rest = self._place_keyed(rest)

    def _place_keyed(self, pairs: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        limit = self.buffer_events
        conns = self._conns
        if len(conns) == 1 and len(self._ring) == 1 and conns[0].slot in self._ring:
            only = conns[0]  # one downstream worker, the only owner: every key goes there
            batch = pairs if isinstance(pairs, list) else list(pairs)
            room = max(limit - len(only.pending), 0)
            if room:
                only.add(batch[:room] if room < len(batch) else batch)
                self.on_next_count += min(room, len(batch))
            return batch[room:]
        conn_for_key = self._conn_for_key
        rest: list[tuple[Any, Any]] = []
        touched: set[_Downstream] = set()
        accepted = 0
        for pair in pairs:
            conn = conn_for_key(pair[0])
            if conn is None or len(conn.pending) >= limit:
                rest.append(pair)
                continue
            conn.pending.append(pair)
            touched.add(conn)
            accepted += 1
        self.on_next_count += accepted
        for conn in touched:
            if len(conn.pending) >= self.batch_size:
                conn.flush()
        if touched:
            self._arm_flush()
        return rest

    def _conn_for_key(self, key: Any) -> _Downstream | None:
        cacheable = type(key) in _CACHEABLE_KEY_TYPES
        if cacheable:
            conn = self._key_cache.get(key)
            if conn is not None:
                return conn
        if not self._slots or not len(self._ring):
            return None
        h = hash64(key_bytes(key))
        conns = self._slots.get(self._ring.lookup_hash(h))
        if not conns:  # its owner is declared but not connected: the key waits for it
            return None
        conn = conns[h % len(conns)]
        if cacheable:
            if len(self._key_cache) >= _KEY_CACHE_MAX:
                self._key_cache.clear()
            self._key_cache[key] = conn
        return conn

    def owner_of(self, key: Any) -> str | None:
        """The downstream slot that owns `key` (None while there is none to own it)."""
        return self._ring.lookup(key) if len(self._ring) else None

    # admission --------------------------------------------------------------------------------

    def set_downstream_slots(self, slots: Iterable[str]) -> None:
        """The next stage's slots (one per worker index), from the job's scheduling info.

        From the first call on, keys are hashed over these slots whether or not they are
        connected: a key whose owner is not connected is dropped (lossy) or waits for it
        (blocking), and never goes to another slot, so one key of one window is never counted
        by two downstream workers. Only a change of the slots themselves (a stage rescaled)
        moves keys. Without a call, keys are hashed over the connected slots. Round-robin
        output goes to the connections of these slots only: a slot a scale-down removed gets no
        new event, while what it holds is still sent to it."""
        declared = frozenset(slots)
        if declared == self._declared:
            return
        self._declared = declared
        for slot in list(self._ring.nodes):
            if slot not in declared:
                self._ring.remove(slot)
        for slot in declared:
            self._ring.add(slot)
        self._rr_conns = [conn for conn in self._conns if conn.slot in declared]
        self._key_cache.clear()
        log.info("transport_downstream_declared", slots=sorted(declared))
        resolve(self._membership_waiter)
        self._capacity_freed()

    def set_downstream_workers(self, workers: Iterable[tuple[int, int]]) -> None:
        """The next stage's (index, worker number) pairs from the job's scheduling info: a
        connection from an older number of one of these slots is refused, now and later."""
        newer = False
        for index, number in workers:
            if number > self._newest.get(index, 0):
                self._newest[index] = number
                newer = True
        if newer:
            for conn in list(self._conns):
                if (reason := self._refusal(conn.worker)) is not None:
                    self._refuse(conn, reason)

    def _refusal(self, peer: WorkerId | None) -> str | None:
        """Why a downstream worker may not be served; None if it may."""
        if peer is None:
            return None
        me = self.worker
        if me is not None and peer.job_id != me.job_id:
            return f"this is an upstream worker of job {me.job_id}, not of {peer.job_id}"
        if me is not None and peer.stage != me.stage + 1:
            return f"this is an upstream worker of stage {me.stage + 1}, not of stage {peer.stage}"
        newest = self._newest.get(peer.index, 0)
        if peer.number < newest:
            return (
                f"worker {peer.number} of stage {peer.stage} index {peer.index} was replaced "
                f"by worker {newest}"
            )
        return None

    def _refuse(self, conn: _Downstream, reason: str) -> None:
        self.refused_count += 1
        log.warning(
            "transport_downstream_refused",
            worker=str(conn.worker),
            reason=reason,
            peer=conn._peer(),
        )
        self._unroute(conn)
        conn.refuse(reason)

    # connection bookkeeping -------------------------------------------------------------------

    def _on_hello(self, conn: _Downstream) -> None:
        assert conn.slot is not None
        if self._closed:
            conn.abort()
            return
        if (reason := self._refusal(conn.worker)) is not None:
            self._refuse(conn, reason)
            return
        if conn.worker is not None:  # a newer worker of a slot replaces the older ones at once
            self.set_downstream_workers(((conn.worker.index, conn.worker.number),))
        self._conns.append(conn)
        if self._declared is None or conn.slot in self._declared:
            self._rr_conns.append(conn)
        self._slots.setdefault(conn.slot, []).append(conn)
        if self._declared is None:
            self._ring.add(conn.slot)
        self._key_cache.clear()
        log.info(
            "transport_downstream_connected",
            slot=conn.slot,
            partition=conn.partition,
            connections=len(self._conns),
        )
        resolve(self._membership_waiter)
        self._capacity_freed()
        self._connections_changed()

    def _on_lost(self, conn: _Downstream) -> None:
        self._accepted.discard(conn)
        in_flight = conn.sent - conn.acked
        if conn.pending or in_flight > 0:
            self.dropped_count += len(conn.pending) + max(in_flight, 0)
            self.lost_in_flight += max(in_flight, 0)
            conn.pending = []
        if self._unroute(conn):
            log.info(
                "transport_downstream_lost",
                slot=conn.slot,
                connections=len(self._conns),
                lost_in_flight=max(in_flight, 0),
            )

    def _unroute(self, conn: _Downstream) -> bool:
        """Route nothing more to `conn`; False if nothing was routed to it."""
        if conn.slot is None or conn not in self._conns:
            return False
        self._conns.remove(conn)
        if conn in self._rr_conns:
            self._rr_conns.remove(conn)
        same = self._slots[conn.slot]
        same.remove(conn)
        if not same:
            del self._slots[conn.slot]
            if self._declared is None:
                self._ring.remove(conn.slot)
        self._key_cache.clear()
        resolve(self._membership_waiter)
        self._capacity_freed()  # blocking senders look again (undeclared: other owners)
        self._connections_changed()
        return True

    def _connections_changed(self) -> None:
        for callback in self._listeners:
            callback(len(self._conns))

    def _arm_flush(self) -> None:
        if self._flush_handle is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.flush_interval, self._flush_all)

    def _flush_all(self) -> None:
        self._flush_handle = None
        for conn in self._conns:
            conn.flush()
        self._capacity_freed()

    def _heartbeat(self) -> None:
        for conn in self._conns:
            conn.heartbeat()
        loop = asyncio.get_running_loop()
        self._heartbeat_handle = loop.call_later(self.heartbeat_interval, self._heartbeat)

    def _capacity_freed(self) -> None:
        waiter = self._capacity_waiter
        if waiter is not None:
            self._capacity_waiter = None
            resolve(waiter)

    async def _wait_capacity(self) -> None:
        if self._closed:
            raise TransportClosed("output server closed")
        waiter = self._capacity_waiter
        if waiter is None or waiter.done():
            waiter = self._capacity_waiter = asyncio.get_running_loop().create_future()
        await waiter

"""The receiving side of the stage-to-stage transport: connections to the upstream workers.

See runtime.transport for the design (who connects to whom, reconnects, backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import structlog

from common.backoff import Backoff
from runtime.codec import (
    DATA_KINDS,
    FrameDecoder,
    FrameError,
    FrameKind,
    decode_payload,
    decode_refusal,
    encode_ack,
    encode_hello,
)
from runtime.transport import Endpoint, InputStats, Refused, TransportClosed, WorkerId, resolve

log = structlog.get_logger()


class _Upstream(asyncio.Protocol):
    """One connection to an upstream worker."""

    def __init__(self, owner: StageInput, endpoint: Endpoint) -> None:
        self.owner = owner
        self.endpoint = endpoint
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received = 0
        self.alive = False
        self.paused = False
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport.
        self.transport = transport = cast(asyncio.Transport, transport)
        self.alive = True
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self.alive = True
        owner = self.owner
        owner.received_bytes += len(data)
        received = self.received
        try:
            for kind, payload in self.decoder.feed(data):
                if kind in DATA_KINDS:
                    batch = decode_payload(kind, payload)
                    self.received += len(batch)
                    owner._push(self, batch)
                elif kind == FrameKind.REFUSE:
                    owner._refused_by(self.endpoint, decode_refusal(payload))
                    return
                elif kind == FrameKind.END:
                    owner._ended_by(self.endpoint)
                elif kind != FrameKind.HEARTBEAT:
                    raise FrameError(f"unexpected frame kind {kind} from an upstream worker")
            if self.received != received and self.transport is not None:
                self.transport.write(encode_ack(self.received))
        except FrameError as e:
            owner.frame_errors += 1
            log.warning(
                "transport_bad_frame", side="input", error=str(e), upstream=str(self.endpoint)
            )
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.owner._paused.discard(self)
        if not self.done.done():
            self.done.set_result(None)

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _arm_idle(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self.owner.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        # A paused reader sees nothing because it chose not to; that is not idleness.
        if not self.alive and not self.paused:
            log.warning("transport_upstream_idle", upstream=str(self.endpoint))
            self.abort()
            return
        self.alive = False
        self._arm_idle()


class StageInput:
    """The input of a worker's stage: connections to every upstream worker, merged.

    ``slot`` names this downstream worker to the upstream workers (keyed routing hashes it),
    e.g. ``"stage_2_index_0"``: a replacement worker for the same index keeps the same keys.
    ``worker`` (a worker passes itself) lets them refuse it once it has been replaced; a
    refusal stops the input, and the consumer gets ``Refused``. An upstream worker whose stage
    completed says END and is not dialled again; once every upstream worker has ended, the
    input ends too (``batches()`` stops after the last queued batch).
    Consume with ``get_batch()`` / ``async for batch in inp.batches()`` (fast) or
    ``async for event in inp`` (convenient).
    """

    def __init__(
        self,
        slot: str,
        *,
        connections_per_endpoint: int = 1,
        max_queued_batches: int = 64,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        connect_timeout: float = 2.0,
        idle_timeout: float = 10.0,
        worker: WorkerId | None = None,
    ) -> None:
        if connections_per_endpoint < 1 or max_queued_batches < 1:
            raise ValueError("connections_per_endpoint and max_queued_batches must be >= 1")
        self.slot = slot
        self.worker = worker
        self.refusal: str | None = None
        """Why an upstream worker refused this input (then it is closed)."""
        self.connections_per_endpoint = connections_per_endpoint
        self.max_queued_batches = max_queued_batches
        self.backoff = Backoff(initial=backoff_initial, maximum=backoff_max)
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.received_count = 0
        self.batch_count = 0
        self.connects = 0
        self.disconnects = 0
        self.frame_errors = 0
        self.received_bytes = 0
        self._tasks: dict[tuple[Endpoint, int], asyncio.Task[None]] = {}
        self._live: set[_Upstream] = set()
        self._paused: set[_Upstream] = set()
        self._queue: deque[list[Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._ended: set[Endpoint] = set()
        self._wanted: set[Endpoint] = set()
        self._pause = False
        self.completed = False
        """Every upstream worker said END: nothing more will come."""

    # topology ---------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[Endpoint]:
        """The upstream endpoints this input keeps connections to."""
        return sorted({ep for ep, _ in self._tasks}, key=lambda e: (e.host, e.port))

    def set_upstreams(self, endpoints: Iterable[Endpoint | tuple[str, int]]) -> None:
        """Connect to exactly these upstream workers: new ones are dialled, gone ones dropped."""
        if self.refusal is not None:
            raise Refused(self.refusal)
        if self._closed:
            raise TransportClosed("input closed")
        self._wanted = {
            ep if isinstance(ep, Endpoint) else Endpoint(ep[0], ep[1]) for ep in endpoints
        }
        self._connect()
        self._check_completed()

    @property
    def paused(self) -> bool:
        return self._pause

    def set_paused(self, paused: bool) -> None:
        """Paused: no connections at all (the upstream workers see this one gone), while the
        upstream endpoints are still followed; unpaused: connect to them again."""
        if paused != self._pause and not self._closed:
            self._pause = paused
            log.info("stage_input_paused" if paused else "stage_input_resumed", slot=self.slot)
            self._connect()

    def _connect(self) -> None:
        wanted = (
            set()
            if self._pause
            else {
                (ep, p)
                for ep in self._wanted - self._ended
                for p in range(self.connections_per_endpoint)
            }
        )
        for key in list(self._tasks):
            if key not in wanted:
                self._tasks.pop(key).cancel()
        for key in sorted(wanted - self._tasks.keys(), key=lambda k: (k[0].host, k[0].port, k[1])):
            self._tasks[key] = asyncio.create_task(
                self._connection_loop(*key), name=f"stage-input {key[0]} p{key[1]}"
            )

    async def close(self) -> None:
        """Drop every connection; a waiting consumer gets TransportClosed."""
        self._closed = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        resolve(self._waiter)

    async def __aenter__(self) -> StageInput:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # consuming --------------------------------------------------------------------------------

    async def get_batch(self) -> list[Any]:
        """The next decoded batch from any upstream worker; TransportClosed once closed,
        Refused once refused."""
        queue = self._queue
        while not queue or self.refusal is not None:
            if self.refusal is not None:
                raise Refused(self.refusal)
            if self._closed or self.completed:
                raise TransportClosed("input closed" if self._closed else "input completed")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        batch = queue.popleft()
        if self._paused and len(queue) <= self.max_queued_batches // 2:
            for proto in list(self._paused):
                proto.resume()
            self._paused.clear()
        return batch

    async def batches(self) -> AsyncIterator[list[Any]]:
        """Batches until the input is closed; Refused if it is refused."""
        while True:
            try:
                yield await self.get_batch()
            except TransportClosed:
                return

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for batch in self.batches():
            for event in batch:
                yield event

    # state ------------------------------------------------------------------------------------

    def stats(self) -> InputStats:
        return InputStats(
            received_count=self.received_count,
            batch_count=self.batch_count,
            connects=self.connects,
            disconnects=self.disconnects,
            connected=len(self._live),
            frame_errors=self.frame_errors,
        )

    @property
    def connected_count(self) -> int:
        return len(self._live)

    @property
    def queued_batches(self) -> int:
        """Batches received and not yet taken (the worker's metrics show the queue)."""
        return len(self._queue)

    # internals --------------------------------------------------------------------------------

    def _refused_by(self, endpoint: Endpoint, reason: str) -> None:
        """An upstream worker refused us: we were replaced, so stop taking input at all."""
        if self.refusal is not None:
            return
        self.refusal = reason
        log.error(
            "transport_refused",
            upstream=str(endpoint),
            slot=self.slot,
            worker=str(self.worker),
            reason=reason,
        )
        self._closed = True
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._queue.clear()
        resolve(self._waiter)

    def _ended_by(self, endpoint: Endpoint) -> None:
        """An upstream worker completed: its connections are not made again."""
        if endpoint in self._ended:
            return
        self._ended.add(endpoint)
        log.info("transport_upstream_ended", upstream=str(endpoint), slot=self.slot)
        for key in [k for k in self._tasks if k[0] == endpoint]:
            self._tasks.pop(key)  # its loop sees the END and returns after the close
        self._check_completed()

    def _check_completed(self) -> None:
        if self._ended and self._wanted <= self._ended and not self.completed:
            self.completed = True
            log.info("transport_input_completed", slot=self.slot, upstreams=len(self._ended))
            resolve(self._waiter)

    def _push(self, proto: _Upstream, batch: list[Any]) -> None:
        self._queue.append(batch)
        self.received_count += len(batch)
        self.batch_count += 1
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(self._queue) >= self.max_queued_batches and not proto.paused:
            proto.pause()
            self._paused.add(proto)

    async def _connection_loop(self, endpoint: Endpoint, partition: int) -> None:
        loop = asyncio.get_running_loop()
        attempt, rng = 0, random.Random()
        while not self._closed:
            proto: _Upstream | None = None
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, proto = await loop.create_connection(
                        lambda: _Upstream(self, endpoint), endpoint.host, endpoint.port
                    )
            except (OSError, TimeoutError) as e:
                log.debug(
                    "transport_connect_failed",
                    upstream=str(endpoint),
                    error=str(e),
                    attempt=attempt,
                )
            else:
                assert proto.transport is not None
                worker = self.worker.to_json() if self.worker is not None else None
                proto.transport.write(encode_hello(self.slot, partition, worker))
                self._live.add(proto)
                self.connects += 1
                log.info(
                    "transport_upstream_connected",
                    upstream=str(endpoint),
                    partition=partition,
                    slot=self.slot,
                )
                try:
                    await proto.done
                finally:
                    self._live.discard(proto)
                    self._paused.discard(proto)
                    proto.abort()
                self.disconnects += 1
                log.info(
                    "transport_upstream_lost",
                    upstream=str(endpoint),
                    partition=partition,
                    received=proto.received,
                )
                if proto.received:
                    attempt = 0
                if endpoint in self._ended:
                    return
            await asyncio.sleep(self.backoff.delay(attempt, rng))
            attempt += 1

"""The SSE client source: events from a Server-Sent Events stream, reconnecting for ever.

Reads what the sinks of runtime.sse (and Mantis' push servers) serve: ``data:`` lines, one
event per blank-line-ended block. A payload is decoded as JSON (orjson), or kept as a str when
it is not JSON; ``data: ping`` heartbeats, comments (``:`` lines) and the master's
``HB_JobId`` frames are skipped. With ``format=binary`` (or
``mantis.EnableCompressedBinary=true``) in the query, each payload is base64 of zlib of
events joined by ``mantis.CompressionDelimiter`` (runtime.sse's binary format) and is unpacked.

Each read from the socket becomes at most one batch: whatever complete events it finished,
so batches grow with the load and latency stays one read. When the stream ends or fails the
source reconnects after a jittered, capped exponential back-off (reset once a connection
delivered data or lived longer than the cap); a 400 is not retried (the query is wrong and
stays wrong), it raises SourceError. Metrics: ``events_emitted``, ``reconnects``,
``decode_errors`` (payloads that are not UTF-8, or binary payloads that do not unpack).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import structlog

from runtime.context import Context, Counter, Metrics
from runtime.sources.merge import closing

log = structlog.get_logger()

HB_JOB_ID = "HB_JobId"
PING = b"ping"
DEFAULT_DELIMITER = b"$$$"
CONNECT_TIMEOUT = 5.0


class SourceError(Exception):
    """A source cannot go on: retrying would not help (a bad query, an unknown cluster)."""


class HttpStatusError(SourceError):
    """An HTTP stream answered with something other than 200."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"GET {url}: HTTP {status}: {body}")
        self.url = url
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential delays: attempt n waits ``min(maximum, initial * multiplier**n)``,
    less a random fraction of up to `jitter` of it (so that many clients do not come back in
    step after a restart)."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (
            0 < self.initial <= self.maximum and self.multiplier >= 1 and 0 <= self.jitter <= 1
        ):
            raise ValueError(f"invalid back-off {self}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())


class SseParser:
    """Incremental SSE parsing: bytes in, the ``data`` of each completed event out.

    Multi-line data is joined with ``\\n``; comments and fields other than ``data`` are
    ignored; lines may end in ``\\n`` or ``\\r\\n``. An unfinished event waits, whole, for
    the blank line that ends it.
    """

    __slots__ = ("_rest", "_tail")

    def __init__(self) -> None:
        self._rest: list[bytes] = []  # the reads of an event not yet ended
        self._tail = b""  # their last two bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        rest = self._rest
        if rest:
            probe = self._tail + chunk
            rest.append(chunk)
            if b"\n\n" not in probe and b"\n\r\n" not in probe:
                self._tail = probe[-2:]  # a big event is not re-scanned on every read
                return []
            text = b"".join(rest)
        else:
            text = chunk
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n")
        blocks = text.split(b"\n\n")
        last = blocks.pop()
        self._rest = [last] if last else []
        self._tail = last[-2:]
        out: list[bytes] = []
        for block in blocks:
            if block.startswith(b"data: ") and block.find(b"\n") < 0:
                out.append(block[6:])  # the usual event: one data line
                continue
            data = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    value = line[5:]
                    data.append(value[1:] if value[:1] == b" " else value)
            if data:
                out.append(b"\n".join(data))
        return out


def _truthy(value: object) -> bool:
    return str(value).lower() == "true"


@dataclass
class EventDecoder:
    """SSE payloads -> events, skipping heartbeats; counts what it cannot decode."""

    decode_errors: Counter
    binary: bool = False
    delimiter: bytes = DEFAULT_DELIMITER

    @classmethod
    def for_query(cls, params: Mapping[str, str], metrics: Metrics) -> EventDecoder:
        binary = str(params.get("format", "")).lower() == "binary" or _truthy(
            params.get("mantis.EnableCompressedBinary", "")
        )
        delimiter = str(params.get("mantis.CompressionDelimiter", "")).encode() or DEFAULT_DELIMITER
        return cls(metrics.counter("decode_errors"), binary, delimiter)

    def decode(self, payloads: Iterable[bytes]) -> list[Any]:
        events: list[Any] = []
        for payload in payloads:
            if not self.binary:
                self._one(payload, events)
                continue
            if payload == PING:
                continue
            try:
                packed = zlib.decompress(base64.b64decode(payload, validate=True))
            except (binascii.Error, zlib.error, ValueError):
                self.decode_errors.inc()
                continue
            for item in packed.split(self.delimiter):
                self._one(item, events)
        return events

    def _one(self, payload: bytes, out: list[Any]) -> None:
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if payload != PING:
                try:
                    out.append(payload.decode())
                except UnicodeDecodeError:
                    self.decode_errors.inc()
            return
        if b"HB_JobId" in payload and isinstance(value, dict) and value.get("jobId") == HB_JOB_ID:
            return
        out.append(value)


async def sse_payloads(
    session: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str] | None = None,
    read_timeout: float | None = None,
) -> AsyncIterator[list[bytes]]:
    """One connection: the data payloads completed by each read, until the stream ends.

    Raises HttpStatusError for an answer other than 200, aiohttp/OS errors as they come. The
    connection is closed when the caller stops iterating (``aclose()``) or is cancelled.
    """
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT, sock_read=read_timeout
    )
    async with session.get(url, params=params, timeout=timeout) as resp:
        if resp.status != 200:
            body = ""
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
                body = (await asyncio.wait_for(resp.content.read(1024), 2)).decode()
            raise HttpStatusError(str(resp.url), resp.status, body.strip())
        parser = SseParser()
        async for chunk in resp.content.iter_any():
            payloads = parser.feed(chunk)
            if payloads:
                yield payloads


RETRYABLE = (aiohttp.ClientError, OSError, TimeoutError, HttpStatusError)


def describe(error: BaseException) -> str:
    """An error for a log line: its type and message."""
    return (
        f"{type(error).__name__}: {error}" if not isinstance(error, HttpStatusError) else str(error)
    )


async def reconnecting_batches(
    session: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    decoder: EventDecoder,
    metrics: Metrics,
    backoff: Backoff,
    read_timeout: float | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[list[Any]]:
    """Batches of events from `url`, reconnecting with back-off for ever (counted in
    ``reconnects``); a 400 raises SourceError."""
    loop = asyncio.get_running_loop()
    rng = rng or random.Random()
    reconnects = metrics.counter("reconnects")
    attempt = 0
    while True:
        started = loop.time()
        received = False
        try:
            stream = sse_payloads(session, url, params, read_timeout)
            async with closing(stream):
                async for payloads in stream:
                    received = True
                    events = decoder.decode(payloads)
                    if events:
                        yield events
            reason = "end of stream"
        except HttpStatusError as e:
            if e.status == 400:
                raise SourceError(f"SSE source {url}: the server refused the query: {e}") from e
            reason = str(e)
        except RETRYABLE as e:
            reason = describe(e)
        if received or loop.time() - started > backoff.maximum:
            attempt = 0
        delay = backoff.delay(attempt, rng)
        attempt += 1
        reconnects.inc()
        log.info("sse_source_reconnecting", url=url, reason=reason, delay=round(delay, 3))
        await asyncio.sleep(delay)


@dataclass(frozen=True)
class SseSource:
    """Events from an SSE endpoint (``url`` plus query ``params``), e.g. a job's sink:
    ``SseSource("http://host:port/", {"clientId": "me", "sampleMSec": "100"})``."""

    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    backoff: Backoff = Backoff()
    read_timeout: float | None = None
    """Seconds without a byte after which the connection counts as dead (then ask the server
    for heartbeats, e.g. ``heartbeatSec``); None waits for ever."""

    async def batches(self, context: Context) -> AsyncIterator[list[Any]]:
        params = {k: str(v) for k, v in self.params.items()}
        decoder = EventDecoder.for_query(params, context.metrics)
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            stream = reconnecting_batches(
                session, self.url, params, decoder, context.metrics, self.backoff, self.read_timeout
            )
            emitted = context.metrics.counter("events_emitted")
            async with closing(stream):
                async for batch in stream:
                    emitted.inc(len(batch))
                    yield batch

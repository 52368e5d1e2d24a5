"""The SSE client source: events from a Server-Sent Events stream, reconnecting for ever.

Reads what SSE sinks (common.sse_sink, and Mantis' push servers) serve, parsed by
common.sse: one event per blank-line-ended block of ``data:`` lines. A payload is decoded as JSON (orjson), or kept as a str when
it is not JSON; ``data: ping`` heartbeats, comments (``:`` lines) and the master's
``HB_JobId`` frames are skipped. With ``format=binary`` (or
``mantis.EnableCompressedBinary=true``) in the query, each payload is base64 of zlib of
events joined by ``mantis.CompressionDelimiter`` (common.sse's binary format) and is unpacked.

Each read from the socket becomes at most one batch: whatever complete events it finished,
so batches grow with the load and latency stays one read. When the stream ends or fails the
source reconnects after a jittered, capped exponential back-off (reset once a connection
delivered data or lived longer than the cap); a 400 is not retried (the query is wrong and
stays wrong), it raises SourceError. Metrics: ``events_emitted``, ``reconnects``,
``decode_errors`` (payloads that are not UTF-8, or binary payloads that do not unpack).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import structlog

from common.backoff import Backoff
from common.sse import DEFAULT_DELIMITER, HB_JOB_ID, PING, unpack_binary
from common.sse_client import RETRYABLE, HttpStatusError, describe, sse_payloads
from runtime.context import Context, Counter, Metrics
from runtime.metrics import UPSTREAM_DROPPED
from runtime.sources.merge import closing

log = structlog.get_logger()


_HB = HB_JOB_ID.encode()
_DROPPED = b"droppedMessageCount"


class SourceError(Exception):
    """A source cannot go on: retrying would not help (a bad query, an unknown cluster)."""


def _truthy(value: object) -> bool:
    return str(value).lower() == "true"


@dataclass
class EventDecoder:
    """SSE payloads -> events, skipping heartbeats; counts what it cannot decode."""

    decode_errors: Counter
    binary: bool = False
    delimiter: bytes = DEFAULT_DELIMITER
    upstream_dropped: Counter | None = None
    """With meta messages asked for (``enableMetaMessages``): what the upstream sink dropped
    for this connection, from its ``droppedMessageCount`` frames (still passed on to the job):
    the worker's ``SourceJobDrop`` (runtime.metrics)."""

    @classmethod
    def for_query(cls, params: Mapping[str, str], metrics: Metrics) -> EventDecoder:
        binary = str(params.get("format", "")).lower() == "binary" or _truthy(
            params.get("mantis.EnableCompressedBinary", "")
        )
        delimiter = str(params.get("mantis.CompressionDelimiter", "")).encode() or DEFAULT_DELIMITER
        meta = _truthy(params.get("enableMetaMessages", "")) or "metaMessagesSec" in params
        dropped = metrics.counter(UPSTREAM_DROPPED) if meta else None
        return cls(metrics.counter("decode_errors"), binary, delimiter, dropped)

    def decode(self, payloads: Iterable[bytes]) -> list[Any]:
        events: list[Any] = []
        for payload in payloads:
            if not self.binary:
                self._one(payload, events)
                continue
            if payload == PING:
                continue
            try:
                items = unpack_binary(payload, self.delimiter)
            except ValueError:
                self.decode_errors.inc()
                continue
            for item in items:
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
        if _HB in payload and isinstance(value, dict) and value.get("jobId") == HB_JOB_ID:
            return
        if (
            self.upstream_dropped is not None
            and _DROPPED in payload
            and isinstance(value, dict)
            and value.get("mantis.meta") == "droppedMessageCount"
        ):
            with contextlib.suppress(TypeError, ValueError):
                self.upstream_dropped.inc(int(value.get("value", 0)))
        out.append(value)


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

"""Benchmark job: a synthetic source, filter/map and key, then a keyed count to SSE.

Stage 1 (a KeyStage) reads the source: batches of ~100-byte events (``make_batch``) with a
key among ``keys`` users, as fast as it can or at ``rate`` events/s; ``filter_map`` drops
the events whose ``value`` is a multiple of 10 (10 in every 97) and doubles the others'
``value``; the key is ``key``. Stage 2 (a GroupToScalarStage) counts each key's events in
tumbling time windows of ``WINDOW_SECONDS`` and emits ``{"key", "value", "count", "start",
"end"}`` per key and window, so the counts of all windows add up to the events processed.
Lossless: both outputs block (Backpressure.BLOCKING) rather than drop. ``job()`` applies the
worker GC tuning (``worker_gc``): measured here it cut each worker's CPU per event by 25-40 %.

bench/jobs/keyed_count_events.py is the per-event variant (the same stage 1, a running
count per key that emits every event with its source stamp) for end-to-end latency. The
plain functions here are also what bench/stream.py runs through bytewax, event by event.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from runtime.context import Context
from runtime.job import FunctionSource, Job, ServerSentEventsSink
from runtime.parameters import FloatParameter, IntParameter, Parameter
from runtime.stages import GroupToScalarStage, KeyStage, StageConfig, Window
from runtime.transport import Backpressure
from runtime.tuning import tune_gc

WINDOW_SECONDS = 0.5
PACE_SECONDS = 0.001
"""A paced source makes what is due about this often (10 events a time at 10,000/s)."""
BLOCKING = StageConfig(backpressure=Backpressure.BLOCKING)
URLS = [f"https://example.com/home/index.html?ref=feed&n={n}" for n in range(10)]


def user_keys(n: int) -> list[str]:
    return [f"user-{k:04d}" for k in range(n)]


def make_batch(
    start: int, n: int, keys: list[str], stamp: float | None = None
) -> list[dict[str, Any]]:
    """Events ``start .. start + n - 1``: ~100 bytes of JSON each, four fields (five with a
    ``t`` stamp, which goes first so that a client can find it without decoding)."""
    k = len(keys)
    if stamp is None:
        return [
            {"id": i, "key": keys[i % k], "value": i % 97, "url": URLS[i % 10]}
            for i in range(start, start + n)
        ]
    return [
        {"t": stamp, "id": i, "key": keys[i % k], "value": i % 97, "url": URLS[i % 10]}
        for i in range(start, start + n)
    ]


def keep(event: dict[str, Any]) -> bool:
    return bool(event["value"] % 10 != 0)


def enrich(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "value": event["value"] * 2}


def key_of(event: dict[str, Any]) -> str:
    return event["key"]  # type: ignore[no-any-return]


def filter_map(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``keep`` then ``enrich``, over a batch."""
    return [{**e, "value": e["value"] * 2} for e in events if e["value"] % 10 != 0]


def kept(total: int) -> int:
    """How many of events ``0 .. total - 1`` pass ``keep``."""
    whole, rest = divmod(total, 97)
    return whole * 87 + sum(1 for v in range(rest) if v % 10 != 0)


async def source(context: Context) -> AsyncIterator[list[dict[str, Any]]]:
    """``events`` events (0: endless) in batches of ``batch``; with ``rate`` > 0, paced to
    that many events/s and each stamped with the time.monotonic() it was made at."""
    total = context.param("events", int)
    rate = context.param("rate", float)
    size = context.param("batch", int)
    keys = user_keys(context.param("keys", int))
    sent = 0
    started = time.monotonic()
    while total == 0 or sent < total:
        if rate > 0:
            now = time.monotonic()
            due = int((now - started) * rate) - sent
            if due <= 0:
                await asyncio.sleep(PACE_SECONDS)
                continue
            n = min(due, size)
            batch = make_batch(sent, n, keys, now)
        else:
            n = size if total == 0 else min(size, total - sent)
            batch = make_batch(sent, n, keys)
        sent += n
        yield batch
        if rate <= 0:
            await asyncio.sleep(0)  # let the worker's other tasks (heartbeats) run


PARAMETERS: list[Parameter[Any]] = [
    IntParameter("events", default=0, minimum=0),
    FloatParameter("rate", default=0.0, minimum=0.0),
    IntParameter("batch", default=1024, minimum=1),
    IntParameter("keys", default=1000, minimum=1),
]


def key_stage() -> KeyStage:
    return KeyStage(key_fn=key_of, batch_fn=filter_map, config=BLOCKING, name="filter-map-key")


def build(stage_two: GroupToScalarStage, name: str) -> Job:
    return Job(
        source=FunctionSource(source),
        stages=[key_stage(), stage_two],
        sink=ServerSentEventsSink(backpressure=Backpressure.BLOCKING),
        parameters=PARAMETERS,
        name=name,
    )


def worker_gc() -> None:
    """The worker GC tuning (runtime.tuning), as bench/stream.py gives its other processes:
    runtime.worker does not apply it (yet); ``MANTIS_BENCH_DEFAULT_GC=1`` (--default-gc)
    leaves CPython's defaults."""
    if os.environ.get("MANTIS_BENCH_DEFAULT_GC") != "1":
        tune_gc()


def running_counts() -> Callable[[list[Any]], list[dict[str, Any]]]:
    """A keyed running count: every event out as ``{"t", "i", "key", "count"}``, its key's
    count so far (state of this stage instance only)."""
    counts: dict[str, int] = {}

    def count(pairs: list[Any]) -> list[dict[str, Any]]:
        out = []
        for key, event in pairs:
            n = counts.get(key, 0) + 1
            counts[key] = n
            out.append({"t": event["t"], "i": event["id"], "key": key, "count": n})
        return out

    return count


def job() -> Job:
    worker_gc()
    counts = GroupToScalarStage(
        window=Window.tumbling_time(WINDOW_SECONDS), config=BLOCKING, name="keyed-count"
    )
    return build(counts, "bench-keyed-count")

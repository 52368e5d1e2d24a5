"""Synthetic events -> keep and enrich -> count per key per 1-second window -> SSE.

Stage 1 runs the source (``SyntheticSource``: ``{"id", "key", "value"}`` events at
``eventsPerSecond``), drops events whose value is below ``minValue``, adds a ``bucket``, and
keys them by ``key``; the keyed transport sends each key to one worker of stage 2, which counts
its events in tumbling 1-second windows and serves
``{"key", "value": <count>, "count", "start", "end"}`` over SSE.
"""

from __future__ import annotations

from typing import Any

from runtime.context import Context
from runtime.job import Job, ServerSentEventsSink
from runtime.parameters import FloatParameter, IntParameter
from runtime.sources import SyntheticSource
from runtime.stages import GroupToScalarStage, KeyStage, Window


def events(context: Context) -> Any:
    rate = context.param("eventsPerSecond", int)
    return SyntheticSource(events_per_s=rate, seed=context.worker.worker_index).batches(context)


def keep_and_enrich(batch: list[dict[str, Any]], context: Context) -> list[dict[str, Any]]:
    minimum = context.param("minValue", float)
    return [{**e, "bucket": int(e["value"] // 10)} for e in batch if e["value"] >= minimum]


def job() -> Job:
    return (
        Job.from_source(events, name="synthetic-counts")
        .parameter(
            IntParameter("eventsPerSecond", default=2000, minimum=1, maximum=1_000_000),
            FloatParameter("minValue", default=10.0, minimum=0.0, maximum=100.0),
        )
        .stage(KeyStage(batch_fn=keep_and_enrich, key_fn=lambda e: e["key"]))
        .stage(GroupToScalarStage(window=Window.tumbling_time(1.0)))
        .sink(ServerSentEventsSink())
    )

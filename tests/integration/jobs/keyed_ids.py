"""Numbered events -> keyed by id % 12 -> each key's event ids per 1-second window -> SSE.

The source emits ``eventsPerSecond`` events ``{"id": n}`` with consecutive ids (a batch every
20 ms), so a test can tell an event counted twice, or lost, from the ids each window reports:
``{"key", "ids", "start", "complete"}``. Keyed by ``id % 12`` over the workers of stage 2.
"""

import asyncio
import itertools

from runtime.job import Job, ServerSentEventsSink
from runtime.parameters import IntParameter
from runtime.stages import GroupToScalarStage, KeyStage, Window


async def numbered(context):
    rate = context.param("eventsPerSecond", int)
    ids = itertools.count()
    per_batch = max(1, rate // 50)
    while True:
        yield [{"id": next(ids)} for _ in range(per_batch)]
        await asyncio.sleep(0.02)


def collect(ids, event):
    ids.append(event["id"])
    return ids


def report(key, ids, info):
    return {"key": key, "ids": ids, "start": info.start, "complete": info.complete}


def job():
    return (
        Job.from_source(numbered, name="keyed-ids")
        .parameter(
            IntParameter("eventsPerSecond", default=500, minimum=1, maximum=100_000),
        )
        .stage(KeyStage(batch_fn=lambda batch, context: batch, key_fn=lambda e: f"k{e['id'] % 12}"))
        .stage(
            GroupToScalarStage(
                window=Window.tumbling_time(1.0), reduce=collect, initial=list, output=report
            )
        )
        .sink(ServerSentEventsSink())
    )

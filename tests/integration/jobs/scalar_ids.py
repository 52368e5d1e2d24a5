"""Numbered events -> a scalar stage (round-robin input) that passes them on -> SSE.

The source emits ``eventsPerSecond`` events ``{"id": n}`` with consecutive ids (a batch every
5 ms); stage 1 passes them through in blocking mode (lossless: its output to stage 2 waits
for room instead of dropping), round-robin over the workers of stage 2, which pass them on to
their SSE sinks. A test tells an event lost, or seen twice, from the ids the sinks serve.
"""

import asyncio
import itertools

from runtime.job import Job, ServerSentEventsSink
from runtime.parameters import IntParameter
from runtime.stages import ScalarStage, StageConfig
from runtime.transport import Backpressure


async def numbered(context):
    rate = context.param("eventsPerSecond", int)
    ids = itertools.count()
    per_batch = max(1, rate // 200)
    while True:
        yield [{"id": next(ids)} for _ in range(per_batch)]
        await asyncio.sleep(0.005)


def job():
    return (
        Job.from_source(numbered, name="scalar-ids")
        .parameter(
            IntParameter("eventsPerSecond", default=500, minimum=1, maximum=100_000),
        )
        .stage(
            ScalarStage(
                batch_fn=lambda batch, context: batch,
                config=StageConfig(backpressure=Backpressure.BLOCKING),
            )
        )
        .stage(ScalarStage(batch_fn=lambda batch, context: batch))
        .sink(ServerSentEventsSink())
    )

"""An endless counter through 3 single-worker stages (lossy, Mantis' default), ~10,000 events/s."""

import asyncio
import itertools

from runtime.job import Job, ServerSentEventsSink
from runtime.stages import ScalarStage


async def count(context):
    numbers = itertools.count()
    while True:
        yield [{"i": next(numbers)} for _ in range(50)]
        await asyncio.sleep(0.005)


def tag(stage):
    def add(events, context):
        return [{**e, f"s{stage}": context.worker.worker_number} for e in events]

    return add


def job():
    return Job(source=count, stages=[ScalarStage(batch_fn=tag(n)) for n in (1, 2, 3)],
               sink=ServerSentEventsSink(), name="counter")

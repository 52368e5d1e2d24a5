"""An endless counter through 3 single-worker stages (lossy, Mantis' default), ~10,000 events/s.

Each event says which job made it and which worker number carried it through each stage."""

import asyncio
import itertools

from runtime.job import Job, ServerSentEventsSink
from runtime.stages import ScalarStage


async def count(context):
    numbers = itertools.count()
    job_id = context.worker.job_id
    while True:
        yield [{"i": next(numbers), "job": job_id} for _ in range(50)]
        await asyncio.sleep(0.005)


def tag(stage):
    def add(events, context):
        return [{**e, f"s{stage}": context.worker.worker_number} for e in events]

    return add


def job():
    return Job(
        source=count,
        stages=[ScalarStage(batch_fn=tag(n)) for n in (1, 2, 3)],
        sink=ServerSentEventsSink(),
        name="counter",
    )

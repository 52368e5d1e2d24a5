"""As many events as one worker can make and pass on: the source yields batches of 1,024 small
events back to back, a scalar stage passes them through, a function sink drops them. A worker's
throughput (its heartbeats' RPS) is then what its own machinery costs: bench/autoscale.py
compares it with the worker's metrics served and scraped, and without."""

import asyncio

from runtime.job import FunctionSink, Job
from runtime.stages import ScalarStage

BATCH = 1024


async def events(context):
    n = 0
    while True:
        yield [{"id": i} for i in range(n, n + BATCH)]
        n += BATCH
        await asyncio.sleep(0)


def passthrough(batch, context):
    return batch


def drop(context, batch):
    return None


def job():
    return (
        Job.from_source(events, name="flat-out")
        .stage(ScalarStage(batch_fn=passthrough))
        .sink(FunctionSink(drop))
    )

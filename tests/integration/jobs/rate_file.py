"""Events at the rate a file says (events per second, re-read every 0.1 s): a load a test or a
benchmark steps or ramps by rewriting the file, then a scalar stage (the one to autoscale on
RPS) and an eager SSE sink (no client needed). Parameter ``rateFile``: the file's path."""

import asyncio
import itertools
from pathlib import Path

from runtime.job import Job, ServerSentEventsSink
from runtime.parameters import StringParameter
from runtime.stages import ScalarStage

TICK = 0.02


def read_rate(path):
    try:
        return max(0.0, float(path.read_text().strip() or 0))
    except (OSError, ValueError):
        return 0.0


async def events(context):
    path = Path(context.param("rateFile", str))
    loop = asyncio.get_running_loop()
    ids = itertools.count()
    rate, checked, owed = read_rate(path), loop.time(), 0.0
    while True:
        await asyncio.sleep(TICK)
        now = loop.time()
        if now - checked >= 0.1:
            rate, checked = read_rate(path), now
        owed += rate * TICK
        n, owed = int(owed), owed - int(owed)
        if n:
            yield [{"id": next(ids)} for _ in range(n)]


def passthrough(batch, context):
    return batch


def job():
    return (
        Job.from_source(events, name="rate-file")
        .parameter(StringParameter("rateFile", required=True))
        .stage(ScalarStage(batch_fn=passthrough))
        .stage(ScalarStage(batch_fn=passthrough))
        .sink(ServerSentEventsSink(eager=True))
    )

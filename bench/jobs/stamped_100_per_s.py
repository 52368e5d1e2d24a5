"""Benchmark job for bench/api.py: ``rate`` events/s (100 by default), each stamped at birth.

One stage, so the source and the SSE sink run in one worker: what bench/api.py times from
the stamp to a client's receipt is the master's part (its shared upstream connection to this
sink and its fan-out to every client), plus one loopback hop. Each event is
``{"t": <time.time() when made>, "i": <sequence number>, "pad": <60 bytes>}`` (~100 bytes of
JSON); ``t`` goes first so that a client can find it without decoding the frame. The source
is a paced runtime.sources.SyntheticSource: it sleeps until the next event is due, so at
100 events/s a batch is one event, sent as it is made.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from typing import Any

from runtime.context import Context
from runtime.job import FunctionSource, Job, ServerSentEventsSink
from runtime.parameters import FloatParameter
from runtime.sources import SyntheticSource
from runtime.stages import ScalarStage

RATE = 100.0
PAD = "x" * 60


def stamped(i: int, rng: random.Random) -> dict[str, Any]:
    return {"t": time.time(), "i": i, "pad": PAD}


async def source(context: Context) -> AsyncIterator[list[dict[str, Any]]]:
    paced = SyntheticSource(events_per_s=context.param("rate", float), make=stamped)
    async for batch in paced.batches(context):
        yield batch


def passthrough(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return events


def job() -> Job:
    return Job(
        source=FunctionSource(source),
        stages=[ScalarStage(batch_fn=passthrough, name="passthrough")],
        sink=ServerSentEventsSink(),
        parameters=[FloatParameter("rate", default=RATE, minimum=0.1)],
        name="bench-stamped",
    )

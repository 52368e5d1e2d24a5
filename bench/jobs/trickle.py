"""Benchmark job for bench/fleet.py: one stage that passes on one small event a second.

Run as many workers of it as a test needs: each worker is a nearly idle process (a paced
source, heartbeats every 20 s, an SSE sink nobody reads), so what it costs is the per-worker
overhead a user pays, whatever the job does.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

from runtime.context import Context
from runtime.job import FunctionSource, Job, ServerSentEventsSink
from runtime.sources import SyntheticSource
from runtime.stages import ScalarStage


def tick(i: int, rng: random.Random) -> dict[str, Any]:
    return {"i": i}


async def source(context: Context) -> AsyncIterator[list[dict[str, Any]]]:
    async for batch in SyntheticSource(events_per_s=1.0, make=tick).batches(context):
        yield batch


def passthrough(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return events


def job() -> Job:
    return Job(
        source=FunctionSource(source),
        stages=[ScalarStage(batch_fn=passthrough, name="passthrough")],
        sink=ServerSentEventsSink(),
        name="bench-trickle",
    )

"""Benchmark job, per-event variant of keyed_count.py for end-to-end latency.

Stage 1 is keyed_count's (source with ``rate`` and a stamp, filter/map, key); stage 2 keeps
a running count per key and emits every event at once as ``{"t", "i", "key", "count"}``, so
each event that passes both stages reaches the SSE client with the time it was made.
"""

from __future__ import annotations

from bench.jobs.keyed_count import BLOCKING, build, running_counts, worker_gc
from runtime.job import Job
from runtime.stages import GroupToScalarStage


def job() -> Job:
    worker_gc()
    counts = GroupToScalarStage(batch_fn=running_counts(), config=BLOCKING, name="running-count")
    return build(counts, "bench-keyed-count-events")

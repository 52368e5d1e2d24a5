"""A chained job: reads the per-key counts of another job (by cluster name) and keeps the hot ones.

Its source is a ``JobSource`` on the cluster named by ``sourceCluster`` (default
``synthetic-counts``): it follows that cluster's newest job and its sink workers, as Mantis'
job source does. One stage keeps the windows whose count reaches ``threshold`` and serves
``{"key", "count", "end", "source": <cluster>}`` over SSE.
"""

from __future__ import annotations

from typing import Any

from runtime.context import Context
from runtime.job import Job, ServerSentEventsSink
from runtime.parameters import IntParameter, StringParameter
from runtime.sources import JobSource
from runtime.stages import ScalarStage


def upstream(context: Context) -> Any:
    return JobSource(cluster=context.param("sourceCluster", str)).batches(context)


def hot(batch: list[dict[str, Any]], context: Context) -> list[dict[str, Any]]:
    threshold = context.param("threshold", int)
    source = context.param("sourceCluster", str)
    return [
        {"key": w["key"], "count": w["count"], "end": w["end"], "source": source}
        for w in batch
        if isinstance(w, dict) and w.get("count", 0) >= threshold
    ]


def job() -> Job:
    return (
        Job.from_source(upstream, name="hot-keys")
        .parameter(
            StringParameter("sourceCluster", default="synthetic-counts"),
            IntParameter("threshold", default=100, minimum=0),
        )
        .stage(ScalarStage(batch_fn=hot))
        .sink(ServerSentEventsSink())
    )

"""A finite job: 7 keys x 25 events, keyed to stage 2, counted in windows of 10 events.

The source ends, so the job completes: each key's last window (5 events) is emitted when
stage 2 closes, and every worker reports Completed."""

from runtime.job import IterableSource, Job, ServerSentEventsSink
from runtime.stages import GroupToScalarStage, KeyStage, Window


def job():
    return Job(
        source=IterableSource([{"k": f"k{i % 7}", "i": i} for i in range(7 * 25)], 20),
        stages=[
            KeyStage(key_fn=lambda e: e["k"]),
            GroupToScalarStage(window=Window.tumbling_count(10)),
        ],
        sink=ServerSentEventsSink(),
        name="finite-counts",
    )

"""A deterministic job through 3 stages, lossless (blocking mode everywhere).

Stage 1 reads `n` events and keeps the even ones; stage 2 keys them by `i % 7`; stage 3
counts each key's events in windows of 10, in two instances per worker (keys split between
them: a key's window must stay in one).
"""

from runtime.job import IterableSource, Job, ServerSentEventsSink
from runtime.parameters import IntParameter
from runtime.stages import GroupToScalarStage, KeyStage, ScalarStage, StageConfig, Window
from runtime.transport import Backpressure

BLOCKING = StageConfig(backpressure=Backpressure.BLOCKING)


def evens(events):
    return [{"i": e, "k": f"k{e % 7}"} for e in events if e % 2 == 0]


def job():
    n = IntParameter("n", default=14000, minimum=1)
    return Job(
        source=lambda context: IterableSource(range(context.param("n", int)), 100).batches(context),
        stages=[
            ScalarStage(batch_fn=evens, config=BLOCKING),
            KeyStage(key_fn=lambda e: e["k"], config=BLOCKING),
            GroupToScalarStage(
                window=Window.tumbling_count(10),
                config=StageConfig(concurrency=2),
                reduce=lambda acc, e: acc + [e["i"]],
                initial=list,
                output=lambda key, acc, info: {"key": key, "items": acc},
            ),
        ],
        sink=ServerSentEventsSink(backpressure=Backpressure.BLOCKING),
        parameters=[n],
        name="three-stage",
    )

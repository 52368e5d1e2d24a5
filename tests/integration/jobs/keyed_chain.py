"""A finite keyed -> keyed job through the four keyed stage kinds.

200 events of 10 users (20 each); users u0, u2, ... are in region east, the others in west.

1. ScalarToKey: keyed by user.
2. KeyToKey: per user, windows of 5 events counted; each count stays keyed by its user.
3. GroupToGroup: re-keyed from user to region.
4. KeyToScalar: per region, the counts summed in one window that the end of input closes:
   one line per region, ``{"key": <region>, "value": 100, "count": 20, ...}``.
"""

from runtime.job import IterableSource, Job, ServerSentEventsSink
from runtime.stages import (
    GroupToGroupStage,
    KeyToKeyStage,
    KeyToScalarStage,
    ScalarToKeyStage,
    Window,
)


def region(user):
    return "east" if int(user[1:]) % 2 == 0 else "west"


def to_regions(pairs):
    return [{"region": region(user), "count": window["count"]} for user, window in pairs]


def job():
    return Job(
        source=IterableSource([{"user": f"u{i % 10}", "i": i} for i in range(200)], 25),
        stages=[
            ScalarToKeyStage(key_fn=lambda e: e["user"]),
            KeyToKeyStage(
                window=Window.tumbling_count(5),
                output=lambda user, n, info: {"user": user, "count": n},
            ),
            GroupToGroupStage(batch_fn=to_regions, key_fn=lambda e: e["region"]),
            KeyToScalarStage(
                window=Window.tumbling_count(1000),
                reduce=lambda total, e: total + e["count"],
            ),
        ],
        sink=ServerSentEventsSink(),
        name="keyed-chain",
    )

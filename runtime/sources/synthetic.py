"""A synthetic source: generated events at a steady rate, the same ones for the same seed.

For examples, load tests and benchmarks. The rate is kept against the clock since the start,
not per batch: after a stall (a slow consumer, a busy loop) what fell due meanwhile goes out
at once, in batches of at most ``batch_size``, so the long-run rate does not drift; but at
most ``max_catch_up`` seconds of it: a longer gap (a lazy job paused while nobody subscribed)
is skipped, not replayed in a burst. Between
batches the source sleeps until the next event is due, at least ``min_sleep``, so at high
rates a batch carries what fell due during that sleep; it never spins.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from runtime.context import Context

DEFAULT_KEYS = 16


def default_event(i: int, rng: random.Random) -> dict[str, Any]:
    """``{"id": i, "key": "k<n>", "value": <float in [0, 100)>}`` with n in 0..15."""
    return {
        "id": i,
        "key": f"k{rng.randrange(DEFAULT_KEYS)}",
        "value": round(rng.random() * 100, 3),
    }


@dataclass(frozen=True)
class SyntheticSource:
    """``make(i, rng)`` for i = 0, 1, ... at `events_per_s` (None or 0: as fast as the
    consumer takes them), in batches of up to `batch_size`, stopping after `total` if given.

    `clock` and `sleep` default to the event loop's; tests pass a virtual pair.
    """

    events_per_s: float | None = None
    batch_size: int = 100
    total: int | None = None
    seed: int = 0
    make: Callable[[int, random.Random], Any] = default_event
    min_sleep: float = 0.001
    clock: Callable[[], float] | None = None
    sleep: Callable[[float], Awaitable[None]] | None = None
    max_catch_up: float = 1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.events_per_s is not None and (
            self.events_per_s < 0 or math.isnan(self.events_per_s)
        ):
            raise ValueError(f"events_per_s must be >= 0, got {self.events_per_s}")
        if self.total is not None and self.total < 0:
            raise ValueError(f"total must be >= 0, got {self.total}")
        if not self.max_catch_up > 0:
            raise ValueError(f"max_catch_up must be > 0, got {self.max_catch_up}")
        if self.min_sleep <= 0:
            raise ValueError(f"min_sleep must be > 0, got {self.min_sleep}")

    async def batches(self, context: Context) -> AsyncIterator[list[Any]]:
        clock = self.clock or asyncio.get_running_loop().time
        sleep = self.sleep or asyncio.sleep
        rng = random.Random(self.seed)
        make = self.make
        emitted = context.metrics.counter("events_emitted")
        rate = self.events_per_s or 0.0
        total = self.total if self.total is not None else math.inf
        start = clock()
        i = 0
        while i < total:
            if rate:
                behind = clock() - start - i / rate
                if behind > self.max_catch_up:  # paused: what fell due meanwhile is skipped
                    start += behind - self.max_catch_up
                due = math.floor((clock() - start) * rate + 1e-9)
                if due <= i:  # nothing due yet: sleep until the next event is
                    await sleep(max(start + (i + 1) / rate - clock(), self.min_sleep))
                    continue
                n = int(min(due - i, self.batch_size, total - i))
            else:
                n = int(min(self.batch_size, total - i))
            batch = [make(j, rng) for j in range(i, i + n)]
            i += n
            emitted.inc(n)
            yield batch
            if not rate:
                await sleep(0)  # as fast as possible, but other tasks still get the loop

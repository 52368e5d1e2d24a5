"""Reconnect back-off: how long a client waits before its next attempt, one rule for all.

Capped exponential growth with "equal"-style jitter taken off the top, as in the AWS
Architecture Blog's "Exponential Backoff And Jitter"
(https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), so that the
many workers that lose the master (or an upstream worker) together do not all come back in
the same instant. The caller counts its attempts and resets the count once a connection
delivered something.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Attempt n (0-based) waits ``min(maximum, initial * multiplier**n)``, less a random
    fraction of up to `jitter` of it."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (
            0 < self.initial <= self.maximum and self.multiplier >= 1 and 0 <= self.jitter <= 1
        ):
            raise ValueError(f"invalid back-off {self}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt number `attempt + 1`."""
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())

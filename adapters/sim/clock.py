"""A virtual clock and its event heap: (t, seq, action), `seq` ordering equal times."""

from __future__ import annotations

import heapq
from collections.abc import Callable


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.steps = 0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, action))

    def step(self, until: float) -> bool:
        """Run the next action due no later than `until`; False when there is none."""
        if not self._heap or self._heap[0][0] > until:
            return False
        t, _, action = heapq.heappop(self._heap)
        self.now = t
        self.steps += 1
        action()
        return True

    def run_until(self, until: float, stop: Callable[[], bool] = lambda: False) -> bool:
        """Run actions up to time `until`, or until `stop()` holds (then True)."""
        while not stop():
            if not self.step(until):
                self.now = max(self.now, until)
                return stop()
        return True

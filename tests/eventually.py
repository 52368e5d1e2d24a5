"""Polling with a deadline, the one way tests wait for something: a test never sleeps blindly.

`eventually` is for asyncio tests, `wait_until` for blocking ones (subprocesses, pymesos'
threads); both run the same deadline loop, `_polls`, and fail naming what they waited for
and, with `describe`, what the test can tell about why (the workers' logs, say).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

Predicate = Callable[[], object]
Describe = Callable[[], str]


def _polls(predicate: Predicate, what: str, timeout: float, describe: Describe | None) -> Iterator[None]:
    """Yield (the caller then waits `interval`) until `predicate()` is truthy; past `timeout`
    seconds raise an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        yield


async def eventually(
    predicate: Predicate, what: str, timeout: float = 10.0, interval: float = 0.02,
    describe: Describe | None = None,
) -> None:  # fmt: skip
    """Return once `predicate()` holds, polling every `interval` seconds without blocking the loop."""
    for _ in _polls(predicate, what, timeout, describe):
        await asyncio.sleep(interval)


def wait_until(
    predicate: Predicate, what: str, timeout: float = 10.0, interval: float = 0.05,
    describe: Describe | None = None,
) -> None:  # fmt: skip
    """Return once `predicate()` holds, polling every `interval` seconds on this thread."""
    for _ in _polls(predicate, what, timeout, describe):
        time.sleep(interval)

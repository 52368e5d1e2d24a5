"""Polling with a deadline, the one way tests wait for something: a test never sleeps blindly.

`eventually` (a condition) and `eventually_value` (an awaited check whose truthy answer is
returned) are for asyncio tests, `wait_until` for blocking ones (subprocesses, pymesos'
threads); all share one deadline, `_deadline`, and fail naming what they waited for and, with
`describe`, what the test can tell about why (the workers' logs, say).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
Predicate = Callable[[], object]
Describe = Callable[[], str]


def _deadline(what: str, timeout: float, describe: Describe | None) -> Callable[[], None]:
    """A check that raises an AssertionError naming `what` once `timeout` seconds have passed."""
    end = time.monotonic() + timeout

    def check() -> None:
        if time.monotonic() > end:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")

    return check


async def eventually(
    predicate: Predicate,
    what: str,
    timeout: float = 10.0,
    interval: float = 0.02,
    describe: Describe | None = None,
) -> None:
    """Return once `predicate()` holds, polling every `interval` seconds without blocking the loop."""
    expired = _deadline(what, timeout, describe)
    while not predicate():
        expired()
        await asyncio.sleep(interval)


async def eventually_value(
    check: Callable[[], Awaitable[T]],
    what: str,
    timeout: float = 10.0,
    interval: float = 0.05,
    describe: Describe | None = None,
) -> T:
    """Await `check()` every `interval` seconds until its answer is truthy, and return it."""
    expired = _deadline(what, timeout, describe)
    while not (value := await check()):
        expired()
        await asyncio.sleep(interval)
    return value


def wait_until(
    predicate: Predicate,
    what: str,
    timeout: float = 10.0,
    interval: float = 0.05,
    describe: Describe | None = None,
) -> None:
    """Return once `predicate()` holds, polling every `interval` seconds on this thread."""
    expired = _deadline(what, timeout, describe)
    while not predicate():
        expired()
        time.sleep(interval)

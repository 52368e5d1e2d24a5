"""`run`: a coroutine run to completion within a timeout, for the tests still written as sync
functions around asyncio code (the others are async tests, see pyproject's asyncio_mode)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(coro: Coroutine[Any, Any, None], timeout: float = 15.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))

"""The master's base URL as it is now, for everything that follows a leader across failovers.

Whoever learns that the leader moved (a ZooKeeper watch in a worker, the election in a follower
master) calls `move`; readers take `url` for each call, wake from their back-off when it moves
and drop a stream to the old leader at once (a deposed or hung one may keep it open without
sending anything), as Mantis' clients follow the leader's MasterDescription
(io.mantisrx.server.core.master.MasterMonitor). Only touched on the asyncio loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import structlog

log = structlog.get_logger()

T = TypeVar("T")


class MasterLocation:
    """The master's base URL as it is now; `move` changes it (on the loop)."""

    def __init__(self, url: str) -> None:
        self._url = url.rstrip("/")
        self._moved: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        return self._url

    def move(self, url: str) -> None:
        """The master is now at `url`: later calls go there, and waiters wake up."""
        url = url.rstrip("/")
        if url == self._url:
            return
        log.info("master_moved", old=self._url, new=url)
        self._url = url
        moved, self._moved = self._moved, None
        if moved is not None and not moved.done():
            moved.set_result(None)

    def _next_move(self) -> asyncio.Future[None]:
        if self._moved is None:
            self._moved = asyncio.get_running_loop().create_future()
        return self._moved

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less if the master moves meanwhile (a back-off before the next
        attempt: the new master is worth trying at once)."""
        await asyncio.wait((self._next_move(),), timeout=seconds)

    async def until_moved(self, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        """`stream`'s items until it ends or the master moves; then `stream` is closed."""
        moved = self._next_move()
        step: asyncio.Future[T] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(stream))
                await asyncio.wait((step, moved), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    log.info("master_stream_moved", url=self._url)
                    return
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                step = None
                yield item
        finally:
            if step is not None and not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

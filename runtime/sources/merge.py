"""Many producers, one stream of batches: the plumbing of sources that read several inputs.

A ``Merger`` runs producer coroutines as tasks that put batches on one bounded queue (a full
queue stops them reading, which is the backpressure), and hands the batches to one consumer.
A producer that fails fails the consumer's next ``get``; ``close`` cancels every producer and
waits for them, so nothing outlives the source (no task, no socket). ``MergedSource`` merges
whole sources that way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from runtime.context import Context
from runtime.job import Source

_WAKE: list[Any] = []
T = TypeVar("T")


@contextlib.asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """``contextlib.aclosing`` for any async iterator: ``aclose()`` it if it has one (an
    async generator's ``finally`` then runs now, not whenever it is collected)."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class Merger:
    """Producer tasks feeding one consumer; see the module docstring."""

    def __init__(self, max_batches: int = 64) -> None:
        self._queue: asyncio.Queue[list[Any]] = asyncio.Queue(max_batches)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]:
        """Run `coro` as a producer; its failure ends the merged stream."""
        if self._closed:
            coro.close()
            raise RuntimeError("merger closed")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def put(self, batch: list[Any]) -> None:
        await self._queue.put(batch)

    async def get(self) -> list[Any] | None:
        """The next batch, or None once every producer has ended and all is taken; raises
        what a producer raised."""
        while True:
            if self._failure is not None:
                raise self._failure
            if not self._tasks and self._queue.empty():
                return None
            batch = await self._queue.get()
            if batch is not _WAKE:
                return batch

    async def pump(self, stream: AsyncIterator[list[Any]]) -> None:
        """Put every batch of `stream` (a producer's body); the stream is closed when the
        producer ends or is cancelled."""
        async with closing(stream):
            async for batch in stream:
                await self._queue.put(batch)

    async def close(self) -> None:
        """Cancel every producer and wait until they are gone."""
        self._closed = True
        await cancel(self._tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and self._failure is None:
            self._failure = task.exception()
        if self._failure is not None or not self._tasks:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_WAKE)  # a consumer waiting on an empty queue wakes


async def cancel(tasks: set[asyncio.Task[None]] | Sequence[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait for them to finish (their own errors are not raised here)."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


@dataclass(frozen=True)
class MergedSource:
    """The batches of several sources, interleaved as they come."""

    sources: Sequence[Source]
    max_batches: int = 64

    async def batches(self, context: Context) -> AsyncIterator[list[Any]]:
        merger = Merger(self.max_batches)
        try:
            for n, source in enumerate(self.sources):
                merger.spawn(merger.pump(source.batches(context)), name=f"merged-source-{n}")
            while (batch := await merger.get()) is not None:
                yield batch
        finally:
            await merger.close()

"""One long-lived RecordIO event stream to a subscriber (a framework or an agent).

The master puts events on the stream from synchronous code (`send`); the HTTP handler that
owns the subscription connection drains it into the chunked response (`pump`). Everything
queued at once is written as one chunk, so a burst of events costs one write.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from mesoslite.recordio import encode_json


class EventStream:
    def __init__(self, stream_id: str | None = None) -> None:
        self.id = stream_id or str(uuid.uuid4())
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event; a closed stream drops it (the subscriber is gone)."""
        if not self.closed:
            self._queue.put_nowait(encode_json(event))

    def close(self) -> None:
        """End the stream after the events already queued."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)  # the end marker

    async def pump(self, response: web.StreamResponse) -> None:
        """Write queued events until `close` or until the connection breaks (ConnectionError)."""
        queue = self._queue
        while True:
            first = await queue.get()
            chunks: list[bytes] = []
            item = first
            while item is not None:
                chunks.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            done = item is None
            if chunks:
                await response.write(b"".join(chunks))
            if done:
                return

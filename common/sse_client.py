"""One connection to a Server-Sent Events stream over aiohttp: the data payloads it delivers.

Every asynchronous reader uses it: a worker's SSE and job sources and its discovery stream,
the master's job output reading sink workers. Reconnecting is the caller's (each has its own
idea of when to give up), with common.backoff for the delays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp

from common.sse import SseParser

CONNECT_TIMEOUT = 5.0


class HttpStatusError(Exception):
    """An HTTP stream answered with something other than 200."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"GET {url}: HTTP {status}: {body}")
        self.url = url
        self.status = status
        self.body = body


RETRYABLE = (aiohttp.ClientError, OSError, TimeoutError, HttpStatusError)
"""What a lost or refused connection raises: worth another attempt after a back-off."""


def describe(error: BaseException) -> str:
    """An error for a log line: its type and message."""
    return (
        f"{type(error).__name__}: {error}" if not isinstance(error, HttpStatusError) else str(error)
    )


async def sse_payloads(
    session: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str] | None = None,
    read_timeout: float | None = None,
) -> AsyncIterator[list[bytes]]:
    """The data payloads completed by each read, until the stream ends.

    Raises HttpStatusError for an answer other than 200, aiohttp/OS errors as they come. The
    connection is closed when the caller stops iterating (``aclose()``) or is cancelled.
    """
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT, sock_read=read_timeout
    )
    async with session.get(url, params=params, timeout=timeout) as resp:
        if resp.status != 200:
            body = ""
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
                body = (await asyncio.wait_for(resp.content.read(1024), 2)).decode()
            raise HttpStatusError(str(resp.url), resp.status, body.strip())
        parser = SseParser()
        async for chunk in resp.content.iter_any():
            payloads = parser.feed(chunk)
            if payloads:
                yield payloads

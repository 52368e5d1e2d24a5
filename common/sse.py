"""Server-Sent Events on the wire: the one encoder and the one parser every process uses.

The format is the WHATWG "Server-sent events" one
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
an event is one or more ``data:`` lines ended by a blank line. As Mantis' push servers do
(``ServerSentEventRequestHandler``), every event is sent as data only, no ``id:`` or
``event:`` field; readers skip those fields and ``:`` comments. Heartbeats are events too:
a sink's ``data: ping`` and the master's ``HB_JobId`` objects (Mantis'
``JobSchedulingInfo.HB_JobId``), which readers drop.

Only standard library and orjson here, so that the ``mantis`` CLI can parse streams without
loading aiohttp (common.sse_client reads a stream with aiohttp, common.sse_sink serves one).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-store, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "X-Accel-Buffering": "no",  # a proxy such as nginx must pass each event on at once
}
"""The response headers of every SSE stream. No ``Access-Control-Allow-Origin``, although
Mantis' push server sends ``*``: the master serves job output with these too, and it answers
no cross-origin read (adapters/http/security.py)."""

PING = b"ping"
PING_FRAME = b"data: ping\n\n"
"""A sink's heartbeat (Mantis' ``enablePings`` / ``heartbeatSec``)."""
HB_JOB_ID = "HB_JobId"
"""The job id of the master's heartbeat objects on its discovery streams."""


def encode_data(event: Any) -> bytes:
    """One event as SSE data: bytes pass through, a str is UTF-8, anything else is JSON
    (a subclass of str too: `frame_all` tells a str by its exact type, that is faster).

    A multi-line bytes or str event becomes several ``data:`` lines of one SSE event; its
    line breaks (``\\r\\n``, ``\\r`` or ``\\n``) come back as ``\\n``.
    """
    if event.__class__ is str:
        data = event.encode()
    elif isinstance(event, bytes):
        data = event
    else:
        return orjson.dumps(event)  # JSON text never holds a raw line break
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\n" in data:  # one data: line per line, as the format wants
        data = data.replace(b"\n", b"\ndata: ")
    return data


def frame(event: Any) -> bytes:
    """One event as one SSE frame, ``data: ...\\n\\n`` (see `encode_data`)."""
    return b"data: " + encode_data(event) + b"\n\n"


def frame_all(events: Sequence[Any]) -> list[bytes]:
    """`frame` of each event, ~100 ns an event faster than calling it for each: JSON values
    are framed inline, and at once, so that orjson's output is freed at once (keeping 1,024
    of its results alive made encoding 4-6x slower)."""
    dumps = orjson.dumps
    try:
        return [frame(e) if e.__class__ is str else b"data: " + dumps(e) + b"\n\n" for e in events]
    except TypeError:  # bytes events among them
        return [frame(e) for e in events]


class SseParser:
    """Incremental parsing: bytes in as they are read, the data of each completed event out.

    Multi-line data is joined with ``\\n``; comments and fields other than ``data`` are
    ignored; lines may end in ``\\n`` or ``\\r\\n`` (a lone ``\\r``, which the format also
    allows, is not a line end here: no server of the project or of Mantis sends one). An
    unfinished event waits, whole, for the blank line that ends it; at the end of a stream it
    is dropped, as the format says.
    """

    __slots__ = ("_rest", "_tail")

    def __init__(self) -> None:
        self._rest: list[bytes] = []  # the reads of an event not yet ended
        self._tail = b""  # their last two bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event `chunk` completes, in order."""
        rest = self._rest
        if rest:
            probe = self._tail + chunk
            rest.append(chunk)
            if b"\n\n" not in probe and b"\n\r\n" not in probe:
                self._tail = probe[-2:]  # a big event is not re-scanned on every read
                return []
            text = b"".join(rest)
        else:
            text = chunk
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n")
        blocks = text.split(b"\n\n")
        last = blocks.pop()
        self._rest = [last] if last else []
        self._tail = last[-2:]
        out: list[bytes] = []
        for block in blocks:
            if block.startswith(b"data: ") and block.find(b"\n") < 0:
                out.append(block[6:])  # the usual event: one data line
                continue
            data = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    value = line[5:]
                    data.append(value[1:] if value[:1] == b" " else value)
            if data:
                out.append(b"\n".join(data))
        return out


DEFAULT_DELIMITER = b"$$$"
"""Mantis' default ``mantis.CompressionDelimiter``."""


def pack_binary(items: list[bytes], delimiter: bytes = DEFAULT_DELIMITER) -> bytes:
    """Mantis' compressed binary data (``format=binary``): base64 of the compressed events
    joined by `delimiter`. Mantis compresses with snappy; zlib is in the standard library."""
    return base64.b64encode(zlib.compress(delimiter.join(items), 1))


def unpack_binary(data: bytes, delimiter: bytes = DEFAULT_DELIMITER) -> list[bytes]:
    """The events of `pack_binary`'s data; ValueError if it does not unpack."""
    try:
        return zlib.decompress(base64.b64decode(data, validate=True)).split(delimiter)
    except (binascii.Error, zlib.error) as e:
        raise ValueError(f"not compressed binary SSE data: {e}") from None

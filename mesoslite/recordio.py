"""RecordIO framing of Mesos event streams: `<decimal length>\\n<that many bytes>`, repeated.

The framing sits above HTTP chunking (https://mesos.apache.org/documentation/latest/recordio/):
a record may arrive split over several chunks, or several records in one, so the decoder is
incremental.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

MAX_RECORD = 64 * 1024 * 1024  # a length beyond this is garbage, not a record
_MAX_DIGITS = len(str(MAX_RECORD))


class RecordIOError(ValueError):
    """The stream does not follow the RecordIO grammar."""


def encode(payload: bytes) -> bytes:
    """One record."""
    return b"%d\n%s" % (len(payload), payload)


def encode_json(message: Any) -> bytes:
    """One record holding `message` as JSON."""
    return encode(orjson.dumps(message))


class Decoder:
    """Feed bytes as they arrive; get back every record completed so far."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        return list(self._records())

    def _records(self) -> Iterator[bytes]:
        buf = self._buffer
        pos = 0
        while True:
            newline = buf.find(b"\n", pos, pos + _MAX_DIGITS + 1)
            if newline < 0:
                if len(buf) - pos > _MAX_DIGITS:
                    raise RecordIOError(f"no record length in {bytes(buf[pos : pos + 20])!r}")
                break
            digits = bytes(buf[pos:newline])
            if not digits.isdigit():
                raise RecordIOError(f"record length {digits[:20]!r} is not a decimal number")
            size = int(digits)
            if size == 0 or size > MAX_RECORD:
                raise RecordIOError(f"record length {size} out of range 1..{MAX_RECORD}")
            end = newline + 1 + size
            if end > len(buf):
                break
            yield bytes(buf[newline + 1 : end])
            pos = end
        del buf[:pos]

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a record."""
        return len(self._buffer)


def decode_all(data: bytes) -> list[Any]:
    """Every record of a complete stream, parsed as JSON (for tests and tools)."""
    decoder = Decoder()
    records = decoder.feed(data)
    if decoder.pending:
        raise RecordIOError(f"{decoder.pending} bytes of an unfinished record at the end")
    return [orjson.loads(r) for r in records]

"""The record framing shared by segments, snapshots and archive files, and its scanner.

A record is `[u32 head][u32 crc][payload]`, little-endian. The head's low 31 bits are the
payload length; its top bit marks the last record of a batch (one `append` or `commit` call),
so a batch survives a crash whole or not at all. The CRC-32 covers the head and the payload,
so a damaged length is caught too. Zero-filled space (a file extended but never written)
reads as a record of length 0, which is never valid.

`scan` reads up to the first damage; `pieces` reads past damage, resynchronising on the next
valid record, for a recovery that keeps what follows a damaged batch.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

HEADER = struct.Struct("<II")
HEAD = struct.Struct("<I")
BATCH_END = 1 << 31
MAX_PAYLOAD = 16 << 20  # far above any event; keeps a scan over garbage cheap


def frame(payloads: Iterable[bytes]) -> bytes:
    """One batch: every payload framed, the last one marked as the batch's end.

    Each payload is copied out as it comes: orjson's bytes keep a buffer of 4 KiB or more
    whatever their length, so holding a snapshot's worth of them took GBs."""
    out = bytearray()
    last: bytes | None = None
    for payload in payloads:
        if last is not None:
            _put(out, last, 0)
        last = payload
    if last is not None:
        _put(out, last, BATCH_END)
    return bytes(out)


def _put(out: bytearray, payload: bytes, end: int) -> None:
    if not 0 < len(payload) <= MAX_PAYLOAD:
        raise ValueError(f"a record payload must be 1..{MAX_PAYLOAD} bytes, got {len(payload)}")
    head = len(payload) | end
    out += HEADER.pack(head, zlib.crc32(payload, zlib.crc32(HEAD.pack(head))))
    out += payload


def _record_at(buf: bytes | memoryview, offset: int) -> tuple[int, bool] | None:
    """(end offset, batch end) of a valid record at `offset`, else None."""
    if offset + HEADER.size > len(buf):
        return None
    head, crc = HEADER.unpack_from(buf, offset)
    length = head & ~BATCH_END
    end = offset + HEADER.size + length
    if not 0 < length <= MAX_PAYLOAD or end > len(buf):
        return None
    if zlib.crc32(buf[offset + HEADER.size : end], zlib.crc32(HEAD.pack(head))) != crc:
        return None
    return end, bool(head & BATCH_END)


@dataclass(frozen=True, slots=True)
class Scan:
    """What a buffer of records holds.

    `complete` is the end of the last whole batch and `records` the number of records before
    it; `damage` is the offset of the first record that is not valid (None if every record
    is), and `valid_after` whether a valid record starts anywhere after that point.
    """

    complete: int
    records: int
    damage: int | None
    valid_after: bool
    size: int

    @property
    def clean(self) -> bool:
        return self.damage is None and self.complete == self.size


def scan(buf: bytes, starts_with: bytes = b"") -> Scan:
    """Read records from the start; `starts_with`, a prefix every payload has, makes the
    search for valid records after a damaged one fast (a `find` instead of every offset)."""
    offset = complete = records = pending = 0
    while offset < len(buf):
        found = _record_at(buf, offset)
        if found is None:
            after = _any_record_after(buf, offset, starts_with)
            return Scan(complete, records, offset, after, len(buf))
        offset, batch_end = found
        pending += 1
        if batch_end:
            complete, records, pending = offset, records + pending, 0
    return Scan(complete, records, None, False, len(buf))


def _any_record_after(buf: bytes, damage: int, starts_with: bytes) -> bool:
    return _next_record(buf, damage, starts_with) is not None


def _next_record(buf: bytes, damage: int, starts_with: bytes) -> int | None:
    """The offset of the first valid record after `damage`, if any."""
    if not starts_with:
        return next((o for o in range(damage + 1, len(buf)) if _record_at(buf, o)), None)
    at = buf.find(starts_with, damage + 1 + HEADER.size)
    while at >= 0:
        if _record_at(buf, at - HEADER.size) is not None:
            return at - HEADER.size
        at = buf.find(starts_with, at + 1)
    return None


@dataclass(frozen=True, slots=True)
class Gap:
    """Bytes between valid records; `records` is how many records they were, when their
    heads still lead from one to the next exactly to the end (else None)."""

    start: int
    end: int
    records: int | None


@dataclass(frozen=True, slots=True)
class Piece:
    """A batch as read past damage: bytes `start`..`end`, the payloads (start, end) of its
    valid records, and the gaps of damage inside it (none: a sound batch). A piece that
    runs to the end of the buffer without a batch end is `unfinished`."""

    start: int
    end: int
    payloads: tuple[tuple[int, int], ...]
    gaps: tuple[Gap, ...] = ()
    unfinished: bool = False

    @property
    def sound(self) -> bool:
        return not self.gaps and not self.unfinished


def pieces(buf: bytes, starts_with: bytes = b"") -> list[Piece]:
    """Every batch in `buf`, reading on past damage.

    A gap of damage belongs to the batch it interrupts, which is then damaged whole: the
    batch goes on to the next batch end after the gap, unless the damaged records' heads
    show that the last of them ended the batch (a head whose length leads exactly to the
    next valid record is taken as sound; its flag is read as the one that makes the CRC
    match, if flipping it does). When that cannot be told, the damaged batch takes in the
    batch after the gap too: whole batches only, never the tail of a split one.
    """
    found: list[Piece] = []
    offset = start = 0
    payloads_: list[tuple[int, int]] = []
    gaps: list[Gap] = []
    while offset < len(buf):
        record = _record_at(buf, offset)
        if record is None:
            after = _next_record(buf, offset, starts_with)
            stop = len(buf) if after is None else after
            count, ended = _walk(buf, offset, stop)
            gaps.append(Gap(offset, stop, count))
            offset = stop
            if not ended or stop == len(buf):
                continue
        else:
            end, batch_end = record
            payloads_.append((offset + HEADER.size, end))
            offset = end
            if not batch_end:
                continue
        found.append(Piece(start, offset, tuple(payloads_), tuple(gaps)))
        start, payloads_, gaps = offset, [], []
    if payloads_ or gaps:
        found.append(Piece(start, len(buf), tuple(payloads_), tuple(gaps), unfinished=True))
    return found


def _walk(buf: bytes, start: int, stop: int) -> tuple[int | None, bool]:
    """(records, whether the last ended a batch) if the heads from `start` lead to `stop`."""
    offset, count, ended = start, 0, False
    while offset < stop:
        if offset + HEADER.size > stop:
            return None, False
        head, crc = HEADER.unpack_from(buf, offset)
        end = offset + HEADER.size + (head & ~BATCH_END)
        if not offset + HEADER.size < end <= stop:
            return None, False
        payload = buf[offset + HEADER.size : end]
        ended = bool(head & BATCH_END)
        if zlib.crc32(payload, zlib.crc32(HEAD.pack(head ^ BATCH_END))) == crc:
            ended = not ended  # only the flag was damaged
        offset, count = end, count + 1
    return count, ended


def payloads(buf: bytes | memoryview, end: int) -> Iterator[memoryview]:
    """The payloads of the (already scanned) records in `buf[:end]`."""
    view = memoryview(buf)
    offset = 0
    while offset < end:
        head, _ = HEADER.unpack_from(view, offset)
        start = offset + HEADER.size
        offset = start + (head & ~BATCH_END)
        yield view[start:offset]

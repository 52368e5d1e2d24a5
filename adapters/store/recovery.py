"""Reading a damaged log past its damage: which batches a recovery keeps, and what it drops.

`salvage` reads the segments from the first damaged one on as whole batches
(`records.pieces`). Batches before the first damage were acknowledged and read fine: they
are kept. A damaged batch is dropped whole. A sound batch after a damaged one is kept only
if it still applies (`ControlPlane.apply_persisted`, exceptions caught) on top of what was
kept so far: an event that names a job, worker or cluster whose creation was dropped does
not apply, so it is dropped too. Every drop is reported: the file, the byte range, the
records and what they held (`RecoveryReport`), for a person to judge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.store.codec import PAYLOAD_PREFIX, CodecError, decode
from adapters.store.records import Gap, Piece, pieces
from core.control import ControlPlane
from core.events import Event

_TYPE = re.compile(rb'"type":"([A-Za-z]{1,40})"')
_ID = re.compile(rb'"(worker_id|job_id|name)":"([^"\\]{1,200})"')


@dataclass(frozen=True, slots=True)
class Dropped:
    """One batch (or damaged run of bytes taken as one) that a recovery left out.

    `records` counts the records in it; a run of damaged bytes whose record boundaries
    cannot be told counts as one. `events` says what they held, as far as it can be read.
    """

    path: Path
    start: int
    end: int
    records: int
    reason: str
    events: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"{self.path.name} bytes {self.start}-{self.end}: {self.records} record(s), "
            f"{self.reason}: {', '.join(self.events)}"
        )


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening a damaged store with recovery did; `str()` is for a person."""

    dropped: tuple[Dropped, ...] = ()
    set_aside: tuple[Path, ...] = ()  # copies or damaged files, in quarantine/
    snapshot: int | None = None  # the snapshot that now holds what was kept

    @property
    def batches_dropped(self) -> int:
        return len(self.dropped)

    @property
    def records_dropped(self) -> int:
        return sum(d.records for d in self.dropped)

    def lines(self) -> list[str]:
        head = (
            f"recovered the store: {self.batches_dropped} batch(es) with "
            f"{self.records_dropped} record(s) dropped"
        )
        if self.snapshot is not None:
            head += f"; what was kept is in snapshot {self.snapshot}"
        return [
            head,
            *(f"  dropped {d}" for d in self.dropped),
            *(f"  set aside {p}" for p in self.set_aside),
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())


def describe(event: Event) -> str:
    """`WorkerLaunched alpha-1-worker-0-1`: the event's type and whom it is about."""
    for field in ("worker_id", "job_id", "name"):
        value = getattr(event, field, None)
        if isinstance(value, str):
            return f"{type(event).__name__} {value}"
    definition = getattr(event, "definition", None)
    return f"{type(event).__name__} {getattr(definition, 'name', '')}".rstrip()


def _describe_gap(buf: bytes, gap: Gap) -> str:
    """Unreadable bytes, with what they look like (unchecked: they failed their CRC)."""
    raw = buf[gap.start : gap.end]
    kinds = [m.group(1).decode() for m in _TYPE.finditer(raw)]
    ids = [m.group(2).decode(errors="replace") for m in _ID.finditer(raw)]
    looks = " ".join(kinds[:1] + ids[:1])
    return f"unreadable bytes {gap.start}-{gap.end}" + (f" (looks like {looks})" if looks else "")


def _dropped(path: Path, buf: bytes, piece: Piece, reason: str) -> Dropped:
    parts: list[tuple[int, str]] = []
    for start, end in piece.payloads:
        try:
            parts.append((start, describe(decode(buf[start:end]))))
        except CodecError:
            parts.append((start, f"undecodable record at byte {start}"))
    parts += [(gap.start, _describe_gap(buf, gap)) for gap in piece.gaps]
    records = len(piece.payloads) + sum(gap.records or 1 for gap in piece.gaps)
    return Dropped(
        path, piece.start, piece.end, records, reason, tuple(text for _, text in sorted(parts))
    )


def salvage(
    before: list[Event], segments: Sequence[tuple[Path, bytes]]
) -> tuple[list[Event], list[Dropped]]:
    """The events to keep and what was dropped: `before` (the snapshot and the sound
    segments before the damage) is kept; `segments` (path, bytes) are read past damage."""
    kept = list(before)
    dropped: list[Dropped] = []
    plane: ControlPlane | None = None
    unchecked = ""  # why batches after the damage cannot be checked, if they cannot
    damaged = False
    for n, (path, buf) in enumerate(segments):
        for piece in pieces(buf, PAYLOAD_PREFIX):
            if not piece.sound:
                damaged = True
                if piece.gaps:
                    reason = "damaged"
                elif n == len(segments) - 1:
                    reason = "unfinished batch at the end of the log (never acknowledged)"
                else:
                    reason = "unfinished batch at the end of a segment"
                dropped.append(_dropped(path, buf, piece, reason))
                continue
            try:
                events = [decode(buf[start:end]) for start, end in piece.payloads]
            except CodecError as e:
                damaged = True
                dropped.append(_dropped(path, buf, piece, f"does not decode ({e})"))
                continue
            if not damaged:
                kept += events
                continue
            if plane is None and not unchecked:
                try:
                    plane = ControlPlane.replay(kept)
                except Exception as e:  # noqa: BLE001 - any failure means: cannot check
                    unchecked = f"the log before the damage does not replay ({e!r})"
            if plane is None:
                dropped.append(_dropped(path, buf, piece, f"cannot be checked: {unchecked}"))
                continue
            try:
                plane.apply_persisted(events)
            except Exception as e:  # noqa: BLE001 - any failure means: inconsistent
                plane = ControlPlane.replay(kept)  # undo what the batch applied in part
                reason = f"does not apply without the dropped batches ({type(e).__name__}: {e})"
                dropped.append(_dropped(path, buf, piece, reason))
                continue
            kept += events
    return kept, dropped

"""Recovery past damage: the batches after a damaged one are kept when they still apply.

Logs are seeded ControlPlane runs appended batch by batch into small segments, so a byte in
a given batch can be damaged on purpose; what a recovery keeps is checked against the run.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from adapters.store.log import EventLog, StoreCorrupted, segment_name
from adapters.store.records import BATCH_END, HEADER, Gap, Piece, frame, pieces
from adapters.store.recovery import describe
from core.control import ControlPlane
from core.events import Event, JobAccepted, WorkerAccepted
from tests.contracts.store import control_plane_batches, without

OPTIONS: dict[str, int | None] = {"segment_bytes": 4096, "snapshot_every": None}


def flip(path: Path, offset: int, bit: int = 0x40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= bit
    path.write_bytes(bytes(data))


def written(folder: Path, batches: list[list[Event]]) -> list[tuple[Path, Piece]]:
    """Append the batches; then where each one lies: (segment, its piece), in batch order."""
    with EventLog(folder, **OPTIONS) as store:  # type: ignore[arg-type]
        for batch in batches:
            store.append(batch)
    where = [
        (path, piece)
        for path in sorted(folder.glob("segment-*.log"))
        for piece in pieces(path.read_bytes())
    ]
    assert len(where) == len(batches)
    return where


def kept_by_rule(batches: list[list[Event]], damaged: int) -> list[int]:
    """The batches a recovery must keep: all before the damaged one; after it, those that
    apply on top of what was kept (computed here from the run, not from the files)."""
    kept = list(range(damaged))
    for n in range(damaged + 1, len(batches)):
        plane = ControlPlane.replay(e for k in kept for e in batches[k])
        try:
            plane.apply_persisted(batches[n])
        except Exception:  # noqa: BLE001, S112 - the batch does not apply: dropped
            continue
        kept.append(n)
    return kept


def events_of(batches: list[list[Event]], chosen: list[int]) -> list[Event]:
    return [e for n in chosen for e in batches[n]]


# ---------------------------------------------------------------- reading past damage


def test_pieces_resynchronise_after_a_damaged_record_on_whole_batches() -> None:
    a, b, c, d = (b'{"type":"A%d"}' % n for n in range(4))
    data = frame([a]) + frame([b, c]) + frame([d])
    b_at = len(frame([a]))
    c_at = b_at + HEADER.size + len(b)
    damaged = bytearray(data)
    damaged[b_at + HEADER.size + 2] ^= 0x40  # inside b's payload
    found = pieces(bytes(damaged), b'{"type":"')
    assert [p.sound for p in found] == [True, False, True]
    assert found[1] == Piece(
        b_at,
        c_at + HEADER.size + len(c),
        ((c_at + HEADER.size, c_at + HEADER.size + len(c)),),
        (Gap(b_at, c_at, 1),),
    )


def test_a_damaged_batch_end_flag_is_read_back_from_the_crc() -> None:
    a, b, c = b'{"type":"A"}', b'{"type":"B"}', b'{"type":"C"}'
    data = bytearray(frame([a]) + frame([b]) + frame([c]))
    data[3] ^= BATCH_END >> 24  # a's batch end flag: a was a whole batch
    found = pieces(bytes(data))
    assert [(p.start, p.sound) for p in found] == [
        (0, False),
        (len(frame([a])), True),
        (2 * len(frame([a])), True),
    ]


def test_a_damaged_length_drops_the_next_batch_too_never_half_of_one() -> None:
    """Which record ended the damaged batch cannot be told: whole batches only."""
    a, b, c, d = b'{"type":"A"}', b'{"type":"B"}', b'{"type":"C"}', b'{"type":"D"}'
    data = bytearray(frame([a]) + frame([b, c]) + frame([d]))
    data[0] ^= 0x05  # a's length
    found = pieces(bytes(data))
    assert [p.sound for p in found] == [False, True]
    assert found[0].gaps == (Gap(0, len(frame([a])), None),) and len(found[0].payloads) == 2


# ---------------------------------------------------------------- recovery


def test_recovery_keeps_every_batch_but_the_damaged_one_and_reports_it(tmp_path: Path) -> None:
    _, batches = control_plane_batches(seed=5, steps=400)
    where = written(tmp_path, batches)
    # A batch in the middle, of several events, that no later batch depends on.
    damaged = next(
        n
        for n in range(len(batches) // 2, len(batches))
        if len(batches[n]) > 1
        and kept_by_rule(batches, n) == [k for k in range(len(batches)) if k != n]
    )
    path, piece = where[damaged]
    assert sum(1 for p, _ in where if p == path) > 2, "the batch should be amid others"
    flip(path, piece.payloads[0][1] - 2)
    original = path.read_bytes()
    with pytest.raises(StoreCorrupted, match="followed by valid records"):
        EventLog(tmp_path, **OPTIONS)  # type: ignore[arg-type]
    with EventLog(tmp_path, recover_from_snapshot=True, **OPTIONS) as store:  # type: ignore[arg-type]
        loaded = store.load()
        report = store.recovery
    assert loaded == events_of(batches, [n for n in range(len(batches)) if n != damaged])
    assert (
        report is not None
        and len(report.dropped) == 1
        and report.records_dropped == len(batches[damaged])
    )
    dropped = report.dropped[0]
    assert (dropped.path, dropped.start, dropped.end) == (path, piece.start, piece.end)
    assert dropped.reason == "damaged"
    first = describe(batches[damaged][0])
    assert f"unreadable bytes {piece.start}-{piece.payloads[0][1]} (looks like" in dropped.events[0]
    assert first.split()[0] in dropped.events[0]  # its type, read from the damaged bytes
    assert list(dropped.events[1:]) == [describe(e) for e in batches[damaged][1:]]
    text = str(report)
    assert f"{path.name} bytes {piece.start}-{piece.end}: {len(batches[damaged])} record(s)" in text
    assert (tmp_path / "quarantine" / path.name).read_bytes() == original
    # It opens normally now, takes appends, and keeps them.
    with EventLog(tmp_path, **OPTIONS) as store:  # type: ignore[arg-type]
        assert store.recovery is None and store.load() == loaded
        store.append(batches[damaged])
    with EventLog(tmp_path, **OPTIONS) as store:  # type: ignore[arg-type]
        assert store.load() == loaded + batches[damaged]


def test_later_batches_that_no_longer_apply_are_dropped_and_reported(tmp_path: Path) -> None:
    _, batches = control_plane_batches(seed=5, steps=400)
    where = written(tmp_path, batches)
    # A batch that accepts workers: their launches and status changes come later.
    damaged = next(
        n
        for n in range(len(batches) // 3, len(batches))
        if any(isinstance(e, WorkerAccepted) for e in batches[n])
        and any(isinstance(e, JobAccepted) for e in batches[n])
    )
    rule = kept_by_rule(batches, damaged)
    inconsistent = [n for n in range(damaged + 1, len(batches)) if n not in rule]
    assert inconsistent, "the chosen batch should have dependants"
    path, piece = where[damaged]
    flip(path, piece.payloads[-1][0] + 3)
    with EventLog(tmp_path, recover_from_snapshot=True, **OPTIONS) as store:  # type: ignore[arg-type]
        loaded = store.load()
        report = store.recovery
    assert loaded == events_of(batches, rule)
    assert report is not None
    assert [(d.path, d.start) for d in report.dropped] == [
        (where[n][0], where[n][1].start) for n in [damaged, *inconsistent]
    ]
    assert report.records_dropped == sum(len(batches[n]) for n in [damaged, *inconsistent])
    job = next(e.job_id for e in batches[damaged] if isinstance(e, JobAccepted))
    for d, n in zip(report.dropped[1:], inconsistent, strict=True):
        assert d.reason.startswith("does not apply without the dropped batches (KeyError")
        assert list(d.events) == [describe(e) for e in batches[n]]
    assert any(job in text for d in report.dropped[1:] for text in d.events)


def test_damage_in_a_middle_segment_keeps_the_snapshot_and_the_segments_after(
    tmp_path: Path,
) -> None:
    _, batches = control_plane_batches(seed=9, steps=300)
    half = len(batches) // 2
    with EventLog(tmp_path, **OPTIONS) as store:  # type: ignore[arg-type]
        for batch in batches[:half]:
            store.append(batch)
        store.compact()  # a snapshot in use, with archived jobs
        archived = set(store.archived_job_ids())
        for batch in batches[half:]:
            store.append(batch)
    files = sorted(tmp_path.glob("segment-*.log"))
    where = [(path, piece) for path in files for piece in pieces(path.read_bytes())]
    assert len(where) == len(batches) - half  # the segments after the snapshot
    middle = files[len(files) // 2]
    assert middle.name != segment_name(0) and middle != files[-1]
    flip(middle, middle.stat().st_size - 3)  # the segment's last batch
    with EventLog(tmp_path, recover_from_snapshot=True, **OPTIONS) as store:  # type: ignore[arg-type]
        state = ControlPlane.replay(store.load()).snapshot()
        report = store.recovery
        assert set(store.archived_job_ids()) == archived
    assert report is not None and report.dropped[0].path == middle
    assert report.dropped[0].end == middle.stat().st_size
    dropped = {(d.path, d.start) for d in report.dropped}
    kept = [half + n for n, (path, piece) in enumerate(where) if (path, piece.start) not in dropped]
    damaged = half + next(
        n
        for n, (path, piece) in enumerate(where)
        if (path, piece.start) == (middle, report.dropped[0].start)
    )
    assert kept == kept_by_rule(batches, damaged)[half:]
    assert any(where[n - half][0] > middle for n in kept), "later segments' batches are kept"
    expected = ControlPlane.replay(events_of(batches, list(range(half)) + kept))
    assert state == without(expected.snapshot(), archived)


def test_a_flipped_byte_anywhere_is_refused_or_recovered_to_whole_batches(tmp_path: Path) -> None:
    """Seeded flips over a log of several segments: opening refuses, or cuts the last batch;
    asked to recover, it always opens with the run's batches minus exactly the dropped ones:
    one damaged batch (or two, when its end cannot be told) and later ones that do not apply."""
    _, batches = control_plane_batches(seed=11, steps=150)
    where = written(tmp_path / "clean", batches)
    clean = {p.name: p.read_bytes() for p in sorted((tmp_path / "clean").glob("segment-*.log"))}
    assert len(clean) >= 3
    rng = random.Random(11)
    refused = resynchronised = 0
    for trial in range(60):
        name = rng.choice(sorted(clean))
        offset = rng.randrange(len(clean[name]))
        for recover in (False, True):
            folder = tmp_path / f"t{trial}-{recover}"
            folder.mkdir()
            for file, data in clean.items():
                (folder / file).write_bytes(data)
            flip(folder / name, offset)
            try:
                with EventLog(folder, recover_from_snapshot=recover, **OPTIONS) as store:  # type: ignore[arg-type]
                    loaded, report = store.load(), store.recovery
            except StoreCorrupted:
                assert not recover
                refused += 1
                continue
            if report is None:  # a torn tail: the last batch is cut
                assert loaded == events_of(batches, list(range(len(batches) - 1))), trial
                continue
            kept = [
                n
                for n, (path, piece) in enumerate(where)
                if not any(
                    d.path.name == path.name and d.start <= piece.start < d.end
                    for d in report.dropped
                )
            ]
            assert loaded == events_of(batches, kept), f"trial {trial}: not whole batches"
            hit = [d for d in report.dropped if d.path.name == name and d.start <= offset < d.end]
            assert len(hit) == 1 and hit[0].reason == "damaged", f"trial {trial}"
            first = min(n for n in range(len(batches)) if n not in kept)
            assert kept == kept_by_rule(batches, first)[: len(kept)] or hit[0].records > len(
                batches[first]
            ), f"trial {trial}: a batch that applies was dropped"
            resynchronised += first < len(batches) - 1 and kept[-1] > first
    assert refused > 20 and resynchronised > 10

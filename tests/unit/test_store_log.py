"""The file store: framing, torn tails, corruption, snapshots, archive, group commit, failures."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path

import pytest

from adapters.store import log as log_module
from adapters.store.codec import encode
from adapters.store.log import (
    EventLog,
    StoreCorrupted,
    StoreFailed,
    StoreWriteFailed,
    segment_name,
    snapshot_name,
)
from adapters.store.records import BATCH_END, HEADER, frame, scan
from core.compaction import compact
from core.control import ControlPlane
from core.errors import NotFound
from core.events import Event, JobAccepted
from core.model import parse_job_id
from tests.contracts.store import control_plane_batches, events, without
from tests.eventually import eventually


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("segment-*.log"))


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def filled(folder: Path, batches: list[list[Event]], **options: object) -> EventLog:
    store = EventLog(folder, **options)  # type: ignore[arg-type]
    for batch in batches:
        store.append(batch)
    return store


# ---------------------------------------------------------------- records


def test_records_mark_the_end_of_each_batch_and_cover_the_length_with_the_crc() -> None:
    data = frame([b"{1}", b"{22}"]) + frame([b"{333}"])
    found = scan(data)
    assert found.clean and found.records == 3 and found.complete == len(data)
    head, _ = HEADER.unpack_from(data, 0)
    assert head == 3  # length 3, not a batch end
    assert HEADER.unpack_from(data, HEADER.size + 3)[0] == 4 | BATCH_END
    changed = bytearray(data)
    changed[0] = 2  # a shorter length: the CRC over the head catches it
    assert scan(bytes(changed)).damage == 0


def test_zero_filled_space_is_not_a_record() -> None:
    data = frame([b"{x}"])
    found = scan(data + bytes(64))
    assert found.damage == len(data) and not found.valid_after and found.records == 1


def test_payloads_must_fit_a_record() -> None:
    with pytest.raises(ValueError, match="1.."):
        frame([b""])


# ---------------------------------------------------------------- torn tails


def test_every_cut_of_the_tail_keeps_exactly_the_whole_batches_before_it(tmp_path: Path) -> None:
    batches = [events(3, "a"), events(1, "b"), events(2, "c")]
    filled(tmp_path / "full", batches).close()
    data = segments(tmp_path / "full")[0].read_bytes()
    # Byte offsets where each batch ends (each batch is framed on its own).
    ends = [sum(len(frame(encode(e) for e in b)) for b in batches[:n]) for n in range(4)]
    for cut in range(len(data) + 1):
        folder = tmp_path / f"cut-{cut}"
        folder.mkdir()
        (folder / segment_name(0)).write_bytes(data[:cut])
        whole = max(n for n in range(4) if ends[n] <= cut)
        with EventLog(folder) as store:
            assert store.load() == [e for b in batches[:whole] for e in b], f"cut at {cut}"
            assert (folder / segment_name(0)).stat().st_size == ends[whole]
            store.append(events(1, "after"))
        with EventLog(folder) as store:
            assert store.load()[-1:] == events(1, "after")


def test_garbage_after_the_last_batch_is_a_torn_tail(tmp_path: Path) -> None:
    filled(tmp_path, [events(2)]).close()
    path = segments(tmp_path)[0]
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(bytes(100) + b"\xff" * 7)
    with EventLog(tmp_path) as store:
        assert store.load() == events(2)
    assert path.stat().st_size == size


def test_a_bad_crc_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    filled(tmp_path, [events(2, "a"), events(2, "b")]).close()
    path = segments(tmp_path)[0]
    flip(path, path.stat().st_size - 3)
    with EventLog(tmp_path) as store:
        assert store.load() == events(2, "a")


# ---------------------------------------------------------------- corruption


def test_a_damaged_record_followed_by_valid_ones_refuses_to_open(tmp_path: Path) -> None:
    filled(tmp_path, [events(2, "a"), events(2, "b"), events(2, "c")]).close()
    path = segments(tmp_path)[0]
    flip(path, HEADER.size + 5)  # inside the first payload
    before = path.read_bytes()
    with pytest.raises(StoreCorrupted) as caught:
        EventLog(tmp_path)
    message = str(caught.value)
    assert str(path) in message and "at byte 0" in message
    assert "followed by valid records" in message and "recover_from_snapshot=True" in message
    assert path.read_bytes() == before  # nothing was changed
    assert caught.value.path == path and caught.value.offset == 0


def test_a_missing_segment_refuses_to_open(tmp_path: Path) -> None:
    filled(
        tmp_path, [events(3, f"b{i}-") for i in range(20)], segment_bytes=300, snapshot_every=None
    ).close()
    files = segments(tmp_path)
    assert len(files) > 3
    files[1].unlink()
    with pytest.raises(StoreCorrupted, match="a segment is missing"):
        EventLog(tmp_path)


def test_damage_in_an_earlier_segment_refuses_even_at_its_end(tmp_path: Path) -> None:
    filled(
        tmp_path, [events(3, f"b{i}-") for i in range(20)], segment_bytes=300, snapshot_every=None
    ).close()
    first = segments(tmp_path)[0]
    flip(first, first.stat().st_size - 2)
    with pytest.raises(StoreCorrupted, match="before the next segment"):
        EventLog(tmp_path)


# ---------------------------------------------------------------- snapshots, archive


def run_batches(seed: int = 3, steps: int = 400) -> tuple[ControlPlane, list[list[Event]]]:
    return control_plane_batches(seed, steps)


def test_snapshots_compact_and_archive_terminal_jobs(tmp_path: Path) -> None:
    plane, batches = run_batches()
    with filled(tmp_path, batches, snapshot_every=200, segment_bytes=4096) as store:
        store.compact()  # the tail after the last automatic snapshot too
        loaded = store.load()
        archived = store.archived_job_ids()
        assert archived and len(loaded) < sum(map(len, batches)) / 2
        assert ControlPlane.replay(loaded).snapshot() == without(plane.snapshot(), set(archived))
        everything = [e for b in batches for e in b]
        expected = compact(everything).archived
        assert sorted(expected, key=parse_job_id) == archived
        for jid in archived:
            assert store.archived_job_events(jid) == expected[jid]
            first = store.archived_job_events(jid)[0]
            assert isinstance(first, JobAccepted) and first.job_id == jid
        with pytest.raises(NotFound):
            store.archived_job_events("nope-1")
        with pytest.raises(NotFound):
            store.archived_job_events("../etc-1")
    snapshots = sorted(tmp_path.glob("snapshot-*.snap"))
    assert len(snapshots) == 2  # the newest and one to fall back on
    covered = int(snapshots[0].name[9:29])
    assert all(int(p.name[8:28]) >= covered for p in segments(tmp_path))
    with EventLog(tmp_path, snapshot_every=200) as store:
        assert ControlPlane.replay(store.load()).snapshot() == without(
            plane.snapshot(), set(archived)
        )


def test_compact_on_request_writes_a_snapshot_once(tmp_path: Path) -> None:
    _, batches = run_batches(steps=100)
    with filled(tmp_path, batches, snapshot_every=None) as store:
        loaded = store.load()
        store.compact()
        store.compact()  # nothing new: no second snapshot
        total = sum(map(len, batches))
        assert [p.name for p in tmp_path.glob("snapshot-*")] == [snapshot_name(total)]
        assert (
            ControlPlane.replay(store.load()).snapshot()
            == ControlPlane.replay(compact(loaded).live).snapshot()
        )
        assert segments(tmp_path)[-1].name == segment_name(total)


def test_a_damaged_snapshot_falls_back_to_the_one_before_when_asked(tmp_path: Path) -> None:
    plane, batches = run_batches()
    third = len(batches) // 3
    with filled(tmp_path, batches[:third], snapshot_every=None) as store:
        store.compact()
        archived_first = set(store.archived_job_ids())
        for batch in batches[third : 2 * third]:
            store.append(batch)
        store.compact()
        for batch in batches[2 * third :]:
            store.append(batch)
    newest = sorted(tmp_path.glob("snapshot-*.snap"))[-1]
    flip(newest, 20)
    with pytest.raises(StoreCorrupted, match="damaged snapshot"):
        EventLog(tmp_path)
    with EventLog(tmp_path, recover_from_snapshot=True) as store:
        state = ControlPlane.replay(store.load()).snapshot()
        assert store.recovery is not None and not store.recovery.dropped
        assert store.recovery.set_aside == (tmp_path / "quarantine" / newest.name,)
    # Nothing lost: the older snapshot's segments were kept. (The jobs that the damaged
    # snapshot archived are live again, until the next snapshot archives them anew.)
    assert state == without(plane.snapshot(), archived_first)
    assert (tmp_path / "quarantine" / newest.name).exists()


def test_a_compaction_that_fails_for_lack_of_space_leaves_nothing_of_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, batches = run_batches()
    store = filled(tmp_path, batches[:-1], snapshot_every=None)
    before = store.load()
    real = log_module._write_atomic

    def no_snapshots(path: Path, data: bytes) -> None:
        if path.suffix == ".snap":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(log_module, "_write_atomic", no_snapshots)
    with pytest.raises(
        StoreWriteFailed, match=r"no space left on device \(ENOSPC\) writing .*snap"
    ):
        store.compact()
    assert not list(tmp_path.glob("snapshot-*")) and not list((tmp_path / "archive").glob("*"))
    assert store.archived_job_ids() == [] and store.load() == before
    assert store.healthy  # appends are fine; only the snapshot failed
    store.append(batches[-1])
    monkeypatch.undo()
    store.compact()  # space is back: the next snapshot is written
    assert store.archived_job_ids() and list(tmp_path.glob("snapshot-*.snap"))
    store.close()


def test_archive_files_of_a_compaction_killed_before_its_snapshot_do_not_count(
    tmp_path: Path,
) -> None:
    """As if killed after writing the archive files but before the snapshot's rename."""
    _, batches = run_batches()
    filled(tmp_path, batches, snapshot_every=None).close()
    with EventLog(tmp_path, snapshot_every=None) as store:
        before = store.load()
    orphan = tmp_path / "archive" / f"alpha-1@{sum(map(len, batches)):020d}.events"
    orphan.parent.mkdir()
    orphan.write_bytes(frame(encode(e) for e in before[:2]))
    with EventLog(tmp_path, snapshot_every=None) as store:
        assert store.archived_job_ids() == []
        assert not orphan.exists()
        assert store.load() == before


# ---------------------------------------------------------------- group commit, failures


async def test_group_commit_shares_fsyncs_keeps_order_and_the_loop_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventLog(tmp_path)
    real_sync = os.fdatasync
    syncs: list[int] = []
    in_first_sync, first_sync_may_end = threading.Event(), threading.Event()
    loop_ran_during_sync = []

    def slow_sync(fd: int) -> None:
        if not syncs and not in_first_sync.is_set():
            in_first_sync.set()  # a loop blocked in here could never set the other event
            loop_ran_during_sync.append(first_sync_may_end.wait(5))
        real_sync(fd)
        syncs.append(os.fstat(fd).st_size)

    monkeypatch.setattr(log_module.os, "fdatasync", slow_sync)
    batches = [events(2, f"g{i}-") for i in range(100)]
    done: list[int] = []

    async def one(n: int) -> None:
        await store.commit(batches[n])
        size = sum(len(frame(encode(e) for e in b)) for b in batches[: n + 1])
        assert syncs and syncs[-1] >= size, "returned before its events were fsynced"
        done.append(n)

    tasks = [asyncio.create_task(one(n)) for n in range(100)]
    await eventually(in_first_sync.is_set, "the first fsync to begin", timeout=5, interval=0.001)
    first_sync_may_end.set()
    await asyncio.gather(*tasks)
    assert loop_ran_during_sync == [True]
    assert sorted(done) == list(range(100))
    assert len(syncs) < 10, f"{len(syncs)} fsyncs for 100 concurrent commits"
    assert store.load() == [e for b in batches for e in b]
    store.close()


async def test_a_failed_fsync_fails_the_whole_group_changes_nothing_and_the_next_write_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventLog(tmp_path)
    store.append(events(2, "before"))
    path = segments(tmp_path)[0]
    size = path.stat().st_size
    real_sync = os.fdatasync

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(log_module.os, "fdatasync", broken)

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(
            *(store.commit(events(1, f"f{i}")) for i in range(5)), return_exceptions=True
        )

    results = await main()
    assert all(isinstance(r, StoreWriteFailed) for r in results), results
    failed = results[0]
    assert isinstance(failed, StoreWriteFailed) and failed.errno == errno.EIO
    assert str(failed).startswith(f"input/output error (EIO) writing {path}")
    assert path.stat().st_size == size  # the batch was cut off again
    assert not store.healthy and store.last_error is failed
    assert store.load() == events(2, "before")
    monkeypatch.setattr(log_module.os, "fdatasync", real_sync)
    store.append(events(1, "after"))
    assert store.healthy and store.last_error is None
    store.close()
    with EventLog(tmp_path) as store:
        assert store.load() == events(2, "before") + events(1, "after")


def test_a_failed_rotation_write_leaves_no_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = filled(
        tmp_path, [events(3, f"b{i}-") for i in range(4)], segment_bytes=300, snapshot_every=None
    )
    names = [p.name for p in segments(tmp_path)]
    loaded = store.load()
    while store._segment_size < store.segment_bytes:  # the next write rotates
        store.append(events(1, "fill"))
        names, loaded = [p.name for p in segments(tmp_path)], store.load()
    real_write = os.write

    def full(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 4:  # part of it fits, then the disk is full
            return real_write(fd, data[:4])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log_module.os, "write", full)
    with pytest.raises(StoreWriteFailed, match="ENOSPC"):
        store.append(events(2, "lost"))
    assert [p.name for p in segments(tmp_path)] == names
    assert store.load() == loaded and not store.healthy
    monkeypatch.undo()
    store.append(events(2, "kept"))
    assert len(segments(tmp_path)) == len(names) + 1
    store.close()
    with EventLog(tmp_path, segment_bytes=300, snapshot_every=None) as store:
        assert store.load() == loaded + events(2, "kept")


def test_a_cut_that_fails_is_made_before_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = filled(tmp_path, [events(2, "a")])
    path = segments(tmp_path)[0]
    size = path.stat().st_size
    real_truncate = os.ftruncate

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(log_module.os, "fdatasync", broken)
    monkeypatch.setattr(log_module.os, "ftruncate", no_truncate)
    with pytest.raises(StoreWriteFailed):
        store.append(events(1, "lost"))
    assert path.stat().st_size > size  # the failed batch is still there
    monkeypatch.undo()  # the disk works again, but the cut still fails
    monkeypatch.setattr(log_module.os, "ftruncate", no_truncate)
    with pytest.raises(StoreWriteFailed):  # still cannot cut: no write after the bad bytes
        store.append(events(1, "lost-too"))
    monkeypatch.setattr(log_module.os, "ftruncate", real_truncate)
    store.append(events(1, "b"))
    store.close()
    with EventLog(tmp_path) as store:
        assert store.load() == events(2, "a") + events(1, "b")


def test_writing_after_close_fails(tmp_path: Path) -> None:
    store = EventLog(tmp_path)
    store.close()
    with pytest.raises(StoreFailed, match="closed"):
        store.append(events(1))


def test_leftover_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    filled(tmp_path, [events(1)]).close()
    (tmp_path / (snapshot_name(5) + ".tmp")).write_bytes(b"half")
    with EventLog(tmp_path) as store:
        assert store.load() == events(1)
    assert not list(tmp_path.glob("*.tmp"))


async def test_a_sync_append_after_queued_commits_keeps_call_order(tmp_path: Path) -> None:
    """A master appends observations and commits requests on one loop: the log keeps order."""
    store = EventLog(tmp_path)

    first = asyncio.create_task(store.commit(events(2, "commit")))
    await asyncio.sleep(0)  # the commit is queued; its write has not started
    store.append(events(1, "append"))
    await first
    assert store.load() == events(2, "commit") + events(1, "append")
    store.close()


def test_a_damaged_archive_file_is_reported_for_that_job_only(tmp_path: Path) -> None:
    _, batches = run_batches()
    with filled(tmp_path, batches, snapshot_every=None) as store:
        store.compact()
        first, second = store.archived_job_ids()[:2]
        path = next((tmp_path / "archive").glob(f"{first}@*.events"))
        flip(path, 20)
        with pytest.raises(StoreCorrupted, match="damaged archive file.*Restore this file"):
            store.archived_job_events(first)
        assert store.archived_job_events(second)

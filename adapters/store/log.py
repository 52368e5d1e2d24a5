"""`EventLog`: the Store port on a local folder, write-ahead and crash-safe.

Layout of the folder:

    segment-<first event index>.log   records of events (adapters/store/records.py), in order
    snapshot-<events covered>.snap    the compacted events that replay the first N events
    archive/<job id>@<N>.events       the events of a terminal job moved out of the log by
                                      snapshot N; valid only once that snapshot is in use
    quarantine/                       damaged files set aside by a recovery, for a person

`append` writes a batch and fsyncs before it returns; `commit` does the same for asyncio
callers, and concurrent callers share one write and one fsync (group commit), run in a
thread so the loop keeps serving. Used together on the loop's thread, they keep call order
(`append` writes what `commit` callers queued first). A batch is all-or-nothing after a
crash (records.py), and after a failed write too: if the write or its fsync fails (ENOSPC,
EIO), the segment is cut back to where the batch began, the bookkeeping is left as it was,
and every caller of the batch gets `StoreWriteFailed`; the next write tries again, so the
store takes writes once space returns, without a restart (`healthy`, `last_error` tell).

Opening recovers: a torn tail of the last segment (a short or bad record with nothing valid
after it, or an unfinished batch) was never acknowledged, so it is cut off with a warning. A
bad record followed by valid ones is damage to acknowledged data: opening refuses with
`StoreCorrupted`, naming the file and offset, unless asked to `recover_from_snapshot`, which
keeps the last good snapshot, the batches before the damage and those after it that still
apply (recovery.py), writes them as a new snapshot, copies the damaged files to quarantine/
and reports every batch it dropped in `recovery` (and a warning). File numbers are event
positions; a recovered snapshot is numbered past every file of the damaged log, so no old
segment reads as its continuation. Snapshots are written every `snapshot_every` events (and on
`compact()`): the log rotates to a new segment, the terminal jobs go to the archive, the
snapshot is written atomically, and files that the kept snapshots (`keep_snapshots`, two: a
damaged newest one still has a predecessor with its segments) no longer need are deleted.
Compaction runs inside the write path that made it due, holding off writes meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import structlog

from adapters.store.codec import PAYLOAD_PREFIX, decode, encode
from adapters.store.records import frame, payloads, scan
from adapters.store.recovery import RecoveryReport, salvage
from core.compaction import compact
from core.errors import NotFound
from core.events import Event
from core.model import parse_job_id

log = structlog.get_logger()

SEGMENT = re.compile(r"segment-(\d{20})\.log")
SNAPSHOT = re.compile(r"snapshot-(\d{20})\.snap")
ARCHIVE = "archive"
ARCHIVED = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)@(\d{20})\.events")
QUARANTINE = "quarantine"
TMP = ".tmp"


class StoreCorrupted(Exception):
    """Acknowledged data is damaged; the message says where and what a person can do."""

    def __init__(self, path: Path, offset: int, problem: str, remedy: str = "") -> None:
        remedy = remedy or (
            "Restore the folder from a backup, or open it with recover_from_snapshot=True "
            "(`mantis master --recover-from-snapshot`) to keep the last good snapshot and "
            "every batch that still applies: the damaged batch, and the later ones that do not "
            "apply without it, are dropped and reported (the damaged files are copied to "
            f"{path.parent / QUARANTINE})"
        )
        super().__init__(f"{path}: {problem} (at byte {offset}). Nothing was changed. {remedy}.")
        self.path = path
        self.offset = offset


class StoreFailed(Exception):
    """A write did not happen (the store is closed, or the write failed)."""


class StoreWriteFailed(StoreFailed):
    """A write or fsync failed; what it had written was cut off, so nothing changed."""

    def __init__(self, path: Path, cause: OSError) -> None:
        code = cause.errno
        if code is None:
            what = str(cause)
        else:
            what = f"{os.strerror(code).lower()} ({errno.errorcode.get(code, code)})"
        super().__init__(f"{what} writing {path}; nothing was written")
        self.path = path
        self.cause = cause
        self.errno = code


def segment_name(start: int) -> str:
    return f"segment-{start:020d}.log"


def snapshot_name(covered: int) -> str:
    return f"snapshot-{covered:020d}.snap"


def _numbered(folder: Path, pattern: re.Pattern[str]) -> list[int]:
    found = (pattern.fullmatch(name) for name in os.listdir(folder))
    return sorted(int(m.group(1)) for m in found if m)


def _fsync(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes its new, renamed and removed names durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a temp file, fsync it, rename it over `path`; the caller fsyncs the folder."""
    tmp = path.with_name(path.name + TMP)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    """Best effort, on a failure path (a leftover temp file is removed by the next open)."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _free_bytes(folder: Path) -> int | None:
    try:
        found = os.statvfs(folder)
    except OSError:
        return None
    return found.f_bavail * found.f_frsize


def _decode_all(buf: bytes, end: int) -> list[Event]:
    return [decode(p) for p in payloads(buf, end)]


Queued = tuple[bytes, int, "asyncio.Future[None]"]  # framed batch, its events, its caller


def _settle(queued: list[Queued], error: Exception | None) -> None:
    for *_, future in queued:
        if future.done():  # the caller was cancelled; its events are written all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class EventLog:
    """The default metadata store: an append-only event log with snapshots, in one folder."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_bytes: int = 64 << 20,
        snapshot_every: int | None = 100_000,
        keep_snapshots: int = 2,
        recover_from_snapshot: bool = False,
    ) -> None:
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self.snapshot_every = snapshot_every
        self.keep_snapshots = max(keep_snapshots, 1)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._segments: list[int] = []  # starts of the segments after the snapshot in use
        self._segment_size = 0
        self._snapshot: int | None = None  # events covered by the snapshot in use
        self._next = 0  # index of the next event
        self._cut: tuple[Path, int] | None = None  # a failed write's bytes still to cut off
        self._last_error: StoreWriteFailed | None = None
        self._archive: dict[str, Path] = {}  # archived job id -> its file
        self._queue: list[Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._set_aside: list[Path] = []
        self.recovery: RecoveryReport | None = None  # what opening with recovery did
        self._recover(recover_from_snapshot)
        self._compact_at = self._base + (snapshot_every or 0)

    # ------------------------------------------------------------------ the Store port

    def append(self, events: Sequence[Event]) -> None:
        """Write the events as one batch; returns once they are on disk (fsynced).

        Batches that `commit` callers queued before this call go first, in the same write,
        so the log keeps call order when both are used (from the loop's thread).
        """
        queued, self._queue = self._queue, []
        if not events and not queued:
            return
        data = b"".join(item[0] for item in queued) + frame(encode(e) for e in events)
        try:
            self._write(data, sum(item[1] for item in queued) + len(events))
        except Exception as e:
            _settle(queued, e)
            raise
        _settle(queued, None)

    def load(self) -> list[Event]:
        """Every event: the snapshot's compacted ones, then the log after it, in order."""
        with self._lock:
            return self._load()

    async def commit(self, events: Sequence[Event]) -> None:
        """`append` for asyncio callers: concurrent calls share one write and one fsync.

        Returns once these events are durable; batches reach the log in call order.
        """
        if not events:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((frame(encode(e) for e in events), len(events), future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await future

    @property
    def healthy(self) -> bool:
        """False from a failed write until a write succeeds again (for a health check)."""
        return self._last_error is None

    @property
    def last_error(self) -> StoreWriteFailed | None:
        """The failure of the last write, None once one succeeds."""
        return self._last_error

    # ------------------------------------------------------------------ snapshots and archive

    def compact(self) -> None:
        """Write a snapshot now (if anything was appended since the last one)."""
        with self._lock:
            self._compact()

    def archived_job_ids(self) -> list[str]:
        """Archived jobs, by cluster name and job number."""
        with self._lock:
            return sorted(self._archive, key=parse_job_id)

    def archived_job_events(self, job_id: str) -> list[Event]:
        """The events of an archived job, in log order; NotFound if it is not archived."""
        with self._lock:
            path = self._archive.get(job_id)
        if path is None:
            raise NotFound("archived job", job_id)
        buf = path.read_bytes()
        found = scan(buf, PAYLOAD_PREFIX)
        if not found.clean:
            raise StoreCorrupted(
                path,
                found.damage or found.complete,
                "damaged archive file",
                "Restore this file from a backup: the job's events are no longer in the log",
            )
        return _decode_all(buf, found.complete)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    @property
    def _base(self) -> int:
        return self._snapshot or 0

    async def _flush(self) -> None:
        """Drain the queue: everything queued while a write runs goes out in the next one."""
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                data = b"".join(item[0] for item in batch)
                try:
                    await asyncio.to_thread(self._write, data, sum(item[1] for item in batch))
                except Exception as e:
                    _settle(batch, e)
                    continue
                _settle(batch, None)
        finally:
            self._flusher = None

    def _write(self, data: bytes, count: int) -> None:
        with self._lock:
            current = self._fd
            if current is None:
                raise StoreFailed(f"{self.path}: the store is closed")
            start = self._segments[-1]
            try:
                self._cut_failed_write()
                fd, size = current, self._segment_size
                if size >= self.segment_bytes:  # rotation counts only if the write does
                    start = self._next
                    fd, size = self._create_segment(start)
                try:
                    _write_all(fd, data)
                    os.fdatasync(fd)
                except OSError:
                    self._undo_write(fd, start, size)
                    raise
            except OSError as e:
                self._last_error = error = StoreWriteFailed(self.path / segment_name(start), e)
                log.error(
                    "store_write_failed",
                    path=str(error.path),
                    error=str(error),
                    free_bytes=_free_bytes(self.path),
                )
                raise error from e
            if fd != current:
                os.close(current)
                self._fd = fd
                self._segments.append(start)
            if self._last_error is not None:
                log.info("store_writes_again", path=str(self.path))
            self._last_error = None
            self._segment_size = size + len(data)
            self._next += count
            if self.snapshot_every and self._next >= self._compact_at:
                try:
                    self._compact()
                except Exception as e:  # the events are safe; the next snapshot retries
                    log.error("store_compaction_failed", path=str(self.path), error=repr(e))

    def _undo_write(self, fd: int, start: int, size: int) -> None:
        """Cut a failed write off: its segment back to `size`, or a new segment away.
        If even that fails, the next write cuts first (a crash before then leaves a torn
        tail, which opening cuts off)."""
        path = self.path / segment_name(start)
        rotated = fd != self._fd
        try:
            if rotated:
                os.close(fd)
                os.unlink(path)
            else:
                os.ftruncate(fd, size)
                os.fsync(fd)
        except OSError as e:
            self._cut = (path, 0 if rotated else size)
            log.error("store_cut_failed", path=str(path), size=size, error=str(e))

    def _cut_failed_write(self) -> None:
        if self._cut is not None:
            _truncate(*self._cut)
            self._cut = None

    def _create_segment(self, start: int) -> tuple[int, int]:
        """Open (or create, durably) the segment that starts at event `start`: (fd, size)."""
        path = self.path / segment_name(start)
        existed = path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if not existed:
                _fsync(self.path)
        except OSError:
            os.close(fd)
            if not existed:
                _remove(path)
            raise
        return fd, size

    def _rotate(self) -> None:
        """Continue in a new segment that starts at the next event."""
        fd, self._segment_size = self._create_segment(self._next)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._segments.append(self._next)

    def _compact(self) -> None:
        """Archive, rotate, snapshot, then drop what no kept snapshot needs.

        A crash anywhere leaves the old snapshot in use: its segments are all still there,
        and the new archive files name a snapshot that does not exist, so they do not count.
        A failed write (no space) removes what this snapshot wrote and raises
        `StoreWriteFailed`; the log is as it was, maybe rotated.
        """
        covered = self._next
        self._compact_at = covered + (self.snapshot_every or 0)
        if covered == self._base:
            return
        result = compact(self._load())
        archived = {
            jid: self.path / ARCHIVE / f"{jid}@{covered:020d}.events" for jid in result.archived
        }
        snapshot = writing = self.path / snapshot_name(covered)
        try:
            if archived:
                (self.path / ARCHIVE).mkdir(exist_ok=True)
                for jid, events in result.archived.items():
                    writing = archived[jid]
                    _write_atomic(writing, frame(encode(e) for e in events))
                _fsync(self.path / ARCHIVE)
            if self._segments[-1] != covered:
                writing = self.path / segment_name(covered)
                self._rotate()
            writing = snapshot
            _write_atomic(snapshot, frame(encode(e) for e in result.live))
            _fsync(self.path)
        except OSError as e:  # the old snapshot stays in use; nothing of this one may stay
            _remove(snapshot)
            if not snapshot.exists():  # else its archive files must stay with it
                for path in archived.values():
                    _remove(path)
            raise StoreWriteFailed(writing, e) from e
        self._snapshot, self._segments = covered, [covered]
        self._archive.update(archived)
        kept = _numbered(self.path, SNAPSHOT)[-self.keep_snapshots :]
        for n in _numbered(self.path, SNAPSHOT):
            if n < kept[0]:
                os.unlink(self.path / snapshot_name(n))
        for start in _numbered(self.path, SEGMENT):
            if start < kept[0]:
                os.unlink(self.path / segment_name(start))
        _fsync(self.path)
        log.info(
            "store_compacted",
            path=str(self.path),
            covered=covered,
            live=len(result.live),
            archived_jobs=len(result.archived),
        )

    def _index_archive(self) -> None:
        """Archive files of the snapshot in use or older count; newer ones (a compaction that
        did not finish, or a damaged snapshot given up) are removed."""
        folder = self.path / ARCHIVE
        if not folder.is_dir():
            return
        for name in sorted(os.listdir(folder)):
            found = ARCHIVED.fullmatch(name)
            if found and int(found.group(2)) <= self._base:
                self._archive[found.group(1)] = folder / name
            elif name.endswith(TMP) or found:
                os.unlink(folder / name)

    # ------------------------------------------------------------------ reading and recovery

    def _load(self) -> list[Event]:
        events: list[Event] = []
        if self._snapshot is not None:
            path = self.path / snapshot_name(self._snapshot)
            buf = path.read_bytes()
            found = scan(buf, PAYLOAD_PREFIX)
            if not found.clean:
                raise StoreCorrupted(path, found.damage or found.complete, "damaged snapshot")
            events += _decode_all(buf, found.complete)
        for start in self._segments:
            path = self.path / segment_name(start)
            buf = path.read_bytes()
            found = scan(buf, PAYLOAD_PREFIX)
            if found.damage is not None:
                raise StoreCorrupted(path, found.damage, "damaged record in the log")
            events += _decode_all(buf, found.complete)
        return events

    def _recover(self, from_snapshot: bool) -> None:
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        if created:
            _fsync(self.path.parent)
        for name in os.listdir(self.path):
            if name.endswith(TMP):
                os.unlink(self.path / name)
        self._snapshot = self._choose_snapshot(from_snapshot)
        self._index_archive()
        segments = [s for s in _numbered(self.path, SEGMENT) if s >= self._base]
        expected = self._base
        for k, start in enumerate(segments):
            path = self.path / segment_name(start)
            if start != expected:
                raise StoreCorrupted(
                    path,
                    0,
                    f"the segment starts at event {start}, but {expected} was expected: "
                    "a segment is missing",
                )
            buf = path.read_bytes()
            found = scan(buf, PAYLOAD_PREFIX)
            expected += found.records
            last = k == len(segments) - 1
            if found.clean:
                continue
            where = found.complete if found.damage is None else found.damage
            if last and not found.valid_after:
                _truncate(path, found.complete)
                log.warning(
                    "store_torn_tail_truncated",
                    path=str(path),
                    offset=found.complete,
                    bytes=found.size - found.complete,
                )
                continue
            if not from_snapshot:
                problem = (
                    "damaged record followed by valid records"
                    if found.valid_after
                    else "damaged or unfinished records before the next segment"
                )
                raise StoreCorrupted(path, where, problem)
            self._salvage(segments[:k], segments[k:])
            break
        else:
            self._segments = segments or [self._base]
            self._next = expected
        if self._set_aside and self.recovery is None:  # only damaged snapshots: nothing lost
            self.recovery = RecoveryReport(set_aside=tuple(self._set_aside))
        self._fd, self._segment_size = self._create_segment(self._segments[-1])
        log.info(
            "store_opened",
            path=str(self.path),
            snapshot=self._snapshot,
            events=self._next,
            segments=len(self._segments),
        )

    def _choose_snapshot(self, from_snapshot: bool) -> int | None:
        """The newest snapshot whose records are sound; older ones only when recovering."""
        for covered in reversed(_numbered(self.path, SNAPSHOT)):
            path = self.path / snapshot_name(covered)
            found = scan(path.read_bytes(), PAYLOAD_PREFIX)
            if found.clean:
                return covered
            if not from_snapshot:
                raise StoreCorrupted(path, found.damage or found.complete, "damaged snapshot")
            log.warning("store_snapshot_damaged", path=str(path), offset=found.damage)
            self._quarantine(path, os.replace)
        return None

    def _salvage(self, sound: list[int], damaged: list[int]) -> None:
        """Recovering: keep the snapshot, the sound segments and what `salvage` keeps of
        the damaged ones and those after them, in a new snapshot numbered past every file
        of the log, so no old segment reads as its continuation. The damaged files are
        copied to quarantine/ first; until the snapshot's rename, the log is as it was."""
        self._segments = sound
        before = self._load()
        paths = [self.path / segment_name(start) for start in damaged]
        kept, dropped = salvage(before, [(path, path.read_bytes()) for path in paths])
        for path in sorted({d.path for d in dropped}):
            self._quarantine(path, shutil.copyfile)
        numbers = [*_numbered(self.path, SEGMENT), *_numbered(self.path, SNAPSHOT)]
        covered = 1 + max([self._base, *numbers])
        _write_atomic(self.path / snapshot_name(covered), frame(encode(e) for e in kept))
        _fsync(self.path)
        self._snapshot, self._segments, self._next = covered, [covered], covered
        self.recovery = report = RecoveryReport(tuple(dropped), tuple(self._set_aside), covered)
        log.warning(
            "store_recovered",
            path=str(self.path),
            snapshot=covered,
            kept_events=len(kept),
            batches_dropped=report.batches_dropped,
            records_dropped=report.records_dropped,
            dropped=[str(d) for d in dropped],
        )

    def _quarantine(self, path: Path, move: Callable[[Path, Path], object]) -> None:
        folder = self.path / QUARANTINE
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        n = 1
        while target.exists():
            target, n = folder / f"{path.name}.{n}", n + 1
        move(path, target)
        self._set_aside.append(target)
        if target.is_file():
            _fsync(target)
        _fsync(folder)
        _fsync(self.path)

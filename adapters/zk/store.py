"""`ZkStore`: the Store port on ZooKeeper (kazoo), so that masters on several machines share one
event log, and a deposed leader cannot write to it.

Layout under `root` (`/mantis/store`):

    log/batch-<seq>          one append: its framed events (or, when they are bigger than a
                             znode may hold, the name of the chunks holding them)
    chunks/<token>-<k>       the pieces of a big batch or of the snapshot, each below `CHUNK`
    snapshot                 the marker: the snapshot in use, the last batch it covers and its
                             compacted events (or chunks); empty while there is none
    archive/<job id>@<seq>   the events of a terminal job moved out by the snapshot covering
                             batch <seq> (children <k> if big); valid once that snapshot is in use
    head                     the token of the last append: every append moves it, expecting its
                             version, so that an append whose reply was lost can be told apart

A ZooKeeper request, a whole `multi` included, may not exceed jute.maxbuffer (1 MiB: the server
drops the connection), so a batch is one transaction only up to `CHUNK` bytes; a bigger one
writes its chunks first, each in its own transaction, and then commits the batch node naming
them (checking they are all there): until that commit nothing reads them, and compaction removes
chunks nothing names. Appends are fenced in the store, not by timing (a fencing token, as in
martin.kleppmann.com/2016/02/08/how-to-do-distributed-locking.html): given a `Fence` (the
election's epoch node and the version it had when this master took leadership), every
transaction checks the epoch node first (ZooKeeper's multi with a version check, ZOOKEEPER-965),
so once a new leader bumps it the old one's appends fail with `StoreFenced` and write nothing.

A failed append writes nothing: a transaction is all or nothing, and a request is only sent
while connected (kazoo would queue it and send it after a reconnect, long after its caller gave
up). When the reply is lost instead, `head` settles it: the append was written if head holds
its token or a batch after the snapshot does; if not, moving head past the version the append
expects voids it for good. `commit` runs the appends in a thread; callers that queue while one
runs share the next transaction, in call order.

Compaction (`compact()`, and every `compact_every` batches on the write path) replays
`core.compaction`'s rule as the file store does: it writes the archive and the snapshot, then
switches the marker in one transaction (expecting its version), then deletes the batches and
chunks the marker no longer needs; a load racing it reads the marker again and starts over if it
moved, so no load misses events. Events go through the `encode`/`decode` the composition root
passes (adapters.store.codec's), since adapters do not import each other.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoNodeError,
    OperationTimeoutError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry, RetryFailedError

from core.compaction import compact
from core.errors import NotFound
from core.events import Event

log = structlog.get_logger()

CHUNK = 900_000  # bytes of data per znode and per transaction, under jute.maxbuffer (1 MiB)
BATCH = "batch-"
NO_SNAPSHOT = -1  # the marker's `covers` while there is no snapshot
_HEADER = 4  # bytes of a node's header length, then its JSON header, then its body
_MISSES = 5  # tries while others move what was read (a compaction under a load, head)

_LOST = (  # ZooKeeper did not answer, as opposed to refusing
    ConnectionLoss,
    ConnectionClosedError,
    SessionExpiredError,
    OperationTimeoutError,
    KazooTimeoutError,
    RetryFailedError,
)

Encode = Callable[[Event], bytes]
Decode = Callable[[bytes], Event]


class StoreFenced(Exception):
    """The store's fence no longer holds (another master leads): nothing was written."""


class StoreUnavailable(Exception):
    """ZooKeeper did not take the write (unreachable, session lost), or its reply was lost and
    it cannot be asked yet: then the next append finds out first, and if the write had landed,
    every append is refused until the store is reopened (the caller's state lacks it)."""


@dataclass(frozen=True, slots=True)
class Fence:
    """Appends need `path` (the election's epoch node) to still be at `version`."""

    path: str
    version: int


@dataclass(frozen=True, slots=True)
class _Loaded:
    events: list[Event]
    covers: int  # the last batch the snapshot covers
    marker_version: int
    last: int  # the last batch read
    batches: list[tuple[str, str]]  # (name, token) of the batches after the snapshot


def _node(fields: dict[str, Any], body: bytes) -> bytes:
    header = orjson.dumps(fields)
    return len(header).to_bytes(_HEADER, "big") + header + body


def _unnode(data: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(data[:_HEADER], "big")
    fields: dict[str, Any] = orjson.loads(data[_HEADER : _HEADER + size])
    return fields, data[_HEADER + size :]


def _pack(fields: dict[str, Any], body: bytes) -> tuple[bytes, list[bytes]]:
    """A node's data holding `body`, or naming the `chunks` it is cut into when too big."""
    if len(body) <= CHUNK:
        return _node(fields, body), []
    pieces = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    return _node({**fields, "chunks": len(pieces)}, b""), pieces


def _frames(payloads: Iterable[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in payloads)


def _unframe(body: bytes) -> Iterable[bytes]:
    at = 0
    while at < len(body):
        size = int.from_bytes(body[at : at + 4], "big")
        yield body[at + 4 : at + 4 + size]
        at += 4 + size


def _seq(name: str) -> int:
    return int(name.removeprefix(BATCH))


def _failure(results: list[Any]) -> tuple[int, Exception] | None:
    """The operation that failed a transaction (the others are rolled back), if one did."""
    for i, result in enumerate(results):
        if isinstance(result, Exception) and not isinstance(
            result, RolledBackError | RuntimeInconsistency
        ):
            return i, result
    return None


Queued = tuple[list[Event], "asyncio.Future[None]"]


class ZkStore:
    """The Store port on ZooKeeper; the caller owns `client` (started, shared with the election)."""

    def __init__(
        self,
        client: KazooClient,
        encode: Encode,
        decode: Decode,
        *,
        root: str = "/mantis/store",
        fence: Fence | None = None,
        compact_every: int | None = 5_000,
        timeout: float = 10.0,
    ) -> None:
        self._zk = client
        self._encode = encode
        self._decode = decode
        self.root = root.rstrip("/")
        self._fence = fence
        self.compact_every = compact_every
        self._timeout = timeout
        self._retry = KazooRetry(max_tries=-1, deadline=timeout, max_delay=1.0, ignore_expire=False)
        self._lock = threading.Lock()
        self._queue: list[Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._doubt: str | None = None  # the token of an append whose outcome is unknown
        self._broken = ""  # why appends are refused until the store is reopened
        for path in ("log", "chunks", "archive", "snapshot", "head"):
            self._call(self._zk.ensure_path_async, self._path(path))
        self._head = self._call(self._zk.exists_async, self._path("head")).version
        self._batches = len(self._call(self._zk.get_children_async, self._path("log")))

    # ------------------------------------------------------------------ the Store port

    def fence(self, path: str, version: int) -> None:
        """From now on, append only while `path` is at `version` (the leader's epoch)."""
        self._fence = Fence(path, version)

    def append(self, events: Sequence[Event]) -> None:
        """Write the events as one batch, after what `commit` callers queued before this call.

        Raises `StoreFenced` or `StoreUnavailable` having written nothing."""
        queued, self._queue = self._queue, []
        batch = [e for item in queued for e in item[0]] + list(events)
        if not batch:
            return
        try:
            with self._lock:
                self._append(batch)
        except Exception as e:
            _settle(queued, e)
            raise
        _settle(queued, None)

    async def commit(self, events: Sequence[Event]) -> None:
        """`append` in a thread: callers queued while a write runs share the next one, in
        call order."""
        if not events:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((list(events), future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await future

    def load(self) -> list[Event]:
        """The snapshot's events, then every batch after it, in sequence order."""
        with self._lock:
            return self._load().events

    # ------------------------------------------------------------------ snapshots and archive

    def compact(self) -> None:
        """Write a snapshot of everything appended so far (if anything was, since the last)."""
        with self._lock:
            self._compact()

    def archived_job_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._archive())

    def archived_job_events(self, job_id: str) -> list[Event]:
        """The events of an archived job, in log order; NotFound if it is not archived."""
        with self._lock:
            path = self._archive().get(job_id)
            if path is None:
                raise NotFound("archived job", job_id)
            data, _ = self._call(self._zk.get_async, path)
            fields, body = _unnode(data)
            if "chunks" in fields:
                body = self._read_chunks(path + "/", fields["chunks"])
            return [self._decode(p) for p in _unframe(body)]

    # ------------------------------------------------------------------ writing

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _chunks(self, token: str) -> str:
        """The prefix of the chunks of a big batch or snapshot."""
        return self._path(f"chunks/{token}-")

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The answer of `fn` (one of kazoo's `*_async`), asked again through connection losses
        until the deadline; StoreUnavailable if none comes. kazoo's blocking calls wait with no
        limit for a connection that may never come back, hence the async ones and a timeout."""

        def once() -> Any:
            self._connected()
            return fn(*args, **kwargs).get(timeout=self._timeout)

        try:
            return self._retry.copy()(once)
        except _LOST as e:
            raise StoreUnavailable(f"ZooKeeper did not answer ({e!r})") from e

    def _connected(self) -> None:
        """Raise ConnectionLoss unless connected: kazoo queues a request made while it is
        disconnected and sends it once it reconnects, long after its caller gave up on it."""
        if not self._zk.connected:
            raise ConnectionLoss()

    def _when_connected(self) -> None:
        """Return once connected, retrying until the deadline, then StoreUnavailable."""
        try:
            self._retry.copy()(self._connected)
        except _LOST as e:
            raise StoreUnavailable("ZooKeeper is unreachable; nothing was written") from e

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                events = [e for item in batch for e in item[0]]
                try:
                    await asyncio.to_thread(self._append_locked, events)
                except Exception as e:
                    _settle(batch, e)
                    continue
                _settle(batch, None)
        finally:
            self._flusher = None

    def _append_locked(self, events: list[Event]) -> None:
        with self._lock:
            self._append(events)

    def _append(self, events: list[Event]) -> None:
        if self._broken:
            raise StoreUnavailable(f"{self.root}: {self._broken}; reopen the store")
        if self._doubt is not None and self._settle_doubt():
            self._broken = "a batch reported as not written was written after all"
            self._written()
            raise StoreUnavailable(f"{self.root}: {self._broken}; reopen the store")
        token = uuid.uuid4().hex
        data, pieces = _pack({"token": token}, _frames(self._encode(e) for e in events))
        chunks = self._write_chunks(self._chunks(token), pieces)
        for _ in range(_MISSES):
            txn = self._fenced()
            for chunk in chunks:
                txn.check(chunk, 0)
            txn.set_data(self._path("head"), token.encode(), version=self._head)
            txn.create(self._path(f"log/{BATCH}"), data, sequence=True)
            self._when_connected()
            try:
                results = txn.commit_async().get(timeout=self._timeout)
            except (KazooException, KazooTimeoutError) as e:
                self._doubt = token
                if not self._settle_doubt():
                    raise StoreUnavailable(
                        f"ZooKeeper did not take the batch ({e!r}); nothing was written"
                    ) from e
                log.info("zk_store_append_written_despite_error", root=self.root, error=repr(e))
                self._written()
                return
            failed = _failure(results)
            if failed is None:
                self._head = results[-2].version
                self._written()
                return
            index, error = failed
            if index == 0 and self._fence is not None:
                raise self._fenced_error(error)
            if isinstance(error, BadVersionError):  # another writer moved head: go after it
                self._head = self._call(self._zk.exists_async, self._path("head")).version
                continue
            raise StoreUnavailable(f"ZooKeeper refused the batch ({error!r}); nothing was written")
        raise StoreUnavailable("other writers kept moving the log's head; nothing was written")

    def _fenced(self) -> Any:
        """A transaction that starts by checking the fence, if there is one."""
        txn = self._zk.transaction()
        if self._fence is not None:
            txn.check(self._fence.path, self._fence.version)
        return txn

    def _fenced_error(self, error: Exception) -> StoreFenced:
        assert self._fence is not None
        found = "is gone" if isinstance(error, NoNodeError) else "has moved on"
        return StoreFenced(
            f"{self._fence.path} {found} from version {self._fence.version}: another master "
            "leads; nothing was written"
        )

    def _commit(self, txn: Any, what: str) -> list[Any]:
        """Commit a transaction that is safe to lose (orphan chunks, cleanup): raise on failure."""
        self._when_connected()
        try:
            results: list[Any] = txn.commit_async().get(timeout=self._timeout)
        except (KazooException, KazooTimeoutError) as e:
            raise StoreUnavailable(f"ZooKeeper did not take {what} ({e!r})") from e
        failed = _failure(results)
        if failed is None:
            return results
        index, error = failed
        if index == 0 and self._fence is not None:
            raise self._fenced_error(error)
        raise StoreUnavailable(f"ZooKeeper refused {what} ({error!r})")

    def _write_chunks(self, prefix: str, pieces: list[bytes]) -> list[str]:
        """Write the pieces, one fenced transaction each; unreferenced until the caller commits."""
        paths = [f"{prefix}{k:04d}" for k in range(len(pieces))]
        for path, piece in zip(paths, pieces, strict=True):
            txn = self._fenced()
            txn.create(path, piece)
            self._commit(txn, f"chunk {path}")
        return paths

    def _settle_doubt(self) -> bool:
        """Whether the append of `self._doubt`, whose reply was lost, was written; if it was
        not, make sure it never will be: it needs head at `self._head`, so moving head past
        that version voids it. Raises StoreUnavailable (the doubt stays) if ZooKeeper does not
        answer, StoreFenced if another master has taken over and compacted it out of sight."""
        token = self._doubt
        assert token is not None
        for _ in range(_MISSES):
            data, stat = self._call(self._zk.get_async, self._path("head"))
            if data == token.encode():
                written = True
            elif stat.version == self._head:
                try:
                    self._call(self._zk.set_async, self._path("head"), b"", version=self._head)
                except BadVersionError:  # head moved meanwhile: look again
                    continue
                written = False
            else:  # others wrote after it, or instead of it
                written = any(t == token for _, t in self._batch_tokens(self._after()))
                if not written and self._fence is not None and not self._fence_holds():
                    self._doubt = None
                    raise StoreFenced(
                        f"{self._fence.path} has moved on from version {self._fence.version}: "
                        "another master leads; a batch whose reply was lost may be in the log"
                    )
            self._head = self._call(self._zk.exists_async, self._path("head")).version
            self._doubt = None
            return written
        raise StoreUnavailable("other writers kept moving the log's head")

    def _fence_holds(self) -> bool:
        assert self._fence is not None
        found = self._call(self._zk.exists_async, self._fence.path)
        return found is not None and found.version == self._fence.version

    def _written(self) -> None:
        self._batches += 1
        if self.compact_every and self._batches >= self.compact_every:
            try:
                self._compact()
            except Exception as e:  # the batch is safe; the next append tries again
                log.error("zk_store_compaction_failed", root=self.root, error=repr(e))

    # ------------------------------------------------------------------ reading

    def _after(self, covers: int | None = None) -> list[str]:
        """The batches after `covers` (the marker's, by default), in order."""
        if covers is None:
            covers = self._marker()[0].get("covers", NO_SNAPSHOT)
        names = self._call(self._zk.get_children_async, self._path("log"))
        return sorted(n for n in names if n.startswith(BATCH) and _seq(n) > covers)

    def _marker(self) -> tuple[dict[str, Any], bytes, int]:
        data, stat = self._call(self._zk.get_async, self._path("snapshot"))
        if not data:
            return {}, b"", stat.version
        fields, body = _unnode(data)
        return fields, body, stat.version

    def _batch_tokens(self, names: list[str]) -> list[tuple[str, str]]:
        return [
            (n, _unnode(data)[0]["token"])
            for n, data in zip(names, self._get_all(names), strict=True)
        ]

    def _get_all(self, names: list[str]) -> list[bytes]:
        """The data of many batches, asked for all at once (pipelined, not one round trip each)."""
        asked = [self._zk.get_async(self._path(f"log/{n}")) for n in names]
        try:
            return [a.get(timeout=self._timeout)[0] for a in asked]
        except _LOST as e:
            raise StoreUnavailable(f"ZooKeeper did not answer ({e!r})") from e

    def _read_chunks(self, prefix: str, count: int) -> bytes:
        paths = [f"{prefix}{k:04d}" for k in range(count)]
        asked = [self._zk.get_async(p) for p in paths]
        try:
            return b"".join(a.get(timeout=self._timeout)[0] for a in asked)
        except _LOST as e:
            raise StoreUnavailable(f"ZooKeeper did not answer ({e!r})") from e

    def _load(self) -> _Loaded:
        """Read the marker, its snapshot and the batches after it; start over if a compaction
        moved the marker meanwhile (it deletes what the new one covers)."""
        for _ in range(_MISSES):
            fields, body, version = self._marker()
            try:
                if "chunks" in fields:
                    body = self._read_chunks(self._chunks(fields["token"]), fields["chunks"])
                events = [self._decode(p) for p in _unframe(body)]
                covers = fields.get("covers", NO_SNAPSHOT)
                names = self._after(covers)
                batches: list[tuple[str, str]] = []
                for name, data in zip(names, self._get_all(names), strict=True):
                    header, payload = _unnode(data)
                    if "chunks" in header:
                        prefix = self._chunks(header["token"])
                        payload = self._read_chunks(prefix, header["chunks"])
                    events += [self._decode(p) for p in _unframe(payload)]
                    batches.append((name, header["token"]))
            except NoNodeError:
                continue
            if self._marker()[2] == version:
                last = _seq(names[-1]) if names else covers
                self._batches = len(names)
                return _Loaded(events, covers, version, last, batches)
        raise StoreUnavailable(f"{self.root}: compactions kept moving the snapshot under a load")

    def _archive(self) -> dict[str, str]:
        """Archived job id -> its node, for the snapshot in use."""
        covers = self._marker()[0].get("covers", NO_SNAPSHOT)
        found: dict[str, str] = {}
        for name in self._call(self._zk.get_children_async, self._path("archive")):
            jid, _, seq = name.rpartition("@")
            if int(seq) <= covers:
                found[jid] = self._path(f"archive/{name}")
        return found

    # ------------------------------------------------------------------ compaction

    def _compact(self) -> None:
        """Archive, snapshot, switch the marker, then delete what it no longer needs."""
        self._drop_stale_archive()
        loaded = self._load()
        if loaded.last == loaded.covers:
            return
        result = compact(loaded.events)
        covers = loaded.last
        for jid, events in result.archived.items():
            path = self._path(f"archive/{jid}@{covers:010d}")
            data, pieces = _pack({}, _frames(self._encode(e) for e in events))
            txn = self._fenced()
            txn.create(path, data)
            self._commit(txn, f"archive node {path}")
            self._write_chunks(path + "/", pieces)
        token = uuid.uuid4().hex
        body = _frames(self._encode(e) for e in result.live)
        data, pieces = _pack({"token": token, "covers": covers}, body)
        chunks = self._write_chunks(self._chunks(token), pieces)
        txn = self._fenced()
        for chunk in chunks:
            txn.check(chunk, 0)
        txn.set_data(self._path("snapshot"), data, version=loaded.marker_version)
        self._commit(txn, "the snapshot marker")
        self._batches = 0
        log.info(
            "zk_store_compacted",
            root=self.root,
            covers=covers,
            live=len(result.live),
            archived_jobs=len(result.archived),
        )
        self._clean(loaded, token)

    def _drop_stale_archive(self) -> None:
        """Archive nodes of a compaction that did not switch the marker are not valid: remove
        them, or a later snapshot would make them look so."""
        covers = self._marker()[0].get("covers", NO_SNAPSHOT)
        for name in self._call(self._zk.get_children_async, self._path("archive")):
            if int(name.rpartition("@")[2]) > covers:
                path = self._path(f"archive/{name}")
                txn = self._fenced()
                for chunk in self._call(self._zk.get_children_async, path):
                    txn.delete(f"{path}/{chunk}")
                txn.delete(path)
                self._commit(txn, f"the deletion of {path}")

    def _clean(self, loaded: _Loaded, token: str) -> None:
        """Delete the covered batches and every chunk nothing names: best effort, as a failure
        leaves only garbage that the next compaction removes."""
        try:
            doomed = [self._path(f"log/{name}") for name, _ in loaded.batches]
            kept = {token} | {t for _, t in self._batch_tokens(self._after(loaded.last))}
            for chunk in self._call(self._zk.get_children_async, self._path("chunks")):
                if chunk.rpartition("-")[0] not in kept:
                    doomed.append(self._path(f"chunks/{chunk}"))
            for start in range(0, len(doomed), 1000):
                txn = self._fenced()
                for path in doomed[start : start + 1000]:
                    txn.delete(path)
                self._commit(txn, "the deletion of covered batches")
        except (StoreFenced, StoreUnavailable, NoNodeError) as e:
            log.warning("zk_store_cleanup_failed", root=self.root, error=repr(e))


def _settle(queued: list[Queued], error: Exception | None) -> None:
    for _, future in queued:
        if future.done():  # the caller was cancelled; its events are written all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

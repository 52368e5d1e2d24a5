"""`ZkStore` against a real ZooKeeper: the Store contract, fencing, batches and snapshots bigger
than a znode, compaction, lost connections and replies, and the latency of a fenced append."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss

from adapters.store.codec import decode, encode
from adapters.zk import store as zk_store
from adapters.zk.store import Fence, StoreFenced, StoreUnavailable, ZkStore
from core.compaction import compact
from core.control import ControlPlane
from core.events import CronFired, Event
from core.ports import Store
from tests.contracts.store import StoreContract, control_plane_batches, events, without
from tests.eventually import wait_until
from tests.zookeeper import ZooKeeperServer


def connect(address: str, client: type[KazooClient] = KazooClient) -> KazooClient:
    zk = client(hosts=address, timeout=4.0, connection_retry={"max_tries": -1, "max_delay": 0.5})
    zk.start(timeout=10)
    return zk


def root_of(folder: Path) -> str:
    return "/tests/" + hashlib.sha256(str(folder).encode()).hexdigest()[:16]


class TestZkStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _zookeeper(self, zookeeper: str) -> None:
        self.address = zookeeper

    def open_store(self, folder: Path) -> ZkStore:
        store: Store = ZkStore(connect(self.address), encode, decode, root=root_of(folder))
        assert isinstance(store, ZkStore)  # mypy checks the port fits
        return store

    def close_store(self, store: ZkStore) -> None:
        store._zk.stop()
        store._zk.close()


@pytest.fixture
def zk(zookeeper: str) -> Iterator[KazooClient]:
    client = connect(zookeeper)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def root(tmp_path: Path) -> str:
    return root_of(tmp_path)


def children(zk: KazooClient, path: str) -> list[str]:
    return sorted(zk.get_children(path))


def test_a_deposed_leaders_append_is_fenced_and_writes_nothing(
    zk: KazooClient, zookeeper: str, root: str
) -> None:
    epoch = f"{root}-epoch"
    zk.create(epoch, b"", makepath=True)
    old = ZkStore(zk, encode, decode, root=root, fence=Fence(epoch, zk.set(epoch, b"a").version))
    old.append(events(2, "old"))
    other = connect(zookeeper)
    try:
        new = ZkStore(other, encode, decode, root=root)
        new.fence(epoch, other.set(epoch, b"b").version)  # a new leader takes over
        with pytest.raises(StoreFenced, match="another master leads; nothing was written"):
            old.append(events(1, "late"))
        with pytest.raises(StoreFenced):
            asyncio.run(old.commit(events(1, "late-async")))
        with pytest.raises(StoreFenced):  # a batch in chunks writes none of them
            old.append([CronFired("x" * 1000, float(i)) for i in range(2000)])
        assert children(zk, f"{root}/chunks") == []
        assert new.load() == events(2, "old")
        new.append(events(1, "new"))
        assert old.load() == new.load() == events(2, "old") + events(1, "new")
        zk.delete(epoch)
        with pytest.raises(StoreFenced, match="is gone"):
            new.append(events(1, "no-epoch"))
    finally:
        other.stop()
        other.close()


def test_a_batch_over_a_megabyte_round_trips_in_chunks(zk: KazooClient, root: str) -> None:
    big = [CronFired(f"cluster-{i:06d}-" + "x" * 500, float(i)) for i in range(5000)]
    assert sum(len(encode(e)) for e in big) > 2 * zk_store.CHUNK
    store = ZkStore(zk, encode, decode, root=root)
    store.append(events(1, "before"))
    store.append(big)
    store.append(events(1, "after"))
    assert len(children(zk, f"{root}/chunks")) >= 3
    assert ZkStore(zk, encode, decode, root=root).load() == events(1, "before") + big + events(
        1, "after"
    )


def test_compaction_keeps_the_replay_and_archives_terminal_jobs(
    zk: KazooClient, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zk_store, "CHUNK", 4096)  # the snapshot and archived jobs in chunks too
    plane, batches = control_plane_batches(seed=3, steps=400)
    everything = [e for batch in batches for e in batch]
    expected = compact(everything)
    assert expected.archived and len(expected.live) < len(everything)
    store = ZkStore(zk, encode, decode, root=root, compact_every=None)
    for batch in batches:
        store.append(batch)
    store.compact()
    assert children(zk, f"{root}/log") == []
    reopened = ZkStore(zk, encode, decode, root=root)
    assert reopened.load() == expected.live
    snapshot = without(plane.snapshot(), set(expected.archived))
    assert ControlPlane.replay(reopened.load()).snapshot() == snapshot
    assert reopened.archived_job_ids() == sorted(expected.archived)
    for jid, archived in expected.archived.items():
        assert reopened.archived_job_events(jid) == archived
    plane, more = control_plane_batches(seed=4, steps=100, plane=plane, start=10_000_000.0)
    for batch in more:
        reopened.append(batch)
    assert store.load() == expected.live + [e for batch in more for e in batch]
    store.compact()  # a second snapshot replaces the first and its chunks
    tokens = {name.rpartition("-")[0] for name in children(zk, f"{root}/chunks")}
    assert len(tokens) == 1
    archived = set(store.archived_job_ids())
    assert archived > set(expected.archived)
    assert ControlPlane.replay(store.load()).snapshot() == without(plane.snapshot(), archived)


def test_compaction_on_the_write_path(zk: KazooClient, root: str) -> None:
    plane, batches = control_plane_batches(seed=5, steps=300)
    store = ZkStore(zk, encode, decode, root=root, compact_every=25)
    for batch in batches:
        store.append(batch)
    assert len(children(zk, f"{root}/log")) < 25
    archived = set(store.archived_job_ids())
    assert archived
    assert ControlPlane.replay(store.load()).snapshot() == without(plane.snapshot(), archived)


class LosingReplies(KazooClient):  # type: ignore[misc]
    """A client whose next transactions lose their reply: `landed` says whether each was
    applied before the connection "dropped", and `meanwhile` what happens before the loss."""

    landed: list[bool]
    meanwhile: Callable[[], object] = staticmethod(lambda: None)

    def transaction(self) -> Any:
        txn = super().transaction()
        if not getattr(self, "landed", None):
            return txn
        landed = self.landed.pop(0)
        commit = txn.commit_async

        def lose_reply() -> Any:
            if landed:
                commit().get(timeout=5)
            self.meanwhile()
            lost = self.handler.async_result()
            lost.set_exception(ConnectionLoss())
            return lost

        txn.commit_async = lose_reply
        return txn


def test_an_append_whose_reply_is_lost_is_found_written_or_voided(
    zookeeper: str, root: str
) -> None:
    zk, other = connect(zookeeper, LosingReplies), connect(zookeeper)
    try:
        store = ZkStore(zk, encode, decode, root=root)
        zk.landed = [True]
        store.append(events(1, "landed"))  # written, though the reply was lost
        zk.landed = [False]
        with pytest.raises(StoreUnavailable, match="nothing was written"):
            store.append(events(1, "lost"))
        store.append(events(1, "next"))
        assert store.load() == events(1, "landed") + events(1, "next")
        second = ZkStore(other, encode, decode, root=root)  # now another writer goes between
        zk.meanwhile = lambda: second.append(events(1, "between"))
        zk.landed = [True]
        store.append(events(1, "landed-too"))
        zk.landed = [False]
        with pytest.raises(StoreUnavailable, match="nothing was written"):
            store.append(events(1, "lost-too"))
        assert second.load() == (
            events(1, "landed")
            + events(1, "next")
            + events(1, "landed-too")
            + events(1, "between") * 2
        )
    finally:
        for client in (zk, other):
            client.stop()
            client.close()


def test_appends_fail_while_zookeeper_is_down_and_work_again_after(
    zookeeper_server: ZooKeeperServer, root: str
) -> None:
    zk = connect(zookeeper_server.address)
    try:
        store = ZkStore(zk, encode, decode, root=root, timeout=1.0)
        store.append(events(1, "before"))
        zookeeper_server.stop()
        wait_until(lambda: not zk.connected, "kazoo to see ZooKeeper gone")
        with pytest.raises(StoreUnavailable, match="unreachable; nothing was written"):
            store.append(events(1, "during"))
        zookeeper_server.start()
        wait_until(lambda: zk.connected, "kazoo to reconnect", 30)
        store.append(events(1, "after"))
        assert store.load() == events(1, "before") + events(1, "after")
    finally:
        zk.stop()
        zk.close()


def test_concurrent_commits_share_transactions_in_call_order(zk: KazooClient, root: str) -> None:
    store = ZkStore(zk, encode, decode, root=root)
    batches = [events(1, f"k{i}-") for i in range(200)]

    async def main() -> None:
        await asyncio.gather(*(store.commit(b) for b in batches))

    asyncio.run(main())
    assert store.load() == [e for b in batches for e in b]
    assert len(children(zk, f"{root}/log")) < len(batches)


def test_fenced_append_latency(zk: KazooClient, root: str) -> None:
    """1,000 single-event fenced appends on loopback: p50 and p99 go to the test's output."""
    epoch = f"{root}-epoch"
    zk.create(epoch, b"", makepath=True)
    store = ZkStore(zk, encode, decode, root=root, fence=Fence(epoch, zk.set(epoch, b"").version))
    one: list[Event] = events(1)
    seconds = []
    for _ in range(1000):
        start = time.perf_counter()
        store.append(one)
        seconds.append(time.perf_counter() - start)
    cuts = statistics.quantiles(seconds, n=100)
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    print(f"fenced ZkStore.append of one event: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    assert len(store.load()) == 1000
    assert p50 < 50

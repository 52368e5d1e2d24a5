"""Stage-to-stage transport on real loopback TCP: routing, backpressure, reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from runtime.codec import Codec
from runtime.stage_input import StageInput
from runtime.stage_output import StageOutputServer
from runtime.transport import (
    Backpressure,
    Endpoint,
    Refused,
    Routing,
    TransportClosed,
    WorkerId,
)
from tests.eventually import eventually

HOST = "127.0.0.1"


def reader(inp: StageInput, into: list[Any]) -> asyncio.Task[None]:
    """A task that appends every event `inp` receives to `into`."""

    async def read() -> None:
        async for batch in inp.batches():
            into.extend(batch)

    return asyncio.create_task(read())


async def stop(*things: StageInput | StageOutputServer | asyncio.Task[None]) -> None:
    for thing in things:
        if isinstance(thing, asyncio.Task):
            thing.cancel()
        else:
            await thing.close()


async def connected(out: StageOutputServer, *slots: str, **kw: Any) -> list[StageInput]:
    """StageInputs for `slots`, each connected to `out`."""
    inputs = [StageInput(slot, **kw) for slot in slots]
    for inp in inputs:
        inp.set_upstreams([Endpoint(HOST, out.port)])
    await out.wait_for_connections(len(slots), timeout=5)
    return inputs


async def test_round_robin_spreads_scalar_output_evenly() -> None:
    out = StageOutputServer(batch_size=16)
    await out.start()
    a, b = await connected(out, "stage_2_index_0", "stage_2_index_1")
    got_a: list[Any] = []
    got_b: list[Any] = []
    tasks = [reader(a, got_a), reader(b, got_b)]
    for i in range(1000):
        assert out.offer({"i": i})
    assert out.offer_many([{"i": i} for i in range(1000, 2000)]) == 1000
    await eventually(lambda: len(got_a) + len(got_b) == 2000, "2000 events")
    assert len(got_a) == len(got_b) == 1000
    assert sorted(e["i"] for e in got_a + got_b) == list(range(2000))
    for got in (got_a, got_b):  # each connection keeps the order it was sent
        assert [e["i"] for e in got] == sorted(e["i"] for e in got)
    assert out.stats().on_next_count == 2000 and out.stats().dropped_count == 0
    await stop(*tasks, a, b, out)


async def test_keyed_output_same_key_same_worker_from_every_upstream_and_stable() -> None:
    ups = [StageOutputServer(routing=Routing.KEYED, batch_size=32) for _ in range(2)]
    for up in ups:
        await up.start()
    slots = ["stage_2_index_0", "stage_2_index_1", "stage_2_index_2"]
    inputs = [StageInput(s) for s in slots]
    got: dict[str, list[Any]] = {s: [] for s in slots}
    tasks = []
    for slot, inp in zip(slots, inputs, strict=True):
        inp.set_upstreams([Endpoint(HOST, up.port) for up in ups])
        tasks.append(reader(inp, got[slot]))
    for up in ups:
        await up.wait_for_connections(3, timeout=5)

    keys = [f"user-{i}" for i in range(200)]

    async def send_round(n_slots: int) -> dict[str, str]:
        for g in got.values():
            g.clear()
        for u, up in enumerate(ups):
            await up.send_keyed_many(
                [(k, {"k": k, "up": u, "n": n}) for n in range(3) for k in keys]
            )
        await eventually(lambda: sum(map(len, got.values())) == 2 * 3 * len(keys), "all pairs")
        owner: dict[str, str] = {}
        for slot, events in got.items():
            for key, event in events:
                assert event["k"] == key
                assert owner.setdefault(key, slot) == slot, f"{key} reached two workers"
        assert len(owner) == len(keys) and len(set(owner.values())) == n_slots
        for key, slot in owner.items():
            assert ups[0].owner_of(key) == ups[1].owner_of(key) == slot
        return owner

    before = await send_round(3)
    extra = StageInput("stage_2_index_3")
    got["stage_2_index_3"] = []
    extra.set_upstreams([Endpoint(HOST, up.port) for up in ups])
    tasks.append(reader(extra, got["stage_2_index_3"]))
    for up in ups:
        await up.wait_for_connections(4, timeout=5)
    after = await send_round(4)
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(after[k] == "stage_2_index_3" for k in moved)
    await stop(*tasks, *inputs, extra, *ups)


BIG = "x" * 2000  # big events fill socket buffers quickly


async def test_lossy_mode_drops_and_counts_when_the_consumer_is_slow() -> None:
    out = StageOutputServer(batch_size=64, buffer_events=256, write_buffer_high=16 * 1024)
    await out.start()
    (inp,) = await connected(out, "slow", max_queued_batches=1)  # and nobody reads yet
    offered = 0

    def flood() -> bool:
        """Offer 64 more events; True once some were dropped."""
        nonlocal offered
        out.offer_many([{"seq": offered + i, "pad": BIG} for i in range(64)])
        offered += 64
        return out.dropped_count > 0

    await eventually(flood, "events to be dropped", timeout=5, interval=0)  # 0: let the socket move
    stats = out.stats()
    assert stats.on_next_count + stats.dropped_count == offered
    got: list[Any] = []
    task = reader(inp, got)
    await eventually(lambda: len(got) == out.on_next_count, "the accepted events")
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(set(seqs))  # nothing twice, in order, with gaps where dropped
    assert len(seqs) == offered - out.dropped_count
    await stop(task, inp, out)


async def test_blocking_mode_waits_and_loses_nothing_when_the_consumer_is_slow() -> None:
    out = StageOutputServer(
        backpressure=Backpressure.BLOCKING,
        batch_size=64,
        buffer_events=256,
        write_buffer_high=16 * 1024,
    )
    await out.start()
    (inp,) = await connected(out, "slow", max_queued_batches=1)
    total = 20_000  # ~40 MB: more than the kernel's socket buffers hold

    async def produce() -> None:
        for start in range(0, total, 100):
            await out.send_many([{"seq": s, "pad": BIG} for s in range(start, start + 100)])

    producer = asyncio.create_task(produce())
    await eventually(lambda: out.waiting_for_capacity, "the producer to block")
    assert not producer.done()
    assert out.dropped_count == 0
    got: list[Any] = []
    task = reader(inp, got)
    await producer
    await eventually(lambda: len(got) == total, "every event")
    assert [e["seq"] for e in got] == list(range(total))
    assert out.stats().dropped_count == 0 and out.stats().on_next_count == total
    await stop(task, inp, out)


async def test_without_downstream_lossy_drops_and_blocking_waits_for_a_connection() -> None:
    lossy = StageOutputServer()
    await lossy.start()
    assert not lossy.offer({"a": 1}) and not lossy.offer_keyed("k", 1)
    assert lossy.offer_many([1, 2, 3]) == 0
    assert lossy.stats().dropped_count == 5

    out = StageOutputServer(backpressure=Backpressure.BLOCKING)
    await out.start()
    sending = asyncio.create_task(out.send({"hello": "late reader"}))
    await eventually(lambda: out.waiting_for_capacity, "the sender to wait")
    (inp,) = await connected(out, "late")
    await sending
    assert await inp.get_batch() == [{"hello": "late reader"}]
    await stop(inp, out, lossy)


async def test_reconnects_when_the_upstream_worker_restarts_on_the_same_port() -> None:
    first = StageOutputServer()
    port = await first.start()
    inp = StageInput("s", backoff_initial=0.01, backoff_max=0.1)
    inp.set_upstreams([(HOST, port)])
    await first.wait_for_connections(1, timeout=5)
    first.offer({"gen": 1})
    assert await inp.get_batch() == [{"gen": 1}]
    await first.close()
    await eventually(lambda: inp.connected_count == 0, "the loss to be noticed")

    second = StageOutputServer(port=port)
    await second.start()
    await second.wait_for_connections(1, timeout=5)
    second.offer({"gen": 2})
    assert await inp.get_batch() == [{"gen": 2}]
    stats = inp.stats()
    assert (stats.connects, stats.disconnects, stats.received_count) == (2, 1, 2)
    await stop(inp, second)


async def test_set_upstreams_moves_to_a_replacement_worker() -> None:
    old, new = StageOutputServer(), StageOutputServer()
    await old.start()
    await new.start()
    inp = StageInput("s")
    inp.set_upstreams([Endpoint(HOST, old.port)])
    await old.wait_for_connections(1, timeout=5)
    inp.set_upstreams([Endpoint(HOST, new.port)])
    assert inp.endpoints == [Endpoint(HOST, new.port)]
    await new.wait_for_connections(1, timeout=5)
    await eventually(lambda: old.connection_count == 0, "the old connection to close")
    new.offer("from the replacement")
    assert await inp.get_batch() == ["from the replacement"]
    await inp.close()
    try:
        await inp.get_batch()
        raise AssertionError("a closed input gave a batch")
    except TransportClosed:
        pass
    await stop(old, new)


async def test_bytes_codec_passes_pre_encoded_events_through() -> None:
    out = StageOutputServer(codec=Codec.BYTES)
    await out.start()
    (inp,) = await connected(out, "s")
    items = [b"\x00raw", b'{"pre":"encoded"}', b""]
    out.offer_many(items)
    got = []
    async for item in inp:  # event by event
        got.append(item)
        if len(got) == len(items):
            break
    assert got == items
    await stop(inp, out)


async def test_an_event_that_does_not_encode_is_dropped_alone() -> None:
    out = StageOutputServer()
    await out.start()
    (inp,) = await connected(out, "s")
    out.offer_many([{"ok": 1}, {"bad": object()}, {"ok": 2}])
    assert await inp.get_batch() == [{"ok": 1}, {"ok": 2}]
    stats = out.stats()
    assert (stats.encode_errors, stats.dropped_count, stats.sent_count) == (1, 1, 2)
    await stop(inp, out)


async def test_a_connection_that_never_says_hello_is_closed() -> None:
    out = StageOutputServer(hello_timeout=0.05)
    await out.start()
    reader_, writer = await asyncio.open_connection(HOST, out.port)
    assert await asyncio.wait_for(reader_.read(), 5) == b""  # EOF: closed by the server
    assert out.connection_count == 0
    writer.close()
    await stop(out)


async def _raw_server(
    on_connect: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await on_connect(w)

    return await asyncio.start_server(handle, HOST, 0)


async def test_a_silent_upstream_is_dropped_and_redialled() -> None:
    async def silent(_w: asyncio.StreamWriter) -> None:
        return None  # keeps the connection open, never writes

    server = await _raw_server(silent)
    inp = StageInput("s", idle_timeout=0.05, backoff_initial=0.01)
    inp.set_upstreams([(HOST, server.sockets[0].getsockname()[1])])
    await eventually(
        lambda: inp.stats().disconnects >= 1 and inp.stats().connects >= 2,
        "an idle connection to be replaced",
    )
    await inp.close()
    server.close()


async def test_garbage_from_an_upstream_is_counted_and_the_connection_dropped() -> None:
    async def garbage(w: asyncio.StreamWriter) -> None:
        w.write(b"\xff\xff\xff\xff\x01 not a frame")

    server = await _raw_server(garbage)
    inp = StageInput("s", backoff_initial=0.01)
    inp.set_upstreams([(HOST, server.sockets[0].getsockname()[1])])
    await eventually(
        lambda: inp.stats().frame_errors >= 1 and inp.stats().disconnects >= 1,
        "the bad frame to be noticed",
    )
    await inp.close()
    server.close()


async def test_events_lost_in_flight_with_a_dead_receiver_are_counted_as_dropped() -> None:
    out = StageOutputServer(batch_size=256, buffer_events=4096)
    await out.start()
    (inp,) = await connected(out, "stage_2_index_0", max_queued_batches=4)
    for i in range(200):  # the receiver never consumes: its socket buffers fill up
        out.offer_many([{"i": i * 100 + j, "pad": "x" * 80} for j in range(100)])
        await asyncio.sleep(0)
    await eventually(lambda: inp.received_count > 0, "the receiver to get events")
    await inp.close()  # dies with whatever is in its queue and socket buffers
    await eventually(lambda: out.connection_count == 0, "the connection to be lost")
    stats = out.stats()
    assert stats.lost_in_flight > 0
    # ...and exactly those the receiver did not get: it acknowledged every read
    assert stats.lost_in_flight == stats.sent_count - inp.received_count
    # every accepted event was either acknowledged by the receiver or counted as dropped
    assert stats.on_next_count <= inp.received_count + stats.dropped_count
    await out.close()


def refused_reader(inp: StageInput, into: list[Any]) -> asyncio.Task[str]:
    """A task reading like `reader`; it ends with the reason once `inp` is refused."""

    async def read() -> str:
        try:
            async for batch in inp.batches():
                into.extend(batch)
        except Refused as e:
            return str(e)
        raise AssertionError("the input ended without a refusal")

    return asyncio.create_task(read())


async def test_a_replaced_downstream_worker_is_refused_and_its_input_stops() -> None:
    out = StageOutputServer(batch_size=8, worker=WorkerId("job-1", 1, 0, 1))
    await out.start()
    old = StageInput("stage_2_index_0", worker=WorkerId("job-1", 2, 0, 5))
    old.set_upstreams([Endpoint(HOST, out.port)])
    await out.wait_for_connections(1, timeout=5)
    got_old: list[Any] = []
    old_task = refused_reader(old, got_old)
    out.offer_many(list(range(10)))
    await eventually(lambda: len(got_old) == 10, "10 events to worker 5")

    # The scheduling info now has worker 6 in that slot: worker 5 is cut off at once.
    out.set_downstream_workers([(0, 6)])
    assert out.connection_count == 0
    reason = await asyncio.wait_for(old_task, 5)
    assert reason == "worker 5 of stage 2 index 0 was replaced by worker 6" == old.refusal
    with pytest.raises(Refused):
        old.set_upstreams([Endpoint(HOST, out.port)])
    assert out.offer_many(list(range(5))) == 0, "nobody to send to"

    # Refused at HELLO: the old number again, another job, a stage that is not the next.
    for worker in (
        WorkerId("job-1", 2, 0, 5),
        WorkerId("job-2", 2, 0, 9),
        WorkerId("job-1", 3, 0, 9),
    ):
        stale = StageInput("stage_2_index_0", worker=worker)
        stale.set_upstreams([Endpoint(HOST, out.port)])
        assert await asyncio.wait_for(refused_reader(stale, []), 5)
    assert out.connection_count == 0 and out.refused_count == 4

    new = StageInput("stage_2_index_0", worker=WorkerId("job-1", 2, 0, 6))
    new.set_upstreams([Endpoint(HOST, out.port)])
    await out.wait_for_connections(1, timeout=5)
    got_new: list[Any] = []
    new_task = refused_reader(new, got_new)
    out.offer_many(list(range(20)))
    await eventually(lambda: len(got_new) == 20, "20 events to worker 6")
    assert len(got_old) == 10

    # A newer worker's HELLO is news enough: worker 6 is refused as worker 7 connects.
    newest = StageInput("stage_2_index_0", worker=WorkerId("job-1", 2, 0, 7))
    newest.set_upstreams([Endpoint(HOST, out.port)])
    assert await asyncio.wait_for(new_task, 5) == (
        "worker 6 of stage 2 index 0 was replaced by worker 7"
    )
    await eventually(lambda: out.connection_count == 1, "worker 7 connected alone")
    await stop(newest, out)


async def test_declared_slots_keep_a_missing_workers_keys_from_the_others() -> None:
    """Keys hash over the declared slots: the keys of a slot not connected are dropped
    (lossy) or wait for it (blocking), never sent to the connected worker."""
    slots = ["stage_2_index_0", "stage_2_index_1"]
    lossy = StageOutputServer(routing=Routing.KEYED, batch_size=8)
    blocking = StageOutputServer(
        routing=Routing.KEYED, batch_size=8, backpressure=Backpressure.BLOCKING
    )
    keys = [f"user-{i}" for i in range(100)]
    for out in (lossy, blocking):
        await out.start()
        out.set_downstream_slots(slots)
    (a,) = await connected(lossy, slots[0])
    got: list[Any] = []
    tasks = [reader(a, got)]
    mine = [k for k in keys if lossy.owner_of(k) == slots[0]]
    assert 0 < len(mine) < len(keys)
    assert lossy.offer_keyed_many([(k, k) for k in keys]) == len(mine)
    await eventually(lambda: len(got) == len(mine), "the connected slot's keys")
    assert sorted(k for k, _ in got) == sorted(mine)
    assert lossy.stats().dropped_count == len(keys) - len(mine)

    (b0,) = await connected(blocking, slots[0])
    got_b0: list[Any] = []
    got_b1: list[Any] = []
    tasks.append(reader(b0, got_b0))
    sending = asyncio.create_task(blocking.send_keyed_many([(k, k) for k in keys]))
    await eventually(lambda: len(got_b0) == len(mine), "the connected slot's keys")
    assert not sending.done(), "the other slot's keys wait for it"
    (b1,) = await connected(blocking, slots[1])
    tasks.append(reader(b1, got_b1))
    await asyncio.wait_for(sending, 5)
    await eventually(lambda: len(got_b1) == len(keys) - len(mine), "the late slot's keys")
    assert sorted(k for k, _ in got_b0) == sorted(mine)
    await stop(*tasks, a, b0, b1, lossy, blocking)

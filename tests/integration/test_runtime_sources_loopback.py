"""Sources over real loopback HTTP: SseSource against SseSinks, JobSource against a real
master app and real sinks as the upstream job's workers."""

from __future__ import annotations

import asyncio
import socket

import pytest

from common.sse_sink import SseSink
from runtime.context import Context
from runtime.sources import (
    JobSource,
    SourceError,
    SseSource,
    TargetSource,
    UnknownClusterError,
)
from tests.eventually import eventually
from tests.integration.source_helpers import (
    FAST,
    HOST,
    Reader,
    consumer,
    publish,
    upstream,
    wait_subscribers,
)

# ------------------------------------------------------------------------ SseSource


async def test_sse_source_reads_a_sink_and_reconnects_after_the_sink_restarts() -> None:
    sink = SseSink()
    port = await sink.serve(HOST, 0)
    reader = Reader(SseSource(f"http://{HOST}:{port}/", {"clientId": "r"}, backoff=FAST))
    await sink.wait_for_subscribers(1, timeout=5)
    assert sink.group_sizes() == {"r": 1}
    sink.publish_many([{"i": i} for i in range(100)])
    sink.publish("text")
    await eventually(lambda: len(reader.events) == 101, "the first events")
    assert reader.events == [{"i": i} for i in range(100)] + ["text"]
    await sink.close()  # the sink goes away; a new one comes up on the same port
    again = SseSink()
    assert await again.serve(HOST, port) == port
    await again.wait_for_subscribers(1, timeout=5)
    assert reader.metric("reconnects") >= 1
    again.publish_many([{"i": i} for i in range(100, 200)])
    await eventually(lambda: len(reader.events) == 201, "the events after the restart")
    assert reader.events[101:] == [{"i": i} for i in range(100, 200)]
    assert reader.metric("events_emitted") == 201
    await reader.stop()
    await again.wait_for_subscribers(0, timeout=5)
    await again.close()


async def test_sse_source_closes_its_connection_on_aclose_and_unpacks_binary() -> None:
    sink = SseSink()
    port = await sink.serve(HOST, 0)
    source = SseSource(f"http://{HOST}:{port}/any/path", {"format": "binary"})
    stream = source.batches(Context())
    first = asyncio.ensure_future(anext(stream))
    await sink.wait_for_subscribers(1, timeout=5)
    sink.publish_many([{"i": 1}, "two"])
    assert await asyncio.wait_for(first, 5) == [{"i": 1}, "two"]
    await stream.aclose()  # type: ignore[attr-defined]
    await sink.wait_for_subscribers(0, timeout=5)
    await sink.close()


async def test_sse_source_raises_when_the_server_refuses_the_query() -> None:
    sink = SseSink()
    port = await sink.serve(HOST, 0)
    source = SseSource(f"http://{HOST}:{port}/", {"sampleMSec": "10"})
    with pytest.raises(SourceError, match="sampleMSec"):
        async for _ in source.batches(Context()):
            pass
    await sink.close()


# ------------------------------------------------------------------------ JobSource


@pytest.mark.timeout(30)
async def test_job_source_follows_workers_replacements_and_new_jobs() -> None:
    async with upstream() as up:
        job1 = up.submit()
        decoy, (a, b) = await up.start_job(job1)
        reader = Reader(JobSource("up", master_url=up.url, backoff=FAST), consumer())
        await wait_subscribers([a, b], 1)
        assert decoy.subscriber_count == 0  # only the last stage's sinks are read
        assert a.group_sizes() == {"down-1": 1}  # clientId: the consuming job's id
        sent = publish(a, "a", 10) + publish(b, "b", 10)
        await eventually(lambda: len(reader.events) == 20, "events from both workers")
        assert sorted(reader.events, key=str) == sorted(sent, key=str)
        assert reader.metric("job_source_workers") == 2

        # Worker index 0 fails and is replaced: the connection moves to the new one.
        up.fail(up.workers(job1, 2)[0])
        await a.wait_for_subscribers(0, timeout=5)
        (replacement,) = [w for w in up.workers(job1, 2) if w not in up.sinks]
        a2 = await up.start(replacement)
        await a2.wait_for_subscribers(1, timeout=5)
        assert b.subscriber_count == 1
        sent = publish(a2, "a2", 5)
        await eventually(lambda: reader.events[20:] == sent, "events from the replacement")

        # A new job of the cluster: the source switches to its workers.
        job2 = up.submit()
        decoy2, (c, d) = await up.start_job(job2)
        await wait_subscribers([c, d], 1)
        await wait_subscribers([a2, b], 0)
        assert reader.metric("job_source_switches") == 1
        sent = publish(c, "c", 5) + publish(d, "d", 5)
        await eventually(lambda: len(reader.events) == 35, "events from the new job")
        assert sorted(reader.events[25:], key=str) == sorted(sent, key=str)

        # The job ends: its connections close, the source waits for the next job.
        up.master.run(lambda p, now: p.kill_job(job2, "alice", "done", now))
        await wait_subscribers([c, d], 0)
        assert not reader.task.done()

        await reader.stop()
        await eventually(lambda: up.watchers() == 0, "the master streams to close")
        assert all(s.subscriber_count == 0 for s in up.sinks.values())
        assert reader.metric("job_source_workers") == 0
        assert reader.metric("events_emitted") == 35


@pytest.mark.timeout(30)
async def test_client_ids_broadcast_across_groups_and_balance_within_one() -> None:
    async with upstream() as up:
        _, sinks = await up.start_job(up.submit())

        def source(client_id: str, broadcast: bool = False) -> JobSource:
            return JobSource(
                "up", client_id=client_id, broadcast=broadcast, master_url=up.url, backoff=FAST
            )

        readers = {
            "g1": Reader(source("g1"), consumer()),
            "g2": Reader(source("g2"), consumer()),
            "shared-a": Reader(source("shared"), consumer(0)),
            "shared-b": Reader(source("shared"), consumer(1)),
            "broadcast-0": Reader(source("bc", broadcast=True), consumer(0)),
            "broadcast-1": Reader(source("bc", broadcast=True), consumer(1)),
        }
        await wait_subscribers(sinks, 6)
        groups = {"g1": 1, "g2": 1, "shared": 2, "bc_0": 1, "bc_1": 1}
        assert all(s.group_sizes() == groups for s in sinks)
        sent = [e for n, s in enumerate(sinks) for e in publish(s, str(n), 200)]
        everything = sorted(sent, key=str)
        for name in ("g1", "g2", "broadcast-0", "broadcast-1"):
            r = readers[name]
            await eventually(lambda r=r: len(r.events) == 400, f"every event at {name}")  # type: ignore[misc]
            assert sorted(r.events, key=str) == everything
        a, b = readers["shared-a"].events, readers["shared-b"].events
        await eventually(lambda: len(a) + len(b) == 400, "the shared group's events")
        assert sorted(a + b, key=str) == everything  # split between them, none twice
        assert a and b
        for r in readers.values():
            await r.stop()
        await wait_subscribers(sinks, 0)
        await eventually(lambda: up.watchers() == 0, "the master streams to close")


async def test_aclose_closes_the_sink_connections_and_criterion_filters() -> None:
    async with upstream() as up:
        _, sinks = await up.start_job(up.submit())
        source = JobSource(
            "up", master_url=up.url, backoff=FAST, criterion=lambda e: e["i"] % 2 == 0
        )
        stream = source.batches(consumer())
        first = asyncio.ensure_future(anext(stream))
        await wait_subscribers(sinks, 1)
        publish(sinks[0], "x", 4)
        assert await asyncio.wait_for(first, 5) == [
            {"from": "x", "i": 0},
            {"from": "x", "i": 2},
        ]
        await stream.aclose()  # type: ignore[attr-defined]
        await wait_subscribers(sinks, 0)
        await eventually(lambda: up.watchers() == 0, "the master streams to close")


async def test_target_source_gives_duplicate_targets_their_own_client_ids() -> None:
    async with upstream() as up:
        _, sinks = await up.start_job(up.submit())
        target = '{"targets": [{"sourceJobName": "up"}, {"sourceJobName": "up"}]}'
        ctx = consumer(job_id="down-9")
        reader = Reader(TargetSource(target, options={"master_url": up.url}), ctx)
        await wait_subscribers(sinks, 2)
        assert sinks[0].group_sizes() == {"down-9": 1, "down-9_1": 1}
        sent = publish(sinks[0], "x", 10)
        await eventually(lambda: len(reader.events) == 20, "both targets' events")
        assert sorted(reader.events, key=str) == sorted(sent * 2, key=str)
        await reader.stop()
        await wait_subscribers(sinks, 0)


async def test_an_unknown_cluster_is_a_clear_error_after_bounded_retries() -> None:
    async with upstream() as up:
        ctx = Context()
        source = JobSource("nope", master_url=up.url, backoff=FAST, not_found_retries=2)
        with pytest.raises(UnknownClusterError, match="no job cluster 'nope'"):
            async for _ in source.batches(ctx):
                pass
        assert ctx.metrics.snapshot()["master_reconnects"] == 2
        await eventually(lambda: up.watchers() == 0, "no stream left open")


async def test_an_unreachable_master_is_retried_until_it_comes_up() -> None:
    with socket.socket() as s:  # a free port, nobody listening on it yet
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    async with upstream(serve_now=False) as up:
        url = f"http://{HOST}:{port}"
        reader = Reader(JobSource("up", master_url=url, backoff=FAST), consumer())
        await eventually(lambda: reader.metric("master_reconnects") >= 3, "retries")
        assert not reader.task.done()
        await up.serve(port)
        _, sinks = await up.start_job(up.submit())
        await wait_subscribers(sinks, 1)
        sent = publish(sinks[1], "late", 3)
        await eventually(lambda: reader.events == sent, "events once the master is up")
        await reader.stop()
        await wait_subscribers(sinks, 0)

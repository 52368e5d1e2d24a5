"""MQL on a real worker process's sink (the ``mql`` parameter, per connection) and as a job
source's criterion, applied by the upstream sinks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.mql import sink_filter
from common.sse_sink import SseSink
from core.worker import WorkerState
from runtime.sources import JobSource
from tests.eventually import eventually
from tests.integration.source_helpers import (
    FAST,
    HOST,
    Reader,
    Upstream,
    consumer,
    publish,
    upstream_master,
    wait_subscribers,
)
from tests.integration.workers import local_master, read_sse


@pytest.mark.timeout(60)
async def test_each_connection_of_a_worker_sink_gets_its_own_query(tmp_path: Path) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        (sink,) = m.started(jid, stage=3)
        url = f"http://{HOST}:{sink.ports[0]}/"
        bad = "select i where\n i >"
        async with http.get(url, params={"mql": bad}) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["field"] == "mql" and (body["line"], body["column"]) == (2, 5), body
        assert "line 2, column 5" in body["message"]

        query = "select i, s3, 'tag' from counter where i ==~ /[0-9]*7/ and not (s1 == null)"
        sevens: list[Any] = []
        everything: list[Any] = []
        readers = [
            asyncio.create_task(read_sse(http, f"{url}?clientId=x&mql={query}", sevens)),
            asyncio.create_task(read_sse(http, f"{url}?clientId=x", everything)),
        ]
        await m.until(lambda: len(sevens) > 200 and len(everything) > 2000, "both streams")
        for r in readers:
            r.cancel()
        assert all(set(e) == {"i", "s3", "tag"} and e["tag"] == "tag" for e in sevens)
        assert all(e["i"] % 10 == 7 for e in sevens)
        ids = [e["i"] for e in sevens]
        assert ids == sorted(ids)
        # Same clientId, another query: its own group, so it gets every event (not a share).
        assert {e["i"] % 10 for e in everything} == set(range(10))
        assert all("job" in e for e in everything)


class MqlUpstream(Upstream):
    """The loopback upstream with worker sinks as a worker builds them (with MQL)."""

    async def start(self, wid: str) -> SseSink:
        sink = SseSink(connection_filter=sink_filter)
        port = await sink.serve(HOST, 0)
        self.master.run(lambda p, now: p.worker_launched(wid, "agent-1", HOST, (port,), now))
        self.master.run(lambda p, now: p.worker_status(wid, WorkerState.Started, now))
        self.sinks[wid] = sink
        return sink


async def test_a_job_source_criterion_is_applied_by_the_upstream_sinks() -> None:
    up = MqlUpstream(upstream_master())
    await up.serve()
    try:
        _, sinks = await up.start_job(up.submit())
        sink = sinks[0]
        criterion = "select i from up where i >= 50 and from == 'x'"
        readers = [
            Reader(JobSource("up", master_url=up.url, backoff=FAST, criterion=criterion), ctx)
            for ctx in (consumer(0), consumer(1))  # one job's two workers: one group
        ]
        await wait_subscribers(sinks, 2)
        assert all(s.group_sizes() == {f"down-1 mql={criterion}": 2} for s in sinks)
        publish(sink, "x", 100)
        publish(sink, "y", 100)

        def got() -> list[Any]:
            return readers[0].events + readers[1].events

        await eventually(lambda: len(got()) == 50, "the 50 selected events")
        assert sorted(e["i"] for e in got()) == list(range(50, 100))
        assert all(e == {"i": e["i"]} for e in got())  # projected upstream
        assert readers[0].events and readers[1].events  # shared by the group
        assert sink.sent_count == 50  # only what the query selected crossed the wire
        for r in readers:
            await r.stop()
        await wait_subscribers(sinks, 0)
    finally:
        await up.close()


def test_a_bad_criterion_fails_when_the_source_is_defined() -> None:
    with pytest.raises(ValueError, match="line 1, column 17"):
        JobSource("up", criterion="select * where a")
    assert JobSource("up", criterion="select a where b == 1").query(consumer().worker) == {
        "clientId": "down-1",
        "mql": "select a where b == 1",
    }

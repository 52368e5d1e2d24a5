"""Job output through the master (jobconnectbyid/byname, jobsubmitandconnect), real workers."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.http.app import serve
from adapters.http.follower import create_follower_app
from adapters.http.job_output import OUTPUT, JobOutputHub
from common.master_location import MasterLocation
from common.sse import SseParser
from core.worker import WorkerState
from tests.integration.workers import LocalMaster, local_master, read_sse

pytestmark = pytest.mark.timeout(120)


def hub(m: LocalMaster) -> JobOutputHub:
    assert m._runner is not None
    return m._runner.app[OUTPUT]


async def first_data(resp: aiohttp.ClientResponse) -> bytes:
    parser = SseParser()
    async for chunk in resp.content.iter_any():
        if payloads := parser.feed(chunk):
            return payloads[0]
    raise AssertionError("the stream ended")


@pytest.mark.timeout(90)
async def test_clients_share_upstreams_follow_a_replaced_sink_and_leave_no_connection(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        got: list[list[Any]] = [[], [], []]
        urls = [f"{m.url}/jobconnectbyid/{jid}"] * 2 + [
            f"{m.url}/api/v1/jobconnectbyid/{jid}?clientId=x"
        ]
        readers = [
            asyncio.create_task(read_sse(http, u, g)) for u, g in zip(urls, got, strict=True)
        ]
        await m.until(lambda: all(len(g) > 100 for g in got), "output to 3 clients")
        assert len(hub(m).subscriptions) == 2  # the two identical requests share one
        assert hub(m).upstream_connections == 2

        (sink,) = m.started(jid, stage=3)
        m.process(jid, 3, 0).popen.send_signal(signal.SIGKILL)
        await m.until(lambda: sink.state is WorkerState.Failed, "the kill noticed")
        await m.until(lambda: len(m.started(jid, stage=3)) == 1, "a replacement Started")
        (new,) = m.started(jid, stage=3)
        await m.until(
            lambda: all(any(e["s3"] == new.number for e in g) for g in got),
            "every client reading the replacement",
        )
        assert hub(m).upstream_connections == 2

        for r in readers:
            r.cancel()
        await m.until(lambda: hub(m).upstream_connections == 0, "upstreams closed")
        assert not hub(m).subscriptions


@pytest.mark.timeout(110)
async def test_connect_by_name_follows_the_newest_job_and_websockets_and_submit_and_connect(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        first = await m.counter_job()
        by_name: list[Any] = []
        reader = asyncio.create_task(read_sse(http, f"{m.url}/jobconnectbyname/counter", by_name))
        await m.until(lambda: len(by_name) > 2000, "output of job 1")

        second = await m.counter_job()
        await m.until(lambda: any(e["job"] == second for e in by_name), "output of job 2")
        switch = next(n for n, e in enumerate(by_name) if e["job"] == second)
        assert all(e["job"] == first for e in by_name[:switch])
        assert all(e["job"] == second for e in by_name[switch:]), "job 1 no longer"
        reader.cancel()
        m.kill(first)  # done with it: fewer processes competing for the cores

        async with http.ws_connect(f"{m.url}/api/v1/jobconnectbyid/{second}") as ws:
            messages = [orjson.loads((await ws.receive(timeout=30)).data) for _ in range(50)]
        assert all(e["job"] == second and "s3" in e for e in messages)
        m.kill(second)

        async with http.post(
            f"{m.url}/jobsubmitandconnect", json={"name": "counter", "user": "t"}
        ) as resp:
            assert resp.status == 200
            line = await asyncio.wait_for(first_data(resp), 60)
        assert "i" in orjson.loads(line)

        async with http.post(
            f"{m.url}/jobsubmitandconnect", json={"name": "nope", "user": "t"}
        ) as resp:
            assert resp.status == 404
        async with http.get(f"{m.url}/jobconnectbyid/nope-1") as resp:
            assert resp.status == 404


@pytest.mark.timeout(110)
async def test_a_follower_serves_job_output_from_the_leaders_discovery_streams(
    tmp_path: Path,
) -> None:
    """A follower reads where the sinks are from the leader (it has no control plane of its
    own), follows a replaced sink, and keeps its clients' streams while no leader is known."""
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        location = MasterLocation(m.url)
        runner, port = await serve(create_follower_app(lambda: {"url": location.url}, location))
        follower = f"http://127.0.0.1:{port}"
        try:
            async with http.get(f"{follower}/jobconnectbyid/nope-1") as resp:
                assert resp.status == 404 and "nope-1" in (await resp.json())["error"]
            async with http.get(f"{follower}/jobconnectbyname/nope") as resp:
                assert resp.status == 404
            readers: list[asyncio.Task[None]] = []
            jid = await m.counter_job()
            by_id: list[Any] = []
            by_name: list[Any] = []
            readers += [
                asyncio.create_task(read_sse(http, f"{follower}/jobconnectbyid/{jid}", by_id)),
                asyncio.create_task(
                    read_sse(http, f"{follower}/api/v1/jobconnectbyname/counter", by_name)
                ),
            ]
            await m.until(lambda: len(by_id) > 100 and len(by_name) > 100, "output via follower")
            assert runner.app[OUTPUT].upstream_connections == 1  # served here, one shared
            for master in (m.url, follower):  # a bad query: a 400 before any stream
                bad = {"mql": "select * where (a > 1"}
                async with http.get(f"{master}/jobconnectbyid/{jid}", params=bad) as resp:
                    body = await resp.json()
                    assert resp.status == 400 and body["field"] == "mql", body
                    assert "line 1, column" in body["error"], body
            assert not hub(m).subscriptions, "not redirected to the leader"

            location.move("")  # the leader is gone, none elected yet: the sinks still stream
            async with http.get(f"{follower}/jobconnectbyid/{jid}") as resp:
                assert resp.status == 503 and "no leader" in (await resp.json())["error"]
            seen = len(by_id)
            await m.until(lambda: len(by_id) > seen + 100, "output while no leader is known")
            location.move(m.url)  # elected again: a replaced sink is followed through it

            (sink,) = m.started(jid, stage=3)
            m.process(jid, 3, 0).popen.send_signal(signal.SIGKILL)
            await m.until(lambda: sink.state is WorkerState.Failed, "the kill noticed")
            await m.until(lambda: len(m.started(jid, stage=3)) == 1, "a replacement Started")
            (new,) = m.started(jid, stage=3)
            await m.until(
                lambda: all(any(e["s3"] == new.number for e in g) for g in (by_id, by_name)),
                "the follower's clients reading the replacement",
            )
            second = await m.counter_job()
            await m.until(lambda: any(e["job"] == second for e in by_name), "the newer job")
            assert all(not r.done() for r in readers), "no client was disconnected"
        finally:
            for r in readers:
                r.cancel()
            await runner.cleanup()

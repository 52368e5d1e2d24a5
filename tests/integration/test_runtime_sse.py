"""The SSE sink over real loopback HTTP: exact frames and Mantis' query parameters."""

from __future__ import annotations

import asyncio
import base64
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from common.sse import PING_FRAME
from common.sse_sink import SseSink
from runtime.transport import Backpressure
from tests.eventually import eventually

HOST = "127.0.0.1"


@asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[tuple[SseSink, aiohttp.ClientSession, str]]:
    sink = SseSink(**kw)
    port = await sink.serve(HOST, 0)
    async with aiohttp.ClientSession() as session:
        try:
            yield sink, session, f"http://{HOST}:{port}"
        finally:
            await sink.close()


@asynccontextmanager
async def subscribed(path: str, **kw: Any) -> AsyncIterator[tuple[SseSink, aiohttp.ClientResponse]]:
    """A sink with one client connected to it at `path`."""
    async with serving(**kw) as (sink, http, url), http.get(url + path) as resp:
        yield sink, resp


async def frame(resp: aiohttp.ClientResponse, timeout: float = 5.0) -> bytes:
    """The next SSE frame, ``\\n\\n`` included."""
    return await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout)


async def frames(resp: aiohttp.ClientResponse, n: int) -> list[bytes]:
    return [await frame(resp) for _ in range(n)]


def data(frame_: bytes) -> Any:
    assert frame_.startswith(b"data: ") and frame_.endswith(b"\n\n"), frame_
    return orjson.loads(frame_[6:-2])


async def test_exact_frames_and_headers() -> None:
    async with serving() as (sink, http, url), http.get(url + "/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"].startswith("no-cache")
        await sink.wait_for_subscribers(1, timeout=5)
        sink.publish({"a": 1, "b": [True, None]})
        sink.publish_many([{"n": 2}, b'{"pre":"encoded"}', "two\nlines", 3.5])
        got = await frames(resp, 5)
    assert got == [
        b'data: {"a":1,"b":[true,null]}\n\n',
        b'data: {"n":2}\n\n',
        b'data: {"pre":"encoded"}\n\n',
        b"data: two\ndata: lines\n\n",
        b"data: 3.5\n\n",
    ]


async def test_an_http_1_0_client_gets_the_bare_stream() -> None:
    async with serving() as (sink, _http, url):
        reader, writer = await asyncio.open_connection(HOST, int(url.rsplit(":", 1)[1]))
        writer.write(b"GET /?clientId=old HTTP/1.0\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
        await sink.wait_for_subscribers(1, timeout=5)
        sink.publish({"v": 1})
        assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == b'data: {"v":1}\n\n'
        writer.close()


async def test_any_path_serves_the_stream() -> None:
    async with subscribed("/api/v1/jobs/Demo-1/stream") as (sink, resp):
        await sink.wait_for_subscribers(1, timeout=5)
        sink.publish(["x"])
        assert await frame(resp) == b'data: ["x"]\n\n'


async def test_same_client_id_shares_the_stream_distinct_ids_each_get_all() -> None:
    async with serving() as (sink, http, url):
        streams = {}
        for name, query in [
            ("g1", "?clientId=g"),
            ("g2", "?clientId=g"),
            ("h", "?clientId=h"),
            ("groupId", "?groupId=k"),
            ("anon", ""),
        ]:
            streams[name] = await http.get(url + "/" + query)
        await sink.wait_for_subscribers(5, timeout=5)
        assert sink.group_sizes() == {"g": 2, "h": 1, "k": 1, "~0": 1}
        for i in range(100):
            sink.publish({"i": i})
        sink.publish_many([{"i": i} for i in range(100, 200)])
        everything = list(range(200))
        for name in ("h", "groupId", "anon"):
            assert [data(f)["i"] for f in await frames(streams[name], 200)] == everything
        shares = {}
        for name in ("g1", "g2"):
            shares[name] = [data(f)["i"] for f in await frames(streams[name], 100)]
        assert sorted(shares["g1"] + shares["g2"]) == everything  # split, nothing twice
        assert sink.stats().on_next_count == 200
        for resp in streams.values():
            resp.close()


async def test_sampling_sends_the_newest_event_of_each_period() -> None:
    async with serving() as (sink, http, url):
        async with http.get(url + "/?sampleMSec=50") as resp:
            await sink.wait_for_subscribers(1, timeout=5)
            sink.publish_many([{"i": i} for i in range(100)])
            assert await frame(resp) == b'data: {"i":99}\n\n'
            for i in range(100, 200):
                sink.publish({"i": i})
            assert await frame(resp) == b'data: {"i":199}\n\n'
        async with http.get(url + "/?sample=0.01") as resp:
            assert resp.status == 400  # below Mantis' 50 ms floor


async def test_pings_when_idle() -> None:
    async with subscribed("/?heartbeatSec=1") as (sink, resp):
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await frame(resp, timeout=3) == PING_FRAME
        assert loop.time() - start >= 0.9
        sink.publish({"after": "ping"})
        assert data(await frame(resp)) == {"after": "ping"}


async def test_meta_messages_report_drops() -> None:
    query = "/?enableMetaMessages=true&metaMessagesSec=250"
    async with subscribed(query, buffer_events=10) as (sink, resp):
        await sink.wait_for_subscribers(1, timeout=5)
        sink.publish_many([{"i": i} for i in range(100)])  # fills the buffer
        sink.publish_many([{"i": i} for i in range(100, 130)])  # dropped: 30
        assert [data(f)["i"] for f in await frames(resp, 100)] == list(range(100))
        meta = data(await frame(resp))
        assert meta["mantis.meta"] == "droppedMessageCount" and meta["value"] == "30"
        assert sink.stats().dropped_count == 30


async def test_binary_format_is_compressed_batches() -> None:
    async with subscribed("/?format=binary") as (sink, resp):
        await sink.wait_for_subscribers(1, timeout=5)
        sink.publish_many([{"i": 1}, {"i": 2}])
        line = await frame(resp)
    packed = base64.b64decode(line[6:-2])
    assert zlib.decompress(packed).split(b"$$$") == [b'{"i":1}', b'{"i":2}']


async def test_bad_parameters_are_400_with_the_field() -> None:
    async with serving() as (sink, http, url):
        for query, field in [
            ("sampleMSec=10", "sampleMSec"),
            ("heartbeatSec=0", "heartbeatSec"),
            ("metaMessagesSec=100", "metaMessagesSec"),
            ("format=xml", "format"),
            ("sample=soon", "sample"),
        ]:
            async with http.get(f"{url}/?{query}") as resp:
                assert resp.status == 400
                assert (await resp.json())["field"] == field
        assert sink.subscriber_count == 0


def idle_since(sink: SseSink) -> float | None:
    return sink.idle_since


async def test_subscriber_count_transitions() -> None:
    changes: list[bool] = []
    async with serving(reap_interval=0.05) as (sink, http, url):
        sink.on_subscription_change(changes.append)
        assert idle_since(sink) is not None and not sink.has_subscribers
        first = await http.get(url + "/?clientId=a")
        second = await http.get(url + "/?clientId=a")
        await sink.wait_for_subscribers(2, timeout=5)
        assert changes == [True] and idle_since(sink) is None
        first.close()  # the client goes away while nothing is being written
        await sink.wait_for_subscribers(1, timeout=5)
        assert changes == [True]
        second.close()
        await sink.wait_for_subscribers(0, timeout=5)
        assert changes == [True, False] and idle_since(sink) is not None
        third = await http.get(url + "/")
        await sink.wait_for_subscribers(1, timeout=5)
        assert changes == [True, False, True]
        third.close()
        await sink.wait_for_subscribers(0, timeout=5)
    assert changes == [True, False, True, False]


async def test_blocking_mode_delivers_everything_to_a_client() -> None:
    async with (
        serving(backpressure=Backpressure.BLOCKING, buffer_events=500) as (
            sink,
            http,
            url,
        ),
        http.get(url + "/") as resp,
    ):
        await sink.wait_for_subscribers(1, timeout=5)
        total = 50_000

        async def produce() -> None:
            for start in range(0, total, 100):
                await sink.send_many([{"i": i} for i in range(start, start + 100)])

        producer = asyncio.create_task(produce())
        received = b""
        while received.count(b"\n\n") < total:
            received += await asyncio.wait_for(resp.content.readany(), 5)
        await producer
        lines = received.split(b"\n\n")[:-1]
        assert [data(line + b"\n\n")["i"] for line in lines] == list(range(total))
        assert sink.stats().dropped_count == 0


async def test_closing_the_sink_ends_the_streams() -> None:
    sink = SseSink()
    port = await sink.serve(HOST, 0)
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"http://{HOST}:{port}/")
        await sink.wait_for_subscribers(1, timeout=5)
        await sink.close()
        assert await asyncio.wait_for(resp.content.read(), 5) == b""
        await eventually(lambda: sink.subscriber_count == 0, "the subscriber to be gone")

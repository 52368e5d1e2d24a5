"""A worker's MasterClient across a change of master, over real HTTP on 127.0.0.1: through a
follower (503 while it knows no leader, 307/302 to the leader) and, with ZooKeeper, to the
leader published at `<root>/leader` as it changes (a real ZooKeeper); a job source too."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from kazoo.client import KazooClient

from adapters.http.follower import create_follower_app
from common.backoff import Backoff
from common.master_location import MasterLocation
from runtime.master_client import STATUS_PATH, MasterClient
from runtime.sources import JobSource
from tests.eventually import eventually
from tests.integration.source_helpers import (
    FAST,
    Reader,
    consumer,
    upstream,
    wait_subscribers,
)

pytestmark = pytest.mark.timeout(60)
JOB = "demo-1"


class FakeMaster:
    """A leader that records what reaches it; its discovery stream sends one frame naming
    it and then nothing (as a hung or deposed master might)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.statuses: list[tuple[str | None, Any]] = []
        self.kills: list[tuple[str | None, Mapping[str, str]]] = []
        self.done = asyncio.Event()
        app = web.Application()
        app.router.add_post(STATUS_PATH, self.status)
        app.router.add_delete("/api/v1/jobs/{job}", self.kill)
        app.router.add_get("/api/v1/jobDiscoveryStream/{job}", self.discovery)
        self.server = TestServer(app)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def description(self) -> dict[str, Any]:
        return {"hostname": self.name, "url": self.url, "epoch": 1}

    async def status(self, request: web.Request) -> web.Response:
        self.statuses.append((request.headers.get("Authorization"), await request.json()))
        return web.Response(status=204)

    async def kill(self, request: web.Request) -> web.Response:
        self.kills.append((request.headers.get("Authorization"), dict(request.query)))
        return web.Response(status=202)

    async def discovery(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + orjson.dumps({"jobId": JOB, "master": self.name}) + b"\n\n")
        await self.done.wait()
        return resp

    async def close(self) -> None:
        self.done.set()
        await self.server.close()


@pytest.fixture
async def masters() -> AsyncIterator[tuple[FakeMaster, FakeMaster]]:
    a, b = FakeMaster("a"), FakeMaster("b")
    await a.server.start_server()
    await b.server.start_server()
    yield a, b
    await a.close()
    await b.close()


def client(session: aiohttp.ClientSession, url: str, **options: Any) -> MasterClient:
    return MasterClient(session, url, JOB, 1, 0, 1, "host-1", "secret", **options)


def count(logs: Sequence[Mapping[str, Any]], event: str) -> int:
    return sum(1 for e in logs if e["event"] == event)


async def test_through_a_follower_calls_wait_for_a_leader_then_reach_it_whole(
    masters: tuple[FakeMaster, FakeMaster],
) -> None:
    leader, _ = masters
    known: list[dict[str, Any]] = []
    follower = TestServer(
        create_follower_app(lambda: known[0] if known else None, MasterLocation(""))
    )
    await follower.start_server()
    try:
        async with (
            aiohttp.ClientSession() as session,
            client(session, str(follower.make_url(""))) as master,
        ):
            with structlog.testing.capture_logs() as logs:
                heartbeat = asyncio.create_task(
                    master.post_status(None, "HEARTBEAT", "hb", attempts=1)
                )
                # 503s (no leader yet) are waited out, even by a call allowed one attempt
                await eventually(lambda: count(logs, "master_status_error") >= 3, "three 503s")
                assert not heartbeat.done()
                assert all(e["status"] == 503 for e in logs if e["event"] == "master_status_error")
                known.append(leader.description())
                assert await asyncio.wait_for(heartbeat, 10) is True
            ((auth, body),) = leader.statuses
            assert auth == "Bearer secret"  # kept across the 307 to another port
            assert body["status"]["type"] == "HEARTBEAT" and body["jobId"] == JOB
            assert await master.post_status("Started", attempts=1) is True
            assert leader.statuses[-1][1]["status"]["state"] == "Started"
            assert await master.kill_job("no subscriber") is True
            assert leader.kills == [
                ("Bearer secret", {"user": f"{JOB}-worker-0-1", "reason": "no subscriber"})
            ]
            info = await asyncio.wait_for(anext(master.scheduling_changes()), 10)  # by a 302
            assert info["master"] == "a"
    finally:
        await follower.close()


async def test_a_refusal_is_not_retried_and_other_errors_only_up_to_the_attempts() -> None:
    to_answer = [400, 500, 500, 500]
    answered: list[int] = []

    async def answer(request: web.Request) -> web.Response:
        answered.append(to_answer.pop(0))
        return web.json_response({"error": "no"}, status=answered[-1])

    app = web.Application()
    app.router.add_post(STATUS_PATH, answer)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            master = client(session, str(server.make_url("")))
            master.backoff = Backoff(initial=0.01, maximum=0.02)
            assert await master.post_status("Started", attempts=3) is False
            assert answered == [400]
            assert await master.post_status("Started", attempts=3) is False
            assert answered == [400, 500, 500, 500]
    finally:
        await server.close()


async def test_with_zookeeper_the_client_follows_the_published_leader(
    masters: tuple[FakeMaster, FakeMaster], zookeeper: str
) -> None:
    a, b = masters
    chroot = f"/discovery-{uuid.uuid4().hex[:8]}"
    zk = KazooClient(hosts=zookeeper)
    zk.start(10)
    path = f"{chroot}/mantis/master/leader"

    def publish(master: FakeMaster) -> None:
        zk.ensure_path(path)
        zk.set(path, orjson.dumps(master.description()))

    try:
        publish(a)
        async with (
            aiohttp.ClientSession() as session,
            client(session, a.url, zk=f"{zookeeper}{chroot}") as master,
        ):
            changes = master.scheduling_changes()
            assert (await asyncio.wait_for(anext(changes), 10))["master"] == "a"
            # a new leader: the stream to the old one (open, silent) is dropped for the new one
            moved_at = time.monotonic()
            await asyncio.to_thread(publish, b)
            assert (await asyncio.wait_for(anext(changes), 10))["master"] == "b"
            took = time.monotonic() - moved_at
            print(f"stream moved to the new leader in {took:.3f} s")
            assert took < 2.0 and master.base_url == b.url
            # b dies; calls wait (connection refused), then reach the next leader published
            await b.close()
            with structlog.testing.capture_logs() as logs:
                heartbeat = asyncio.create_task(
                    master.post_status(None, "HEARTBEAT", "hb", attempts=1)
                )
                await eventually(lambda: count(logs, "master_unreachable") >= 3, "3 refusals")
                assert not heartbeat.done()
                published_at = time.monotonic()
                await asyncio.to_thread(publish, a)
                assert await asyncio.wait_for(heartbeat, 10) is True
                took = time.monotonic() - published_at
            print(f"a waiting heartbeat reached the new leader {took:.3f} s after it was published")
            assert took < 2.0  # the back-off is cut short when the leader moves
            assert a.statuses[-1][1]["status"]["type"] == "HEARTBEAT"
            assert master.base_url == a.url
    finally:
        zk.stop()
        zk.close()


async def test_with_zookeeper_a_job_source_moves_to_the_new_leader(
    zookeeper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chroot = f"/discovery-{uuid.uuid4().hex[:8]}"
    path = f"{chroot}/mantis/master/leader"
    zk = KazooClient(hosts=zookeeper)
    zk.start(10)

    def publish_leader(url: str) -> None:
        zk.ensure_path(path)
        zk.set(path, orjson.dumps({"url": url, "epoch": 1}))

    async with upstream() as old, upstream() as new:
        try:
            _, old_sinks = await old.start_job(old.submit())
            _, new_sinks = await new.start_job(new.submit())
            publish_leader(old.url)
            monkeypatch.setenv("MANTIS_MASTER_URL", old.url)
            monkeypatch.setenv("MANTIS_ZK", f"{zookeeper}{chroot}")
            reader = Reader(JobSource("up", backoff=FAST), consumer())
            await wait_subscribers(old_sinks, 1)
            # the old master stays up, its streams open: the source leaves it for the new one
            await asyncio.to_thread(publish_leader, new.url)
            await wait_subscribers(new_sinks, 1)
            await wait_subscribers(old_sinks, 0)
            sent = [{"from": "new", "i": i} for i in range(5)]
            new_sinks[0].publish_many(sent)
            await eventually(lambda: reader.events == sent, "events through the new leader")
            assert reader.metric("job_source_switches") == 0  # the same job, by name
            await reader.stop()
        finally:
            zk.stop()
            zk.close()

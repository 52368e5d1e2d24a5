"""The CLI's client across masters, over real HTTP on 127.0.0.1: a follower's 307 and 302 are
followed with the method, body and token kept; `--zk` finds the leader in a real ZooKeeper."""

from __future__ import annotations

import asyncio
import email.message
import urllib.error
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kazoo.client import KazooClient

from adapters.cli.client import MantisClient, MasterUnreachable, find_leader
from adapters.cli.main import main
from adapters.http.follower import create_follower_app
from common.master_location import MasterLocation
from mesoslite.local import free_port

pytestmark = pytest.mark.timeout(60)
PAGE = {"list": [{"jobMetadata": {"jobId": "ha-1"}}], "prev": None, "next": None, "total": 1}


class Leader:
    """A leader that records every call: method, path and query, token, body."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None, bytes]] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        auth = request.headers.get("Authorization")
        self.calls.append((request.method, request.path_qs, auth, body))
        if request.method == "GET":
            return web.json_response(PAGE)
        return web.json_response({"name": "ha", "echo": orjson.loads(body or b"null")}, status=201)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def leader_and_follower() -> AsyncIterator[tuple[Leader, str]]:
    leader = Leader()
    await leader.server.start_server()
    follower = TestServer(
        create_follower_app(lambda: {"url": leader.url, "epoch": 2}, MasterLocation(leader.url))
    )
    await follower.start_server()
    yield leader, str(follower.make_url("")).rstrip("/")
    await follower.close()
    await leader.server.close()


async def test_calls_through_a_follower_reach_the_leader_as_sent(
    leader_and_follower: tuple[Leader, str],
) -> None:
    leader, follower = leader_and_follower
    client = MantisClient(follower, token="secret")
    definition = {"jobDefinition": {"name": "ha", "user": "t"}}
    created = await asyncio.to_thread(client.create_cluster, definition)
    assert created["echo"] == definition
    jobs = await asyncio.to_thread(client.list_jobs, "ha")
    assert jobs == PAGE["list"]
    await asyncio.to_thread(client.kill_job, "ha-1", "t", "done")
    (post, get, delete) = leader.calls
    assert post == ("POST", "/api/v1/jobClusters", "Bearer secret", orjson.dumps(definition))
    assert get[:3] == ("GET", "/api/v1/jobClusters/ha/jobs?activeOnly=true", "Bearer secret")
    assert delete[:3] == ("DELETE", "/api/v1/jobs/ha-1?user=t&reason=done", "Bearer secret")


async def test_a_token_of_this_machine_does_not_follow_a_redirect_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MANTIS_API_TOKEN", raising=False)
    elsewhere = "http://192.0.2.1:8100"  # TEST-NET-1: never reached, the request is only built
    client = MantisClient("http://127.0.0.1:1", token=None)
    client.token = "local"  # as discover_token would find it in ./mantis-data
    request = client._request("POST", "/api/v1/jobs", body={})
    seen: list[Any] = []

    def opener(req: Any, timeout: float | None = None) -> Any:
        seen.append(req)
        if len(seen) == 1:
            raise _redirect(req.full_url, elsewhere + "/api/v1/jobs")
        raise ConnectionRefusedError  # stop there

    monkeypatch.setattr("adapters.cli.client._OPENER.open", opener)
    with pytest.raises(ConnectionRefusedError):
        client._open(request, 1.0)
    assert seen[0].get_header("Authorization") == "Bearer local"
    assert seen[1].full_url == elsewhere + "/api/v1/jobs" and seen[1].get_method() == "POST"
    assert seen[1].get_header("Authorization") is None and seen[1].data == b"{}"


def _redirect(url: str, location: str) -> Exception:
    headers = email.message.Message()
    headers["Location"] = location
    return urllib.error.HTTPError(url, 307, "Temporary Redirect", headers, None)


async def test_zk_finds_the_published_leader_and_says_when_there_is_none(
    leader_and_follower: tuple[Leader, str], zookeeper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    leader, _ = leader_and_follower
    chroot = f"/cli-{uuid.uuid4().hex[:8]}"
    with pytest.raises(MasterUnreachable, match="no Mantis leader is published"):
        await asyncio.to_thread(find_leader, f"{zookeeper}{chroot}")
    zk = KazooClient(hosts=zookeeper)
    await asyncio.to_thread(zk.start, 10)
    try:
        path = f"{chroot}/mantis/master/leader"
        await asyncio.to_thread(zk.create, path, orjson.dumps({"url": leader.url}), makepath=True)
    finally:
        await asyncio.to_thread(zk.stop)
        zk.close()
    assert await asyncio.to_thread(find_leader, f"{zookeeper}{chroot}") == leader.url
    argv = ["job", "list", "--zk", f"{zookeeper}{chroot}", "--token", "t", "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    assert "ha-1" in capsys.readouterr().out
    assert leader.calls[-1][:2] == ("GET", "/api/v1/jobs?activeOnly=true")


async def test_zk_that_does_not_answer_is_one_clear_error() -> None:
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(MasterUnreachable, match=f"cannot reach ZooKeeper at {nobody} within 1 s"):
        await asyncio.to_thread(find_leader, nobody, timeout=1.0)

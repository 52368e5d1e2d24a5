"""A follower master: says who leads, redirects every call to the leader, 503 without one."""

from __future__ import annotations

from typing import Any

from adapters.http.follower import create_follower_app
from common.master_location import MasterLocation

LEADER = {
    "hostname": "m1",
    "hostIP": "127.0.0.1",
    "apiPort": 8101,
    "url": "http://127.0.0.1:8101",
    "epoch": 4,
}


async def test_reads_go_by_302_and_writes_by_307_to_the_leader(aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        create_follower_app(lambda: LEADER, MasterLocation(str(LEADER["url"])))
    )
    read = await client.get("/api/v1/jobs?limit=2", allow_redirects=False)
    assert (
        read.status == 302
        and read.headers["Location"] == "http://127.0.0.1:8101/api/v1/jobs?limit=2"
    )
    write = await client.post("/api/v1/jobs", json={"name": "x"}, allow_redirects=False)
    assert write.status == 307 and write.headers["Location"] == "http://127.0.0.1:8101/api/v1/jobs"
    info = await (await client.get("/api/v1/masterInfo")).json()
    assert info == {"isLeader": False, "leader": LEADER}
    health = await client.get("/api/v1/healthcheck")
    assert health.status == 503 and "127.0.0.1:8101" in (await health.json())["failureReason"]


async def test_without_a_known_leader_calls_are_503(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_follower_app(lambda: None, MasterLocation("")))
    resp = await client.post("/api/v1/jobs", json={}, allow_redirects=False)
    assert resp.status == 503 and "no leader" in (await resp.json())["error"]
    assert (await (await client.get("/api/v1/masterInfo")).json())["leader"] is None


async def test_the_follower_echoes_its_instance_id(aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        create_follower_app(lambda: LEADER, MasterLocation(""), instance_id="up-1")
    )
    assert (await (await client.get("/api/v1/masterInfo")).json())["instanceId"] == "up-1"


async def test_an_artifact_upload_is_redirected_like_any_write(aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        create_follower_app(lambda: LEADER, MasterLocation(str(LEADER["url"])))
    )
    resp = await client.post(
        "/api/v1/jobArtifacts?name=job.py",
        data=b"def job(): ...",
        headers={"Content-Type": "application/octet-stream"},
        allow_redirects=False,
    )
    assert resp.status == 307, await resp.text()

"""Artifact upload and download (size limit, safe names, ETag/304) and bearer-token auth."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from adapters.http.app import create_app, serve
from adapters.http.artifacts import ArtifactStore
from tests.fakes import memory_master
from tests.integration.http_helpers import HOST, ApiClient, Client, Clock, cluster_body

ARTIFACTS = "/api/v1/jobArtifacts"
TOKEN = "s3cret-token-value"


@pytest.fixture
def artifact_api(api_client: ApiClient) -> ApiClient:
    """`await artifact_api(folder, max_bytes, **options)`: the API with an artifact store."""

    async def start(folder: Path, max_bytes: int = 1024, **kwargs: Any) -> Client:
        artifacts = ArtifactStore(folder, max_bytes)
        return await api_client(memory_master(Clock()), artifacts=artifacts, **kwargs)

    return start


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------ artifacts


async def test_upload_then_download_with_etag_and_304(
    tmp_path: Path, artifact_api: ApiClient
) -> None:
    client = await artifact_api(tmp_path)
    data = b"PK\x03\x04 pretend zip"
    resp = await client.post(f"{ARTIFACTS}?name=job-1.0.zip", data=data)
    assert resp.status == 201, await resp.text()
    stored = await resp.json()
    assert stored["name"] == "job-1.0.zip" and stored["size"] == len(data)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["url"] == f"http://{HOST}:{client.port}{ARTIFACTS}/job-1.0.zip"
    assert (tmp_path / "job-1.0.zip").read_bytes() == data
    assert files(tmp_path) == ["job-1.0.zip"]  # no temporary file left

    resp = await client.get(f"{ARTIFACTS}/job-1.0.zip")
    assert resp.status == 200 and await resp.read() == data
    assert resp.headers["ETag"] == stored["etag"]
    assert resp.headers["Content-Type"] == "application/octet-stream"
    resp = await client.get(f"{ARTIFACTS}/job-1.0.zip", headers={"If-None-Match": stored["etag"]})
    assert resp.status == 304 and await resp.read() == b""

    resp = await client.post(f"{ARTIFACTS}?name=job-1.0.zip", data=b"a new build")
    assert resp.status == 201
    replaced = await resp.json()
    assert replaced["etag"] != stored["etag"]
    resp = await client.get(f"{ARTIFACTS}/job-1.0.zip", headers={"If-None-Match": stored["etag"]})
    assert resp.status == 200 and await resp.read() == b"a new build"


async def test_multipart_upload_names_and_listing(tmp_path: Path, artifact_api: ApiClient) -> None:
    client = await artifact_api(tmp_path)
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field("file", b"print('hi')\n", filename="hello.py")
    resp = await client.post(ARTIFACTS, data=form)
    assert resp.status == 201, await resp.text()
    assert (tmp_path / "hello.py").read_bytes() == b"print('hi')\n"
    form = aiohttp.FormData()
    form.add_field("file", b"zip", filename="ignored.zip")
    resp = await client.post(f"{ARTIFACTS}?name=renamed.zip", data=form)
    assert resp.status == 201 and (tmp_path / "renamed.zip").exists()

    names = await (await client.get(f"{ARTIFACTS}/names")).json()
    assert names == ["hello.py", "renamed.zip"]
    assert await (await client.get(f"{ARTIFACTS}/names?prefix=re")).json() == ["renamed.zip"]
    assert await (await client.get(f"{ARTIFACTS}/names?contains=.py")).json() == ["hello.py"]
    listing = await (await client.get(ARTIFACTS)).json()
    assert [(a["name"], a["size"]) for a in listing] == [
        ("hello.py", 12),
        ("renamed.zip", 3),
    ]


@pytest.mark.parametrize(
    "name",
    [
        "../escape.zip",
        "a/b.zip",
        ".hidden",
        "names",
        "",
        "x" * 256,
        "sp ace.zip",
        "semi;colon",
        "é.zip",
    ],
)
async def test_unsafe_names_are_400_naming_name_and_write_nothing(
    tmp_path: Path, name: str, artifact_api: ApiClient
) -> None:
    client = await artifact_api(tmp_path / "artifacts")
    resp = await client.post(ARTIFACTS, params={"name": name}, data=b"data")
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["field"] == "name"
    assert files(tmp_path) == []  # not even the artifact folder was made


async def test_size_limit_is_413_and_leaves_nothing(
    tmp_path: Path, artifact_api: ApiClient
) -> None:
    client = await artifact_api(tmp_path, max_bytes=1000)
    resp = await client.post(f"{ARTIFACTS}?name=big.zip", data=b"x" * 1001)
    assert resp.status == 413 and "1000" in (await resp.json())["error"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(20):
            yield b"y" * 100

    resp = await client.post(f"{ARTIFACTS}?name=big.zip", data=chunked())
    assert resp.status == 413
    assert files(tmp_path) == []
    resp = await client.post(f"{ARTIFACTS}?name=fits.zip", data=b"z" * 1000)
    assert resp.status == 201 and files(tmp_path) == ["fits.zip"]


async def test_download_errors(tmp_path: Path, artifact_api: ApiClient) -> None:
    client = await artifact_api(tmp_path)
    resp = await client.get(f"{ARTIFACTS}/missing.zip")
    assert resp.status == 404 and "missing.zip" in (await resp.json())["error"]
    resp = await client.get(f"{ARTIFACTS}/..%2Fsecret")
    assert resp.status in (400, 404)
    assert resp.content_type == "application/json"
    resp = await client.get(f"{ARTIFACTS}/.hidden")
    assert resp.status == 400 and (await resp.json())["field"] == "name"
    resp = await client.post(ARTIFACTS, data=b"no name")
    assert resp.status == 400 and (await resp.json())["field"] == "name"


async def test_without_a_store_there_are_no_artifact_routes(api_client: ApiClient) -> None:
    client = await api_client(memory_master(Clock()))
    assert (await client.get(f"{ARTIFACTS}/names")).status == 404
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert not [p for p in doc["paths"] if p.startswith(ARTIFACTS)]


# ------------------------------------------------------------------------ auth


async def test_with_a_token_every_mutating_call_needs_it(
    tmp_path: Path, artifact_api: ApiClient
) -> None:
    client = await artifact_api(tmp_path, api_token=TOKEN)
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/jobClusters", {"json": cluster_body()}),
        ("PUT", "/api/v1/jobClusters/demo", {"json": cluster_body()}),
        ("DELETE", "/api/v1/jobClusters/demo?user=a", {}),
        ("POST", "/api/v1/jobs/actions/postJobStatus", {"json": {}}),
        ("POST", f"{ARTIFACTS}?name=a.zip", {"data": b"x"}),
    ]
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        for method, path, kwargs in calls:
            resp = await client.request(method, path, headers=headers, **kwargs)
            assert resp.status == 401, (method, path, headers)
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert (await resp.json())["field"] == "Authorization"
    assert files(tmp_path) == []
    assert (await client.get("/api/v1/jobClusters/demo")).status == 404  # nothing made
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.post("/api/v1/jobClusters", json=cluster_body(), headers=auth)
    assert resp.status == 201
    resp = await client.post(f"{ARTIFACTS}?name=a.zip", data=b"x", headers=auth)
    assert resp.status == 201
    # Reads stay open: workers fetch artifacts, people list jobs, without a token.
    assert (await client.get("/api/v1/jobClusters/demo")).status == 200
    assert (await client.get(f"{ARTIFACTS}/a.zip")).status == 200


async def test_without_a_token_nothing_is_asked(tmp_path: Path, artifact_api: ApiClient) -> None:
    client = await artifact_api(tmp_path)
    resp = await client.post("/api/v1/jobClusters", json=cluster_body())
    assert resp.status == 201


async def test_tokens_never_appear_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Over a real server (aiohttp's access log included), with good, bad and failing calls."""
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        master = memory_master(Clock())
        app = create_app(master, artifacts=ArtifactStore(tmp_path), api_token=TOKEN)
        runner, port = await serve(app)
        try:
            async with aiohttp.ClientSession(f"http://{HOST}:{port}") as session:
                for auth in (f"Bearer {TOKEN}", f"Bearer {TOKEN}x", TOKEN):
                    headers = {"Authorization": auth, "User-Agent": TOKEN, "Referer": TOKEN}
                    for body in (cluster_body(), {"jobDefinition": 1}):
                        async with session.post("/api/v1/jobClusters", json=body, headers=headers):
                            pass
                    async with session.get("/api/v1/jobs", headers=headers):
                        pass
        finally:
            await runner.cleanup()
    assert any(e["event"] == "http_unauthorized" for e in events)
    assert any(e["event"] == "http_request" for e in events)
    assert TOKEN not in repr(events)
    assert TOKEN not in caplog.text

"""No drive-by takeover: what a web page could send the master is refused and changes nothing.

A real server on 127.0.0.1 (adapters.http.app.serve) gets requests as a browser sends them:
`Origin`, `Sec-Fetch-Site`, a rebinding page's `Host`, the `text/plain` and form bodies that
need no CORS preflight. curl-like calls (no `Origin`), same-origin pages and the CLI's client
still work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.cli.client import MantisClient
from adapters.http.app import create_app, serve
from adapters.http.artifacts import ArtifactStore
from service.master import MasterService
from tests.fakes import memory_master
from tests.integration.http_helpers import HOST, Clock, cluster_body

CLUSTERS = "/api/v1/jobClusters"
ARTIFACTS = "/api/v1/jobArtifacts"
EVIL = "http://evil.example"


@dataclass
class Server:
    master: MasterService
    folder: Path
    port: int
    session: aiohttp.ClientSession

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        """(status, JSON body or None, headers)."""
        async with self.session.request(method, self.origin + path, **kwargs) as resp:
            raw = await resp.read()
            body = orjson.loads(raw) if resp.content_type == "application/json" else None
            return resp.status, body, resp.headers

    def unchanged_since(self, before: tuple[int, object]) -> bool:
        return (len(self.master.store.events), self.master.plane.snapshot()) == before

    def state(self) -> tuple[int, object]:
        return len(self.master.store.events), self.master.plane.snapshot()


@asynccontextmanager
async def server(folder: Path, **kwargs: Any) -> AsyncIterator[Server]:
    master = memory_master(Clock())
    runner, port = await serve(create_app(master, artifacts=ArtifactStore(folder), **kwargs))
    try:
        async with aiohttp.ClientSession() as session:
            yield Server(master, folder, port, session)
    finally:
        await runner.cleanup()


def refused(status: int, body: Any, expected: int, field: str) -> None:
    assert status == expected, body
    assert body["field"] == field and body["error"].startswith(f"{field}: "), body


# ------------------------------------------------------------------------ cross-site mutations


async def test_a_cross_site_page_cannot_create_a_cluster_submit_a_job_or_upload(
    tmp_path: Path,
) -> None:
    """The no-preflight requests a page can send: refused before any handler runs."""
    async with server(tmp_path) as s:
        text = orjson.dumps(cluster_body()).decode()
        before = s.state()
        # fetch(url, {method: "POST", mode: "no-cors", body: text}): text/plain, with Origin
        status, body, _ = await s.call(
            "POST", CLUSTERS, data=text, headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
        )
        refused(status, body, 403, "Sec-Fetch-Site")
        status, body, _ = await s.call("POST", CLUSTERS, data=text, headers={"Origin": EVIL})
        refused(status, body, 403, "Origin")
        # the same from an older browser sending no Sec-Fetch-* and a form's type
        form = {"Origin": "null", "Content-Type": "application/x-www-form-urlencoded"}
        status, body, _ = await s.call("POST", CLUSTERS, data=text, headers=form)
        refused(status, body, 403, "Origin")
        status, body, _ = await s.call(
            "POST",
            "/api/v1/jobs",
            headers={"Origin": EVIL},
            json={"name": "demo", "user": "mallory"},
        )
        refused(status, body, 403, "Origin")
        upload = aiohttp.FormData()
        upload.add_field("file", b"import os", filename="evil.py")
        status, body, _ = await s.call("POST", ARTIFACTS, data=upload, headers={"Origin": EVIL})
        refused(status, body, 403, "Origin")
        status, body, _ = await s.call(
            "POST",
            f"{ARTIFACTS}?name=evil.py",
            data=b"import os",
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        refused(status, body, 403, "Sec-Fetch-Site")
        assert s.unchanged_since(before)
        assert (await s.call("GET", f"{CLUSTERS}/demo"))[0] == 404
        assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


async def test_simple_request_bodies_are_refused_even_without_an_origin(tmp_path: Path) -> None:
    """text/plain and form bodies are 415 on every mutation, uploads included."""
    async with server(tmp_path) as s:
        await s.call("POST", CLUSTERS, json=cluster_body())
        before = s.state()
        text = orjson.dumps(cluster_body("other")).decode()
        for ctype in (
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            None,
        ):
            headers = {"Content-Type": ctype} if ctype else {}
            skip = () if ctype else ("Content-Type",)
            for path in (
                CLUSTERS,
                "/api/v1/jobs",
                f"{CLUSTERS}/demo/actions/disableCluster",
                f"{ARTIFACTS}?name=x.py",
            ):
                async with s.session.post(
                    s.origin + path, data=text.encode(), headers=headers, skip_auto_headers=skip
                ) as resp:
                    body = await resp.json()
                refused(resp.status, body, 415, "Content-Type")
        status, body, _ = await s.call("PUT", f"{CLUSTERS}/demo", data=text)
        refused(status, body, 415, "Content-Type")
        assert s.unchanged_since(before)
        assert not tmp_path.exists() or list(tmp_path.iterdir()) == []
        assert not (await s.call("GET", f"{CLUSTERS}/demo"))[1]["disabled"]


async def test_same_origin_pages_curl_and_the_cli_still_work(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        same = {"Origin": s.origin, "Sec-Fetch-Site": "same-origin"}
        status, body, headers = await s.call("POST", CLUSTERS, json=cluster_body("a"), headers=same)
        assert status == 201, body
        assert not [h for h in headers if h.lower().startswith("access-control-")]
        assert (await s.call("POST", CLUSTERS, json=cluster_body("b")))[0] == 201  # curl
        form = aiohttp.FormData()
        form.add_field("file", b"x = 1\n", filename="page.py", content_type="text/x-python")
        status, body, _ = await s.call("POST", ARTIFACTS, data=form, headers=same)
        assert status == 201, body
        status, body, _ = await s.call(
            "POST",
            f"{ARTIFACTS}?name=z.zip",
            data=b"PK",
            headers={"Content-Type": "application/zip"},
        )
        assert status == 201, body
        # localhost names the same server: a page on http://localhost:<port> is its own origin
        local = {"Host": f"localhost:{s.port}", "Origin": f"http://localhost:{s.port}"}
        status, body, _ = await s.call("POST", CLUSTERS, json=cluster_body("c"), headers=local)
        assert status == 201, body
        # DELETE from the same origin, with no body
        status, body, _ = await s.call("DELETE", f"{CLUSTERS}/c?user=alice", headers=local)
        assert status == 204, body

        # The CLI's client (urllib), unchanged: JSON bodies and an octet-stream upload.
        script = tmp_path / "job.py"
        script.write_text("x = 1\n")
        client = MantisClient(s.origin)
        uploaded = await asyncio.to_thread(client.upload_artifact, script)
        assert uploaded["name"] == "job.py"
        definition = cluster_body("cli")
        definition["jobDefinition"]["jobJarFileLocation"] = uploaded["url"]
        created = await asyncio.to_thread(client.create_cluster, definition)
        assert created["name"] == "cli"
        job = await asyncio.to_thread(client.submit_job, "cli", "alice")
        assert job["jobMetadata"]["jobId"] == "cli-1"
        await asyncio.to_thread(client.kill_job, "cli-1", "alice", "done")
        await asyncio.to_thread(client.disable_cluster, "cli", "alice")


async def test_allowed_origins_are_let_through(tmp_path: Path) -> None:
    async with server(tmp_path, allowed_origins=["https://console.example"]) as s:
        status, body, _ = await s.call(
            "POST", CLUSTERS, json=cluster_body(), headers={"Origin": "https://console.example"}
        )
        assert status == 201, body
        status, body, _ = await s.call(
            "POST",
            CLUSTERS,
            json=cluster_body("b"),
            headers={"Origin": "https://console.example:8443"},
        )
        refused(status, body, 403, "Origin")


async def test_preflights_are_refused_without_cors_headers(tmp_path: Path) -> None:
    async with server(tmp_path) as s:
        headers = {
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        for path in (CLUSTERS, "/api/v1/jobs", ARTIFACTS):
            status, body, got = await s.call("OPTIONS", path, headers=headers)
            refused(status, body, 403, "Origin")
            assert not [h for h in got if h.lower().startswith("access-control-")]


# ------------------------------------------------------------------------ DNS rebinding


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "10.0.0.1:{port}",
        "",
        "a b",
    ],
)
async def test_a_rebinding_page_can_neither_read_nor_write(tmp_path: Path, host: str) -> None:
    async with server(tmp_path) as s:
        await s.call("POST", CLUSTERS, json=cluster_body())
        before = s.state()
        evil = {"Host": host.format(port=s.port)}
        for method, path, kwargs in (
            ("GET", "/api/v1/jobs", {}),
            ("GET", f"{CLUSTERS}/demo", {}),
            ("GET", "/jobconnectbyname/demo", {}),
            ("GET", f"{ARTIFACTS}/names", {}),
            ("POST", "/api/v1/jobs", {"json": {"name": "demo", "user": "mallory"}}),
        ):
            status, body, _ = await s.call(method, path, headers=evil, **kwargs)
            refused(status, body, 403, "Host")
        assert s.unchanged_since(before)


@pytest.mark.parametrize(
    "host",
    [
        "localhost:{port}",
        "LOCALHOST",
        "127.0.0.1",
        "127.1.2.3:{port}",
        "[::1]:{port}",
        "mantis.internal:{port}",
    ],
)
async def test_loopback_and_allowed_hosts_are_served(tmp_path: Path, host: str) -> None:
    async with server(tmp_path, allowed_hosts=["Mantis.Internal"]) as s:
        status, body, _ = await s.call(
            "GET", "/api/v1/jobs", headers={"Host": host.format(port=s.port)}
        )
        assert status == 200, body


async def test_a_cross_site_page_cannot_open_a_websocket_to_read_job_status(tmp_path: Path) -> None:
    """Browsers let any page open a WebSocket anywhere (no CORS): the handshake's Origin counts."""
    async with server(tmp_path) as s:
        await s.call("POST", CLUSTERS, json=cluster_body())
        status, body, _ = await s.call("POST", "/api/v1/jobs", json={"name": "demo", "user": "a"})
        assert status == 201, body
        url = f"{s.origin}/api/v1/jobStatusStream/demo-1"
        for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
                await s.session.ws_connect(url, headers=headers)
            assert refused_ws.value.status == 403
        async with s.session.ws_connect(url, headers={"Origin": s.origin}) as ws:
            assert not ws.closed

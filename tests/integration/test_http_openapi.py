"""The OpenAPI document: well formed, equal to the app's routes, and true of the running server.

The schemathesis run drives every documented operation (but the two endless SSE streams)
against a real server on loopback that already holds cluster `demo` (the document's
examples name it) with a running job `demo-1`, and fails on any 5xx, on any status code the
document does not list, and on any body or content type that breaks the document.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.http.app import create_app, serve
from adapters.http.artifacts import ArtifactStore
from adapters.http.openapi import PATH, document
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from service.master import MasterService
from tests.fakes import memory_master

HOST = "127.0.0.1"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route; HEAD comes with every GET in aiohttp."""
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, p) for p, item in doc["paths"].items() for m in item if m in METHODS}


def refs(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


@pytest.mark.parametrize("with_artifacts", [True, False])
def test_document_is_well_formed_openapi_3(with_artifacts: bool) -> None:
    doc = document(with_artifacts)
    assert doc["openapi"].startswith("3.0.")
    assert doc["info"]["title"] and doc["info"]["version"]
    schemas = doc["components"]["schemas"]
    for target in refs(doc):
        assert target.startswith("#/components/schemas/") and target.rpartition("/")[2] in schemas
    operation_ids = []
    for path, item in doc["paths"].items():
        assert path == "/" or path.startswith(
            ("/api/v1/", "/jobconnectby", "/jobsubmitandconnect", "/metrics", "/dashboard/")
        )  # Mantis API's, Prometheus' and the dashboard's
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            assert method in METHODS, (path, method)
            operation_ids.append(operation["operationId"])
            params = operation.get("parameters", [])
            for p in params:
                assert p["in"] in ("path", "query", "header") and "schema" in p, (path, p)
            assert {p["name"] for p in params if p["in"] == "path"} == in_path, (path, method)
            assert all(p["required"] for p in params if p["in"] == "path")
            assert operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status) and response["description"]
                if 400 <= int(status) < 500:
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"
                    }
            if method in ("post", "put", "delete"):
                assert operation["security"] == [{"bearer": []}] and "401" in operation["responses"]
            assert "403" in operation["responses"], (path, method)  # Host and Origin checks
            body = operation.get("requestBody")
            if body is not None:
                assert body["content"] and all("schema" in m for m in body["content"].values())
                assert "415" in operation["responses"] and "text/plain" not in body["content"]
    assert len(operation_ids) == len(set(operation_ids))
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("with_artifacts", [True, False])
def test_document_matches_the_routes_both_ways(tmp_path: Path, with_artifacts: bool) -> None:
    artifacts = ArtifactStore(tmp_path) if with_artifacts else None
    app = create_app(memory_master(), artifacts=artifacts)
    assert documented(document(with_artifacts)) == app_routes(app)
    assert ("get", PATH) in app_routes(app)


# ------------------------------------------------------------------------ schemathesis


def seeded_master() -> MasterService:
    """Cluster `demo` (stage 1 scalable) and its job demo-1, running (so scaleStage works)."""
    master = memory_master(lambda: 1_800_000_000.0)
    stage = StageSchedulingInfo(1, MachineDefinition(1, 512), scalable=True)
    config = JobClusterConfig("demo-1.0.zip", "1", 1_800_000_000.0, SchedulingInfo((stage,)))
    master.run(lambda p, now: p.create_cluster(JobClusterDefinition("demo", (config,)), now))
    master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    wid = "demo-1-worker-0-1"
    master.run(lambda p, now: p.worker_launched(wid, "agent-1", "host-1", (31000,), now))
    master.run(lambda p, now: p.heartbeat(wid, now))
    assert master.plane.job("demo-1").state.value == "Launched"
    return master


@contextmanager
def server_thread(app: web.Application) -> Iterator[int]:
    """`app` served on loopback by an event loop in a thread (the test blocks on a subprocess)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    bound: list[int] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        runner, port = loop.run_until_complete(serve(app, HOST))
        bound.append(port)
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10), "server did not start"
    try:
        yield bound[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is installed but its `st` command is not next to python"
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "demo-1.0.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    app = create_app(seeded_master(), artifacts=ArtifactStore(tmp_path / "artifacts", 4096))
    with server_thread(app) as port:
        result = subprocess.run(
            [
                st,
                "run",
                f"http://{HOST}:{port}{PATH}",
                "--checks",
                "not_a_server_error,status_code_conformance,"
                "content_type_conformance,response_schema_conformance",
                "--exclude-tag",
                "stream",
                "--phases",
                "examples,coverage,fuzzing",
                "--mode",
                "all",
                "--max-examples",
                "4",
                "--generation-deterministic",
                "--request-timeout",
                "5",
                "--workers",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    tested = re.search(r"(\d+) generated, (\d+) passed", output)
    assert tested and tested.group(1) == tested.group(2) and int(tested.group(1)) > 500, output[
        -3000:
    ]

"""The fetcher end to end: a real master and agent (LocalCluster), a v1 framework
(mesoslite.client) launching command tasks whose CommandInfo.uris are served by a loopback
HTTP server; a failed fetch is TASK_FAILED naming the URI, settings mesoslite cannot honour
are TASK_ERROR naming the field."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mesoslite.client import SchedulerClient, command_task
from mesoslite.local import LocalCluster
from tests.integration.mesoslite_framework import FAST, agents


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("fetcher"), agents(1), master_args=FAST) as c:
        yield c


def app_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"hello from the archive\n"
        info = tarfile.TarInfo("app/hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
async def files_url(tmp_path: Path) -> AsyncIterator[str]:
    (tmp_path / "app.tgz").write_bytes(app_archive())
    (tmp_path / "run").write_text(
        "#!/bin/sh\ntest \"$(cat app/hello.txt)\" = 'hello from the archive'\n"
    )
    app = web.Application()
    app.router.add_static("/", tmp_path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def final(client: SchedulerClient, task_id: str) -> dict[str, Any]:
    """The task's first terminal status (every update acknowledged)."""
    while True:
        event = await client.next_event(
            "UPDATE",
            timeout=15,
            where=lambda e: e["update"]["status"]["task_id"]["value"] == task_id,
        )
        status: dict[str, Any] = event["update"]["status"]
        await client.acknowledge(status)
        if status["state"] not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
            return status


@pytest.mark.timeout(60)
async def test_uris_are_fetched_before_the_task_and_failures_are_named(
    cluster: LocalCluster, files_url: str
) -> None:
    client = SchedulerClient(cluster.url)
    await client.subscribe({"user": "test", "name": "fetcher"})
    offers = (await client.next_event("OFFERS", timeout=10))["offers"]["offers"]
    agent_id = offers[0]["agent_id"]["value"]

    def task(task_id: str, command: str = "./run", **extra: Any) -> dict[str, Any]:
        return command_task(task_id, agent_id, command, **extra)

    fetched = task("fetched")
    fetched["command"]["uris"] = [
        {"value": f"{files_url}/app.tgz", "extract": True, "cache": True},
        {"value": f"{files_url}/run", "executable": True},
    ]
    missing = task("missing")
    missing["command"]["uris"] = [{"value": f"{files_url}/nowhere.tgz"}]
    malformed = task("malformed")
    malformed["command"]["uris"] = [{"executable": True}]
    docker = task("docker", "true", container={"type": "DOCKER", "docker": {"image": "busybox"}})
    await client.accept([offers[0]["id"]["value"]], [fetched, missing, malformed, docker])

    assert (await final(client, "fetched"))["state"] == "TASK_FINISHED"
    failed = await final(client, "missing")
    assert failed["state"] == "TASK_FAILED"
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert failed["message"] == f"Failed to fetch '{files_url}/nowhere.tgz': HTTP 404 Not Found"
    error = await final(client, "malformed")
    assert (error["state"], error["message"]) == (
        "TASK_ERROR",
        "CommandInfo.uris[0].value is required",
    )
    error = await final(client, "docker")
    assert error["state"] == "TASK_ERROR"
    assert error["message"].startswith("TaskInfo.container.type DOCKER is not supported")
    cache = list((cluster.work_dir / "agent-0").rglob("fetch-cache/*"))
    assert len(cache) == 1
    await client.close()

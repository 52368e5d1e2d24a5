"""Bounded costs on every input: regular expressions, string fields, URLs and headers.

Each refused call answers JSON naming what is wrong and changes nothing (`expect_error`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.http.app import MAX_FIELD_BYTES, MAX_URL_BYTES, create_app, serve
from adapters.http.parsing import MAX_NAME, MAX_URL, MAX_VALUE
from tests.integration.http_helpers import (
    HOST,
    ApiClient,
    cluster_body,
    create,
    expect_error,
    new_master,
    start_all,
    submit,
)

CLUSTERS = "/api/v1/jobClusters"
EVIL_PATTERNS = ["(.|.|.|.|.)*X", "(a+)+$", "(a|aa)+b", "(\\w+\\s?)+$", "((a*)*)*b"]


# ------------------------------------------------------------------------ regular expressions


@pytest.mark.parametrize("pattern", EVIL_PATTERNS)
@pytest.mark.timeout(10)
async def test_a_catastrophic_pattern_is_answered(pattern: str, api_client: ApiClient) -> None:
    """Python's `re` backtracks for seconds (17.9 s on the first) on these; RE2 does not."""
    master = new_master()
    client = await api_client(master)
    for name in ("a" * 95, "a" * 60 + "-" + "a" * 30, "demo"):
        await create(client, name)
    for path in (CLUSTERS, "/api/v1/jobs", f"{CLUSTERS}/demo/jobs"):
        resp = await client.get(path, params={"matching": pattern})
        assert resp.status == 200, await resp.text()


async def test_a_pattern_still_filters_by_name(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    for name in ("alpha", "beta", "alphabet"):
        await create(client, name)
    resp = await client.get(CLUSTERS, params={"matching": "^alpha"})
    assert [c["name"] for c in (await resp.json())["list"]] == ["alpha", "alphabet"]


@pytest.mark.parametrize("pattern", ["(", "(?<=a)b", "(a)\\1", "a{1001}", "x" * 257])
async def test_an_invalid_unsupported_or_long_pattern_is_a_400(
    pattern: str, api_client: ApiClient
) -> None:
    master = new_master()
    client = await api_client(master)
    for path in (CLUSTERS, "/api/v1/jobs"):
        await expect_error(
            client, master, "GET", path, 400, "matching", params={"matching": pattern}
        )


# ------------------------------------------------------------------------ string fields


def _cluster(**changes: Any) -> dict[str, Any]:
    body = cluster_body()
    body["jobDefinition"].update(changes)
    return body


LONG_NAME, LONG_VALUE, LONG_URL = "u" * (MAX_NAME + 1), "v" * (MAX_VALUE + 1), "h" * MAX_URL
CLUSTER_CASES = [
    (_cluster(user="x" * 900_000), "jobDefinition.user"),
    (_cluster(user=LONG_NAME), "jobDefinition.user"),
    (_cluster(user="alice\x00"), "jobDefinition.user"),
    (_cluster(user="al\nice"), "jobDefinition.user"),
    (_cluster(user="al\x85ice"), "jobDefinition.user"),
    (_cluster(version=LONG_NAME), "jobDefinition.version"),
    (_cluster(jobJarFileLocation=f"http://{LONG_URL}/a.zip"), "jobDefinition.jobJarFileLocation"),
    (_cluster(artifactName="../../etc/passwd"), "jobDefinition.artifactName"),
    (_cluster(artifactName="names"), "jobDefinition.artifactName"),
    (_cluster(artifactName="a b.zip"), "jobDefinition.artifactName"),
    (_cluster(parameters=[{"name": LONG_NAME, "value": "1"}]), "jobDefinition.parameters[0].name"),
    (
        _cluster(parameters=[{"name": "p\x1b[31m", "value": "1"}]),
        "jobDefinition.parameters[0].name",
    ),
    (
        _cluster(parameters=[{"name": "p", "value": LONG_VALUE}]),
        "jobDefinition.parameters[0].value",
    ),
    (_cluster(labels=[{"name": "team\r\n", "value": "a"}]), "jobDefinition.labels[0].name"),
    (_cluster(labels=[{"name": "t", "value": LONG_VALUE}]), "jobDefinition.labels[0].value"),
    (_cluster(cronSpec="x" * (MAX_NAME + 1)), "jobDefinition.cronSpec"),
    ({**cluster_body(), "owner": {"description": LONG_VALUE}}, "owner.description"),
    ({**cluster_body(), "owner": {"name": LONG_NAME}}, "owner.name"),
]


@pytest.mark.parametrize(("body", "field"), CLUSTER_CASES, ids=[f for _, f in CLUSTER_CASES])
async def test_long_or_control_character_fields_of_a_cluster_are_400(
    body: Any, field: str, api_client: ApiClient
) -> None:
    master = new_master()
    client = await api_client(master)
    await expect_error(client, master, "POST", CLUSTERS, 400, field, json=body)
    await create(client)
    await expect_error(client, master, "PUT", f"{CLUSTERS}/demo", 400, field, json=body)


async def test_the_longest_accepted_fields_are_stored_whole(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    user, value = "u" * MAX_NAME, "v\n" * (MAX_VALUE // 2)
    cluster = await create(
        client,
        user=user,
        artifactName="demo-1.0.zip",
        parameters=[{"name": "p" * MAX_NAME, "value": value}],
    )
    assert cluster["user"] == user and cluster["parameters"][0]["value"] == value


async def test_long_or_control_character_fields_of_job_calls_are_400(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    jobs = "/api/v1/jobs"
    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("POST", jobs, "user", {"json": {"name": "demo", "user": LONG_NAME}}),
        ("POST", jobs, "user", {"json": {"name": "demo", "user": "a\tb"}}),
        (
            "POST",
            jobs,
            "artifactName",
            {"json": {"name": "demo", "user": "a", "artifactName": "/tmp/x.py"}},
        ),
        (
            "POST",
            jobs,
            "parameters[0].value",
            {
                "json": {
                    "name": "demo",
                    "user": "a",
                    "parameters": [{"name": "p", "value": LONG_VALUE}],
                }
            },
        ),
        (
            "POST",
            f"{jobs}/actions/quickSubmit",
            "user",
            {"json": {"name": "demo", "user": LONG_NAME}},
        ),
        (
            "POST",
            f"{CLUSTERS}/demo/actions/updateLabel",
            "labels[0].name",
            {"json": {"user": "a", "labels": [{"name": "k\x00", "value": "v"}]}},
        ),
        (
            "POST",
            f"{CLUSTERS}/demo/actions/updateArtifact",
            "artifactName",
            {"json": {"user": "a", "version": "2", "artifactName": "../x.zip"}},
        ),
        (
            "POST",
            f"{CLUSTERS}/demo/actions/updateArtifact",
            "url",
            {"json": {"user": "a", "version": "2", "url": "http://" + LONG_URL}},
        ),
        ("POST", f"{CLUSTERS}/demo/actions/disableCluster", "user", {"json": {"user": LONG_NAME}}),
        ("DELETE", f"{CLUSTERS}/demo", "user", {"params": {"user": "a\x7fb"}}),
    ]
    for method, path, field, kwargs in cases:
        await expect_error(client, master, method, path, 400, field, **kwargs)
    jid = await submit(client)
    start_all(master, jid)
    for params, field in (
        ({"user": LONG_NAME, "reason": "r"}, "user"),
        ({"user": "a", "reason": LONG_VALUE}, "reason"),
    ):
        await expect_error(client, master, "DELETE", f"{jobs}/{jid}", 400, field, params=params)
    scale = {"StageNumber": 2, "NumWorkers": 2, "User": LONG_NAME, "Reason": "r"}
    await expect_error(
        client, master, "POST", f"{jobs}/{jid}/actions/scaleStage", 400, "User", json=scale
    )
    await expect_error(
        client,
        master,
        "POST",
        f"{jobs}/{jid}/actions/resubmitWorker",
        400,
        "reason",
        json={"workerNumber": 1, "user": "a", "reason": LONG_VALUE},
    )


async def test_a_workers_long_failure_message_is_cut_not_lost(api_client: ApiClient) -> None:
    master = new_master()
    client = await api_client(master)
    await create(client)
    jid = await submit(client)
    start_all(master, jid)
    worker = master.plane.job(jid).current_workers()[0]
    status = {
        "jobId": jid,
        "stageNum": worker.stage,
        "workerIndex": worker.index,
        "workerNumber": worker.number,
        "type": "ERROR",
        "state": "Failed",
        "reason": "Error",
        "message": "ValueError: " + "x" * 100_000,
    }
    resp = await client.post(
        "/api/v1/jobs/actions/postJobStatus", json={"jobId": jid, "status": status}
    )
    assert resp.status == 204, await resp.text()
    message = master.plane.workers[worker.worker_id].message
    assert message.startswith("ValueError: xxx") and message.endswith("characters cut)")
    assert len(message) < MAX_VALUE + 100
    status = {
        **status,
        "state": "Started",
        "type": "INFO",
        "message": "",
        "hostname": "h" * (MAX_NAME + 1),
    }
    await expect_error(
        client,
        master,
        "POST",
        "/api/v1/jobs/actions/postJobStatus",
        400,
        "status.hostname",
        json={"jobId": jid, "status": status},
    )


# ------------------------------------------------------------------------ URL and headers


async def _raw(port: int, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send `request` as it is; the status and JSON body of the answer."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await writer.drain()
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
    finally:
        writer.close()
    lines = head.decode().split("\r\n")
    assert "content-type: application/json" in (line.lower() for line in lines), head
    return int(lines[0].split()[1]), orjson.loads(body)


async def test_parse_errors_are_json_414_431_and_400() -> None:
    runner, port = await serve(create_app(new_master()))
    try:
        async with aiohttp.ClientSession(f"http://{HOST}:{port}") as session:
            async with session.get("/api/v1/jobs?matching=" + "a" * MAX_URL_BYTES) as resp:
                assert resp.status == 414
                assert (await resp.json())["field"] == "url"
            async with session.get(
                "/api/v1/jobs", headers={"X-Big": "b" * (MAX_FIELD_BYTES + 100)}
            ) as resp:
                assert resp.status == 431
                assert (await resp.json())["field"] == "headers"
            async with session.get("/api/v1/jobs?matching=" + "a" * 200) as resp:
                assert resp.status == 200  # a long but bounded URL is served
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(200))
        status, body = await _raw(
            port, b"GET /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n"
        )
        assert status == 431 and body["field"] == "headers"
        status, body = await _raw(port, b"BREW /coffee HTCPCP/1.0\r\n\r\n")
        assert status == 400 and body["error"].startswith("malformed request")
    finally:
        await runner.cleanup()

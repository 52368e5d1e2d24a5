"""CORS on the master's v1 reads: for the allowed origins only (`*` when allowed, as Mantis).

An allowed origin (a Mantis UI's) may read; any other gets no `Access-Control-Allow-Origin`, so
its page cannot read the answer. Mutations never carry one, preflights stay refused, and `*`
lets every page read but none change anything.
"""

from __future__ import annotations

from typing import Any

from adapters.cli.main import build_parser
from service.master import MasterService
from tests.fakes import memory_master
from tests.integration.http_helpers import JSON_TYPE, ApiClient, Clock, cluster_body

CONSOLE = "https://console.example"
EVIL = "https://evil.example"
ALLOW = "Access-Control-Allow-Origin"


def master() -> MasterService:
    return memory_master(Clock())


def a_cluster() -> dict[str, Any]:
    body = cluster_body()
    del body["jobDefinition"]["migrationConfig"]  # not what this test is about
    return body


async def test_an_allowed_origin_reads_others_cannot(api_client: ApiClient) -> None:
    client = await api_client(master(), allowed_origins=[CONSOLE + "/"], api_token="t")
    for path in ("/api/v1/jobClusters", "/api/v1/jobs", "/api/v1/jobs/nope-1"):
        resp = await client.get(path, headers={"Origin": CONSOLE})
        assert resp.headers.get(ALLOW) == CONSOLE, path
        assert "Origin" in resp.headers.getall("Vary"), path
        resp = await client.get(path, headers={"Origin": EVIL})
        assert ALLOW not in resp.headers and "Origin" in resp.headers.getall("Vary"), path
    resp = await client.get("/metrics", headers={"Origin": CONSOLE})  # not Mantis' v1 API
    assert resp.status == 200 and ALLOW not in resp.headers
    headers = {"Origin": CONSOLE, "Authorization": "Bearer t", **JSON_TYPE}
    resp = await client.post("/api/v1/jobClusters", json=a_cluster(), headers=headers)
    assert resp.status == 201 and ALLOW not in resp.headers  # a mutation never carries one
    preflight = {"Origin": CONSOLE, "Access-Control-Request-Method": "GET"}
    resp = await client.options("/api/v1/jobs", headers=preflight)
    assert resp.status == 403 and ALLOW not in resp.headers


async def test_star_lets_every_page_read_but_none_change_anything(api_client: ApiClient) -> None:
    m = master()
    client = await api_client(m, allowed_origins=["*"])
    resp = await client.get("/api/v1/jobClusters", headers={"Origin": EVIL})
    assert resp.status == 200 and resp.headers[ALLOW] == "*"
    resp = await client.post(
        "/api/v1/jobClusters", json=a_cluster(), headers={"Origin": EVIL, **JSON_TYPE}
    )
    assert resp.status == 403 and (await resp.json())["field"] == "Origin"
    assert ALLOW not in resp.headers and m.plane.clusters == {}


async def test_no_allowed_origin_no_cors(api_client: ApiClient) -> None:
    client = await api_client(master())
    resp = await client.get("/api/v1/jobClusters", headers={"Origin": CONSOLE})
    assert resp.status == 200 and ALLOW not in resp.headers


def test_mantis_master_takes_allowed_origins() -> None:
    args = build_parser().parse_args(
        ["master", "--allowed-origin", CONSOLE, "--allowed-origin", "*"]
    )
    assert args.allowed_origin == [CONSOLE, "*"]

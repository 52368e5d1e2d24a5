"""The master's ``GET /metrics`` on a real server with real workers, parsed by
prometheus_client's own parser: jobs and workers by state, offers, scheduling rounds, store
commits, API latency by route and the SSE streams open."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.eventually import eventually_value
from tests.integration.workers import local_master, read_sse

pytestmark = pytest.mark.timeout(90)
DISCOVERY = "/api/v1/jobDiscoveryStream/{jobId}"


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset[Any]], float]:
    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(name: str, **labels: str) -> tuple[str, frozenset[Any]]:
    return name, frozenset(labels.items())


async def test_master_metrics_count_jobs_workers_offers_commits_calls_and_streams(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        got = await scrape(http, m.url)
        assert got[sample("mantis_master_jobs", state="Launched")] == 1
        assert got[sample("mantis_master_workers", state="Started")] == 3
        assert got[sample("mantis_master_job_clusters")] == 1
        assert got[sample("mantis_master_offers_total", outcome="received")] >= 1
        assert got[sample("mantis_master_offers_total", outcome="used")] >= 1
        assert got[sample("mantis_master_launches_total")] == 3
        assert got[sample("mantis_master_scheduling_round_seconds_count")] >= 1
        assert got[sample("mantis_master_store_commit_seconds_count")] >= 1
        assert got[sample("mantis_master_store_commit_events_sum")] >= 4  # cluster, job, ...
        # The workers' status calls, by route pattern (never by job id).
        route = "/api/v1/jobs/actions/postJobStatus"
        calls = sample(
            "mantis_master_api_request_seconds_count", method="POST", route=route, status="204"
        )
        assert got[calls] >= 6  # 3 workers: StartInitiated and Started (heartbeats too)
        assert not any(dict(labels).get("route") == f"/api/v1/jobs/{jid}" for _, labels in got)

        # An SSE stream is counted while open, not timed as a call: each worker follows its
        # job's discovery stream, and one more is ours.
        streams = sample("mantis_master_sse_clients", route=DISCOVERY)
        assert got[streams] == 3
        frames: list[Any] = []
        stop = asyncio.Event()
        reader = asyncio.create_task(
            read_sse(http, f"{m.url}/api/v1/jobDiscoveryStream/{jid}", frames, stop)
        )

        async def open_streams(n: int) -> bool:
            return (await scrape(http, m.url)).get(streams) == n

        try:
            await eventually_value(lambda: open_streams(4), "our discovery stream counted")
        finally:
            reader.cancel()
        await eventually_value(lambda: open_streams(3), "our stream closed")
        after = await scrape(http, m.url)
        assert not any(
            name.startswith("mantis_master_api_request") and dict(labels).get("route") == DISCOVERY
            for name, labels in after
        )
        unknown = sample(
            "mantis_master_api_request_seconds_count", method="GET", route="unmatched", status="404"
        )
        async with http.get(f"{m.url}/no/such/path") as resp:
            assert resp.status == 404
        assert (await scrape(http, m.url))[unknown] == 1

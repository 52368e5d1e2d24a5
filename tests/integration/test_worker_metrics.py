"""Real worker processes serve their metrics on the port the master advertises: Prometheus
text (parsed by prometheus_client's parser), Mantis' metrics stream (SSE, filtered by name),
and heartbeat payloads the master keeps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.eventually import eventually, eventually_value
from tests.integration.workers import HOST, local_master, read_sse

pytestmark = pytest.mark.timeout(90)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(http: aiohttp.ClientSession, port: int) -> dict[Any, float]:
    async with http.get(f"http://{HOST}:{port}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return samples(await resp.text())


async def test_workers_serve_prometheus_and_mantis_stream_on_the_advertised_port(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        (sink,) = m.started(jid, stage=3)  # sinks are lazy: nothing flows without a client
        output = asyncio.create_task(read_sse(http, f"http://{HOST}:{sink.ports[0]}/", []))
        async with http.get(f"{m.url}/api/v1/jobs/{jid}") as resp:
            workers = (await resp.json())["workerMetadataList"]
        ports = {w["stageNum"]: w["metricsPort"] for w in workers}
        assert sorted(ports) == [1, 2, 3]
        for w in workers:  # one of its ports, not its data port
            assert w["metricsPort"] in w["ports"][1:]
        # The discovery stream advertises the same ports.
        async with http.get(f"{m.url}/api/v1/jobDiscoveryStream/{jid}") as resp:
            line = await resp.content.readline()
        info = orjson.loads(line.removeprefix(b"data: "))
        advertised = {
            int(s): next(iter(a["hosts"].values()))["metricsPort"]
            for s, a in info["workerAssignments"].items()
        }
        assert advertised == ports

        # Prometheus: every stage counts its events; the sink stage has a subscriber-less
        # output that drops nothing it did not accept.
        async def flowing(stage: int) -> dict[Any, float]:
            got = await scrape(http, ports[stage])
            busy = got[("mantis_worker_events_in_per_second", ())] > 0
            return got if busy and got[("mantis_worker_events_out_total", ())] > 0 else {}

        first = await eventually_value(lambda: flowing(1), "stage 1 counting", 20)
        assert first[("mantis_worker_batches_in_total", ())] > 0
        assert first[("mantis_worker_connections", (("direction", "downstream"),))] == 1
        assert first[("mantis_worker_network_bytes_total", ())] > 0
        assert first[("mantis_worker_cpu_limit_cores", ())] == 0.1
        assert first[("mantis_worker_memory_limit_bytes", ())] == 64 * 1024 * 1024
        assert first[("mantis_worker_rss_bytes", ())] > 1e6
        assert first[("process_cpu_seconds_total", ())] > 0
        # The stage's own Context.metrics counter (runtime.engines counts each stage's input).
        assert first[("mantis_user_total", (("group", "user"), ("name", "stage.1.events_in")))] > 0
        middle = await eventually_value(lambda: flowing(2), "stage 2 counting", 20)
        assert middle[("mantis_worker_connections", (("direction", "upstream"),))] >= 1

        # Mantis' metrics stream, filtered by name (exact and prefix*).
        frames: list[Any] = []
        stop = asyncio.Event()
        url = f"http://{HOST}:{ports[2]}/?name=DataDrop&name=worker_stage_*"
        reader = asyncio.create_task(read_sse(http, url, frames, stop))
        try:
            await eventually(
                lambda: len({f["timestamp"] for f in frames}) >= 2, "two ticks of the stream", 10
            )
        finally:
            stop.set()
            reader.cancel()
        names = {f["name"] for f in frames}
        assert names == {"DataDrop", "worker_stage_inner_input", "worker_stage_output"}
        inner = next(f for f in frames if f["name"] == "worker_stage_inner_input")
        assert inner["tags"]["mantisJobId"] == jid and inner["tags"]["mantisStageNum"] == "2"
        counters = {c["event"]: c["count"] for c in inner["counters"]}
        assert counters["onNext"] > 0 and counters["batches"] > 0
        assert {g["event"] for g in inner["gauges"]} >= {"onNextGauge", "batchSize"}
        output.cancel()


async def test_heartbeats_carry_drops_resource_usage_and_worker_metrics(tmp_path: Path) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        source = m.started(jid, stage=1)[0].worker_id
        (sink,) = m.started(jid, stage=3)
        output = asyncio.create_task(read_sse(http, f"http://{HOST}:{sink.ports[0]}/", []))

        def beat() -> dict[str, Any] | None:
            payloads = m.master.plane.workers[source].payloads
            if "WorkerMetrics" not in payloads:
                return None
            got = {k: orjson.loads(v) for k, v in payloads.items()}
            # ~10,000 events/s once flowing (a first interval may be partly idle)
            return got if got["WorkerMetrics"]["RPS"] > 1_000 else None

        got: dict[str, Any] = {}

        def flowing() -> bool:
            got.update(beat() or {})
            return bool(got)

        await eventually(flowing, "a heartbeat with events flowing", 20)
        assert set(got) == {"IncomingDataDrop", "ResourceUsage", "WorkerMetrics"}
        drops = got["IncomingDataDrop"]
        assert set(drops) == {"onNextCount", "droppedCount"}
        # Counted since the previous heartbeat (0.5 s): ~10,000 events/s, never the total.
        assert 0 < drops["onNextCount"] < 20_000
        usage = got["ResourceUsage"]
        assert usage["cpuLimit"] == 0.1 and usage["memLimit"] == 64.0
        assert usage["totMemUsageCurrent"] > 1.0 and usage["nwBytesCurrent"] > 0
        assert got["WorkerMetrics"]["RPS"] < 100_000
        assert got["WorkerMetrics"]["user::stage.1.events_in"] > 0
        sink_worker = m.master.plane.workers[sink.worker_id]
        await eventually(
            lambda: sink_worker.payloads.get("SubscriptionState") == "true", "the sink subscribed"
        )
        output.cancel()

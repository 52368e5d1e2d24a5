"""runtime.metrics: heartbeat payloads measured between heartbeats, Mantis' stream filter and
groups, and the Prometheus view parsed back by prometheus_client's own parser."""

from __future__ import annotations

import orjson
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from runtime.context import Metrics
from runtime.metrics import (
    UPSTREAM_DROPPED,
    IoReading,
    StageCounts,
    WorkerMetrics,
    name_matches,
    user_metric_key,
)
from runtime.sources.sse import EventDecoder


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def worker_metrics() -> tuple[WorkerMetrics, StageCounts, list[IoReading], Metrics, Clock]:
    counts, io, user, clock = StageCounts(), [IoReading()], Metrics(), Clock()
    m = WorkerMetrics(counts, lambda: io[0], user, {"mantisJobId": "j-1"}, 0.5, 256.0, clock=clock)
    return m, counts, io, user, clock


def test_payloads_count_since_the_previous_heartbeat() -> None:
    m, counts, io, user, clock = worker_metrics()
    sessions = user.counter("sessions::opened")
    user.gauge("open").set(7)
    counts.events_in, counts.batches_in = 1000, 10
    io[0] = IoReading(on_next=900, dropped=100, net_bytes=20_000)
    sessions.inc(40)
    clock.now += 2.0
    first = {k: orjson.loads(v) for k, v in m.payloads().items()}
    assert first["IncomingDataDrop"] == {"onNextCount": 900, "droppedCount": 100}
    assert first["WorkerMetrics"] == {"RPS": 500.0, "sessions::opened": 20.0, "user::open": 7.0}
    usage = first["ResourceUsage"]
    assert usage["cpuLimit"] == 0.5 and usage["memLimit"] == 256.0
    assert usage["nwBytesCurrent"] == 10_000.0 and usage["nwBytesPeak"] == 10_000.0
    assert usage["totMemUsageCurrent"] > 1.0  # this test process's RSS, in MB
    assert set(usage) == {
        "cpuLimit",
        "cpuUsageCurrent",
        "cpuUsagePeak",
        "memLimit",
        "memCacheCurrent",
        "memCachePeak",
        "totMemUsageCurrent",
        "totMemUsagePeak",
        "nwBytesCurrent",
        "nwBytesPeak",
    }
    assert all(isinstance(v, float) for v in usage.values())
    # The next heartbeat counts only what came after the first.
    counts.events_in += 300
    io[0] = IoReading(on_next=950, dropped=100, net_bytes=20_000)
    clock.now += 1.0
    second = {k: orjson.loads(v) for k, v in m.payloads().items()}
    assert second["IncomingDataDrop"] == {"onNextCount": 50, "droppedCount": 0}
    assert second["WorkerMetrics"]["RPS"] == 300.0
    assert second["WorkerMetrics"]["sessions::opened"] == 0.0
    assert orjson.loads(m.payloads()["ResourceUsage"])["nwBytesCurrent"] == 0.0


def test_a_peak_is_the_highest_tick_since_the_previous_heartbeat() -> None:
    m, _, io, _, clock = worker_metrics()
    for sent in (1000, 6000, 7000):  # 1000, 5000, then 1000 bytes/s
        clock.now += 1.0
        io[0] = IoReading(net_bytes=sent)
        m.tick()
    usage = orjson.loads(m.payloads()["ResourceUsage"])
    assert usage["nwBytesPeak"] == 5000.0
    assert round(usage["nwBytesCurrent"], 6) == round(7000 / 3, 6)
    clock.now += 1.0
    assert orjson.loads(m.payloads()["ResourceUsage"])["nwBytesPeak"] == 0.0


def test_the_stream_filter_is_mantis_metrics_server_s() -> None:
    assert name_matches("DataDrop", [])
    assert name_matches("DataDrop", ["DataDrop"]) and not name_matches("DataDrop", ["Data"])
    assert name_matches("worker_stage_output", ["worker_*"])
    assert name_matches("ResourceUsage", ["*Usage", "nothing"])
    assert not name_matches("ResourceUsage", ["*Drop"])
    assert user_metric_key("a::b") == ("a", "b")
    assert user_metric_key("stage.x.events_in") == ("user", "stage.x.events_in")
    assert user_metric_key("::b") == ("user", "::b")


def test_groups_are_mantis_measurements() -> None:
    m, counts, io, user, clock = worker_metrics()
    user.counter("sessions::opened").inc(3)
    counts.events_in, counts.batches_in = 500, 5
    io[0] = IoReading(on_next=90, dropped=10, input_queue=2, upstream=3)
    clock.now += 1.0
    m.tick()
    groups = {g["name"]: g for g in m.groups()}
    assert set(groups) == {
        "worker_stage_inner_input",
        "worker_stage_output",
        "DataDrop",
        "ResourceUsage",
        "sessions",
    }
    inner = groups["worker_stage_inner_input"]
    assert inner["tags"] == {"mantisJobId": "j-1"} and isinstance(inner["timestamp"], int)
    assert inner["counters"] == [
        {"event": "onNext", "count": 500},
        {"event": "batches", "count": 5},
    ]
    gauges = {g["event"]: g["value"] for g in inner["gauges"]}
    assert gauges == {
        "onNextGauge": 500.0,
        "batchSize": 100.0,
        "queuedBatches": 2,
        "connections": 3,
    }
    drops = {g["event"]: g["value"] for g in groups["DataDrop"]["gauges"]}
    assert drops == {"dropPercent": 10.0}
    assert groups["sessions"]["counters"] == [{"event": "opened", "count": 3}]


def test_prometheus_view_parses_with_prometheus_client() -> None:
    m, counts, io, user, _ = worker_metrics()
    user.counter("stage.x.events_in").inc(12)
    user.gauge("sessions::open").set(4)
    counts.events_in, counts.events_out = 70, 60
    io[0] = IoReading(dropped=5, upstream=2, downstream=1)
    text = generate_latest(m.registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("mantis_worker_events_in_total", ())] == 70
    assert samples[("mantis_worker_events_out_total", ())] == 60
    assert samples[("mantis_worker_events_dropped_total", ())] == 5
    assert samples[("mantis_worker_connections", (("direction", "upstream"),))] == 2
    assert samples[("mantis_worker_rss_bytes", ())] > 0
    assert samples[("mantis_user_total", (("group", "user"), ("name", "stage.x.events_in")))] == 12
    assert samples[("mantis_user_gauge", (("group", "sessions"), ("name", "open")))] == 4


def test_source_job_drop_is_the_upstream_sinks_share_of_drops_since_the_last_heartbeat() -> None:
    m, counts, _, user, clock = worker_metrics()
    clock.now += 1.0
    assert "SourceJobDrop" not in orjson.loads(m.payloads()["WorkerMetrics"])  # no job source
    decoder = EventDecoder.for_query({"enableMetaMessages": "true"}, user)
    meta = b'{"mantis.meta":"droppedMessageCount","value":"25","time":1}'
    events = decoder.decode([b'{"i":1}', meta, b'{"i":2, "note":"droppedMessageCount"}'])
    assert len(events) == 3  # meta messages still reach the job, which asked for them
    counts.events_in += 75
    clock.now += 1.0
    assert orjson.loads(m.payloads()["WorkerMetrics"])["SourceJobDrop"] == 25.0
    counts.events_in += 10
    clock.now += 1.0
    assert orjson.loads(m.payloads()["WorkerMetrics"])["SourceJobDrop"] == 0.0
    assert user.counters()[UPSTREAM_DROPPED] == 25
    plain = Metrics()
    EventDecoder.for_query({}, plain).decode([meta])
    assert UPSTREAM_DROPPED not in plain.counters()  # not asked for: nothing counted

"""A worker's metrics: counted on the hot path in plain ints, exported on a tick or a scrape.

The worker adds each batch's size to a `StageCounts` (two integer additions per input batch,
one per output batch); its input, output and sink keep their own counters (runtime.transport
OutputStats and InputStats, common.sse_sink SinkStats). Nothing else runs per event: every
second `WorkerMetrics.tick` reads all of them once and derives the rates, and each export reads
the counters as they are:

- ``GET /metrics`` on the worker's metrics port (``MANTIS_METRICS_PORT``): Prometheus text
  (or OpenMetrics, if the scraper's Accept asks), rendered by prometheus_client from a registry
  of this worker only (a collector reading the counters at scrape time, and its
  ProcessCollector);
- ``GET /`` on the same port: Mantis' metrics stream (io.mantisrx.common.metrics.MetricsServer):
  SSE, every second, one event per metric group shaped as Mantis' Measurements JSON
  ``{"name", "timestamp", "tags", "counters": [{"event", "count"}], "gauges": [{"event",
  "value"}]}``; ``?name=`` (repeatable) keeps the groups of that name, ``prefix*`` or
  ``*suffix`` as Mantis' filter does;
- the heartbeat payloads (``payloads()``), measured since the previous heartbeat: Mantis'
  StatusPayloads ``IncomingDataDrop`` (DataDropCounts) and ``ResourceUsage``, and our own
  ``WorkerMetrics`` (``RPS`` and the job's own metrics) that the master's autoscaler reads.

The job's own metrics (``Context.metrics``) are in the group named before ``::`` in their name
(``"sessions::open"`` is ``open`` of group ``sessions``), else in group ``user``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from common.sse import HEADERS, frame
from runtime.context import Metrics

log = structlog.get_logger()

TICK_SECS = 1.0
"""Mantis' MetricsServer publishes every second too (its publishRateInSeconds)."""
STOP_SECS = 1.0
"""A stopping worker waits this long at most for its metrics streams to end."""
USER_GROUP = "user"
UPSTREAM_DROPPED = "upstream_dropped"
"""The Context.metrics counter of what an SSE or job source's upstream sink dropped for it
(runtime.sources.sse counts the sink's droppedMessageCount meta messages)."""
MB = 1024 * 1024


class StageCounts:
    """What the worker counts itself, per batch: events into the stage (from its source or
    the previous stage), input batches, and events the stage emitted."""

    __slots__ = ("batches_in", "events_in", "events_out")

    def __init__(self) -> None:
        self.events_in = 0
        self.batches_in = 0
        self.events_out = 0


@dataclass(frozen=True, slots=True)
class IoReading:
    """The worker's input and output, read from their own counters: events its output (the
    next stage's connections, or the sink's subscribers) accepted, dropped and sent, bytes
    received and written, batches queued at the input, events buffered at the output, and
    connections to upstream workers and from downstream workers or subscribers."""

    on_next: int = 0
    dropped: int = 0
    sent: int = 0
    net_bytes: int = 0
    input_queue: int = 0
    output_queue: int = 0
    upstream: int = 0
    downstream: int = 0


@dataclass(frozen=True, slots=True)
class Reading:
    """Every counter at one moment (`at`: monotonic seconds)."""

    at: float
    counts: tuple[int, int, int]
    """events in, batches in, events out."""
    io: IoReading
    cpu_seconds: float
    rss_bytes: float
    user: Mapping[str, int]
    """The job's counters (its gauges are read as they are, when exported)."""


@dataclass(slots=True)
class Rates:
    """Per second over an interval, from two readings."""

    events_in: float = 0.0
    events_out: float = 0.0
    dropped: float = 0.0
    sent: float = 0.0
    batch_size: float = 0.0
    cpu_cores: float = 0.0
    net_bytes: float = 0.0
    drop_percent: float = 0.0
    user: dict[str, float] = field(default_factory=dict)

    @classmethod
    def between(cls, a: Reading, b: Reading) -> Rates:
        dt = b.at - a.at
        if dt <= 0:
            return cls()
        (in0, batches0, out0), (in1, batches1, out1) = a.counts, b.counts
        on_next = b.io.on_next - a.io.on_next
        dropped = b.io.dropped - a.io.dropped
        batches = batches1 - batches0
        return cls(
            events_in=(in1 - in0) / dt,
            events_out=(out1 - out0) / dt,
            dropped=dropped / dt,
            sent=(b.io.sent - a.io.sent) / dt,
            batch_size=(in1 - in0) / batches if batches else 0.0,
            cpu_cores=(b.cpu_seconds - a.cpu_seconds) / dt,
            net_bytes=(b.io.net_bytes - a.io.net_bytes) / dt,
            drop_percent=100.0 * dropped / (dropped + on_next) if dropped + on_next else 0.0,
            user={n: (v - a.user.get(n, 0)) / dt for n, v in b.user.items()},
        )


def process_usage() -> tuple[float, float]:
    """This process's CPU seconds (user + system) and resident set size in bytes (Linux: now,
    from /proc/self/statm; elsewhere the peak, all that getrusage tells)."""
    times = os.times()
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB here
    return times.user + times.system, float(rss)


def user_metric_key(name: str) -> tuple[str, str]:
    """(group, name) of a job's metric: ``"group::name"``, else group ``user``."""
    group, sep, rest = name.partition("::")
    return (group, rest) if sep and group and rest else (USER_GROUP, name)


def name_matches(name: str, filters: Sequence[str]) -> bool:
    """Mantis' MetricsServer filter: no filter keeps all; ``*x`` ends with x, ``x*`` starts
    with x, anything else is the exact name."""
    if not filters:
        return True
    for f in filters:
        star = f.find("*")
        if (star == 0 and name.endswith(f[1:])) or (star > 0 and name.startswith(f[:star])):
            return True
        if name == f:
            return True
    return False


class WorkerMetrics:
    """See the module docstring. `io()` reads the worker's input and output; `tags` are
    Mantis' metric tags (mantisJobId, mantisStageNum, ...); `cpu_limit` (cores) and
    `mem_limit_mb` are the stage's machine definition."""

    def __init__(
        self,
        counts: StageCounts,
        io: Callable[[], IoReading],
        user: Metrics,
        tags: Mapping[str, str],
        cpu_limit: float = 0.0,
        mem_limit_mb: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counts = counts
        self.io = io
        self.user = user
        self.tags = dict(tags)
        self.cpu_limit = cpu_limit
        self.mem_limit_mb = mem_limit_mb
        self.clock = clock
        self.registry = CollectorRegistry()
        self.registry.register(_PrometheusView(self))
        ProcessCollector(registry=self.registry)
        self.last = self.read()
        """The reading of the last tick."""
        self.rates = Rates()
        """Over the second before the last tick."""
        self._beat = self.last  # the reading at the previous heartbeat
        self._cpu_peak = self._rss_peak = self._net_peak = 0.0
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    def read(self) -> Reading:
        c = self.counts
        cpu, rss = process_usage()
        return Reading(
            self.clock(),
            (c.events_in, c.batches_in, c.events_out),
            self.io(),
            cpu,
            rss,
            self.user.counters(),
        )

    def tick(self) -> None:
        """Read every counter, derive the last interval's rates, keep the peaks."""
        now = self.read()
        self.rates = Rates.between(self.last, now)
        self.last = now
        self._cpu_peak = max(self._cpu_peak, self.rates.cpu_cores)
        self._net_peak = max(self._net_peak, self.rates.net_bytes)
        self._rss_peak = max(self._rss_peak, now.rss_bytes)

    # -- heartbeats ---------------------------------------------------------------------------

    def payloads(self) -> dict[str, str]:
        """``IncomingDataDrop``, ``ResourceUsage`` (Mantis' StatusPayloads names and fields)
        and ``WorkerMetrics`` since the previous call (the previous heartbeat): counts are
        differences, rates per second over the interval, peaks the highest tick in between.
        ``WorkerMetrics`` is ``{"RPS": events in per second, "<group>::<name>": a job's
        counter per second or gauge value}``, and ``SourceJobDrop`` (the percentage of its
        events the upstream job's sink dropped) where the source counts it."""
        now = self.read()
        before, self._beat = self._beat, now
        rates = Rates.between(before, now)
        cpu_peak = max(self._cpu_peak, rates.cpu_cores)
        net_peak = max(self._net_peak, rates.net_bytes)
        rss_peak = max(self._rss_peak, now.rss_bytes)
        self._cpu_peak = self._rss_peak = self._net_peak = 0.0
        drops = {
            "onNextCount": now.io.on_next - before.io.on_next,
            "droppedCount": now.io.dropped - before.io.dropped,
        }
        usage = {
            "cpuLimit": float(self.cpu_limit),
            "cpuUsageCurrent": rates.cpu_cores,
            "cpuUsagePeak": cpu_peak,
            "memLimit": float(self.mem_limit_mb),
            "memCacheCurrent": 0.0,  # a process has no page cache of its own (Mantis reads
            "memCachePeak": 0.0,  # its container's cgroup)
            "totMemUsageCurrent": now.rss_bytes / MB,
            "totMemUsagePeak": rss_peak / MB,
            "nwBytesCurrent": rates.net_bytes,
            "nwBytesPeak": net_peak,
        }
        worker: dict[str, float] = {"RPS": rates.events_in}
        if UPSTREAM_DROPPED in now.user:  # a stage 1 reading a job with meta messages
            lost = now.user[UPSTREAM_DROPPED] - before.user.get(UPSTREAM_DROPPED, 0)
            got = now.counts[0] - before.counts[0]
            worker["SourceJobDrop"] = 100.0 * lost / (lost + got) if lost + got else 0.0
        for name, rate in rates.user.items():
            worker["::".join(user_metric_key(name))] = rate
        for name, value in self.user.gauges().items():
            worker["::".join(user_metric_key(name))] = float(value)
        return {
            "IncomingDataDrop": orjson.dumps(drops).decode(),
            "ResourceUsage": orjson.dumps(usage).decode(),
            "WorkerMetrics": orjson.dumps(worker).decode(),
        }

    # -- Mantis' metrics stream ------------------------------------------------------------------

    def groups(self) -> list[dict[str, Any]]:
        """The metric groups as of the last tick, in Mantis' Measurements JSON."""
        r, rates, ts = self.last, self.rates, int(time.time() * 1000)
        events_in, batches_in, events_out = r.counts
        io = r.io

        def group(
            name: str, counters: Iterable[tuple[str, int]], gauges: Iterable[tuple[str, float]]
        ) -> dict[str, Any]:
            return {
                "name": name,
                "timestamp": ts,
                "tags": self.tags,
                "counters": [{"event": e, "count": c} for e, c in counters],
                "gauges": [{"event": e, "value": v} for e, v in gauges],
            }

        user: dict[str, tuple[list[tuple[str, int]], list[tuple[str, float]]]] = {}
        for name, count in r.user.items():
            g, n = user_metric_key(name)
            user.setdefault(g, ([], []))[0].append((n, count))
        for name, value in self.user.gauges().items():
            g, n = user_metric_key(name)
            user.setdefault(g, ([], []))[1].append((n, float(value)))
        return [
            group(
                "worker_stage_inner_input",  # Mantis' RPS group (MetricStringConstants)
                [("onNext", events_in), ("batches", batches_in)],
                [
                    ("onNextGauge", rates.events_in),
                    ("batchSize", rates.batch_size),
                    ("queuedBatches", io.input_queue),
                    ("connections", io.upstream),
                ],
            ),
            group(
                "worker_stage_output",
                [("onNext", events_out), ("sent", io.sent)],
                [
                    ("onNextGauge", rates.events_out),
                    ("queuedEvents", io.output_queue),
                    ("connections", io.downstream),
                ],
            ),
            group(  # Mantis' DataDrop group and names (MetricStringConstants)
                "DataDrop",
                [("onNextCount", io.on_next), ("dropCount", io.dropped)],
                [("dropPercent", rates.drop_percent)],
            ),
            group(  # Mantis' ResourceUsage group and names (MetricStringConstants)
                "ResourceUsage",
                [],
                [
                    ("cpuPctLimit", 100.0 * self.cpu_limit),
                    ("cpuPctUsageCurr", 100.0 * rates.cpu_cores),
                    ("memLimit", float(self.mem_limit_mb)),
                    ("totMemUsageCurr", r.rss_bytes / MB),
                    ("nwBytesUsageCurr", rates.net_bytes),
                ],
            ),
            *(group(g, counters, gauges) for g, (counters, gauges) in sorted(user.items())),
        ]

    # -- serving -------------------------------------------------------------------------------

    async def serve(self, host: str, port: int) -> None:
        """Tick every second and serve both views on host:port (OSError if it is taken)."""
        app = web.Application()
        app.router.add_get("/metrics", self._prometheus)
        app.router.add_get("/", self._stream)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=STOP_SECS
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._ticker = asyncio.create_task(self._tick_forever(), name="metrics")
        log.info("metrics_serving", host=host, port=port)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._runner is not None:
            await self._runner.cleanup()  # open streams are cut after STOP_SECS

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECS)
            self.tick()

    async def _prometheus(self, request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        filters = request.query.getall("name", [])
        resp = web.StreamResponse(headers=HEADERS)
        await resp.prepare(request)
        try:
            while True:
                for g in self.groups():
                    if name_matches(g["name"], filters):
                        await resp.write(frame(g))
                await asyncio.sleep(TICK_SECS)
        except ConnectionResetError:
            pass  # the client went away
        return resp


class _PrometheusView(Collector):
    """The worker's counters as Prometheus families, read when scraped."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        r, rates = m.read(), m.rates
        events_in, batches_in, events_out = r.counts
        io = r.io
        p = "mantis_worker_"

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(p + name, doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(p + name, doc, value=value)

        yield counter("events_in", "Events into the stage (source or previous stage)", events_in)
        yield counter("batches_in", "Input batches", batches_in)
        yield counter("events_out", "Events the stage emitted", events_out)
        yield counter("events_accepted", "Events the output or sink accepted", io.on_next)
        yield counter("events_dropped", "Events the output or sink dropped", io.dropped)
        yield counter("events_sent", "Events written to downstream sockets", io.sent)
        yield counter("network_bytes", "Bytes received from upstream and written", io.net_bytes)
        yield gauge("events_in_per_second", "Events in per second, last second", rates.events_in)
        yield gauge("events_out_per_second", "Events out per second, last second", rates.events_out)
        yield gauge("dropped_per_second", "Drops per second, last second", rates.dropped)
        yield gauge("batch_size", "Mean input batch size, last second", rates.batch_size)
        yield gauge("input_queue_batches", "Batches queued at the input", io.input_queue)
        yield gauge("output_queue_events", "Events buffered at the output", io.output_queue)
        connections = GaugeMetricFamily(
            p + "connections", "Connections by direction", labels=["direction"]
        )
        connections.add_metric(["upstream"], io.upstream)
        connections.add_metric(["downstream"], io.downstream)
        yield connections
        yield gauge("cpu_cores", "CPU cores used, last second", rates.cpu_cores)
        yield gauge("cpu_limit_cores", "CPU cores of the machine definition", m.cpu_limit)
        yield gauge("rss_bytes", "Resident set size", r.rss_bytes)
        yield gauge("memory_limit_bytes", "Memory of the machine definition", m.mem_limit_mb * MB)
        user_counters = CounterMetricFamily(
            "mantis_user", "The job's counters (Context.metrics)", labels=["group", "name"]
        )
        for name, value in r.user.items():
            user_counters.add_metric(list(user_metric_key(name)), value)
        yield user_counters
        user_gauges = GaugeMetricFamily(
            "mantis_user_gauge", "The job's gauges (Context.metrics)", labels=["group", "name"]
        )
        for name, v in m.user.gauges().items():
            user_gauges.add_metric(list(user_metric_key(name)), v)
        yield user_gauges

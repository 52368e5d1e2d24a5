"""The master's own metrics, exported as Prometheus text at ``GET /metrics``
(adapters/http/metrics.py).

`MasterMetrics` holds them in a registry of this master only (several masters share one
process in the tests and the simulation): the service counts offer rounds and store commits
through it (the core stays pure: it is timed from outside), the HTTP layer observes its calls
and streams, and jobs and workers by state are read from the plane when scraped, so that no
command pays for them.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.control import ControlPlane, Outcome
from core.effects import DeclineOffers, LaunchTask
from core.scheduling import Offer

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class MasterMetrics:
    """See the module docstring; `plane()` is the service's plane now (it is replaced when a
    failed commit rebuilds it)."""

    def __init__(self, plane: Callable[[], ControlPlane]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.offers = Counter(
            "mantis_master_offers",
            "Resource offers received, used by a launch, or declined",
            ["outcome"],
            registry=r,
        )
        self.launches = Counter("mantis_master_launches", "Workers launched", registry=r)
        self.scheduling_round = Histogram(
            "mantis_master_scheduling_round_seconds",
            "Time the control plane took to place workers on a round of offers",
            registry=r,
        )
        self.store_commit = Histogram(
            "mantis_master_store_commit_seconds",
            "Time to make a batch of events durable",
            registry=r,
        )
        self.store_batch = Histogram(
            "mantis_master_store_commit_events",
            "Events per store commit",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.api_latency = Histogram(
            "mantis_master_api_request_seconds",
            "HTTP API response time by route (streams are not included)",
            ["method", "route", "status"],
            registry=r,
        )
        self.sse_clients = Gauge(
            "mantis_master_sse_clients", "Open SSE streams by route", ["route"], registry=r
        )
        r.register(_PlaneView(plane))

    def offer_round(self, offers: Sequence[Offer], place: Callable[[], Outcome]) -> Outcome:
        """Run `place` (the plane's ``on_offers``), timed; count its offers by outcome."""
        started = time.perf_counter()
        outcome = place()
        self.scheduling_round.observe(time.perf_counter() - started)
        used: set[str] = set()
        declined = launched = 0
        for effect in outcome.effects:
            if isinstance(effect, LaunchTask):
                launched += 1
                used.update(effect.assignment.offer_ids)
            elif isinstance(effect, DeclineOffers):
                declined += len(effect.offer_ids)
        self.offers.labels("received").inc(len(offers))
        self.offers.labels("used").inc(len(used))
        self.offers.labels("declined").inc(declined)
        self.launches.inc(launched)
        return outcome

    async def commit(self, write: Awaitable[None], events: int) -> None:
        """Await a store write of `events` events, timed (a failed write is not counted)."""
        started = time.perf_counter()
        await write
        self._committed(started, events)

    def append(self, write: Callable[[], None], events: int) -> None:
        """`commit` for a synchronous write."""
        started = time.perf_counter()
        write()
        self._committed(started, events)

    def _committed(self, started: float, events: int) -> None:
        self.store_commit.observe(time.perf_counter() - started)
        self.store_batch.observe(events)


class _PlaneView(Collector):
    """Jobs and workers by state, counted when scraped."""

    def __init__(self, plane: Callable[[], ControlPlane]) -> None:
        self.plane = plane

    def collect(self) -> Iterator[Metric]:
        plane = self.plane()
        jobs = GaugeMetricFamily("mantis_master_jobs", "Jobs by state", labels=["state"])
        for state, n in sorted(Tally(j.state.value for j in plane.jobs.values()).items()):
            jobs.add_metric([state], n)
        yield jobs
        workers = GaugeMetricFamily("mantis_master_workers", "Workers by state", labels=["state"])
        for state, n in sorted(Tally(w.state.value for w in plane.workers.values()).items()):
            workers.add_metric([state], n)
        yield workers
        clusters = GaugeMetricFamily("mantis_master_job_clusters", "Job clusters")
        clusters.add_metric([], len(plane.clusters))
        yield clusters

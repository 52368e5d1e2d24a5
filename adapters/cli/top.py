"""`mantis top`: the cluster's jobs and stages as a refreshing table, from their metrics.

One frame: the master's ``/metrics`` (jobs and workers by state, offers), the active jobs and
their workers from the REST API, and each Started worker's ``/metrics`` on the port it
advertises (``metricsPort``), scraped at once and parsed with prometheus_client's parser.
A row per stage: workers Started / wanted, events in and out per second, drops per second,
CPU (cores) and resident memory, summed over its workers (rates are the workers' own, over
their last second). ``--once`` prints one frame and exits (scripts, tests); otherwise the
screen is redrawn every ``--interval`` seconds until Ctrl-C. A worker that does not answer
is left out of the sums and counted in the ``unscraped`` column.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from adapters.cli.client import Json, MantisClient, find_leader
from adapters.cli.commands import add_master_location, escape, table
from mesoslite.flags import positive

SCRAPE_TIMEOUT = 2.0
CLEAR = "\x1b[H\x1b[2J"
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]
"""metric sample name -> labels (sorted pairs) -> value."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_master_location(parser)
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument(
        "--interval",
        type=positive,
        default=2.0,
        help="seconds between frames (default: %(default)s)",
    )
    parser.add_argument("--job", action="append", default=[], help="only these job ids")


def run(args: argparse.Namespace) -> int:
    url = find_leader(args.zk, args.zk_root) if args.zk else args.url
    client = MantisClient(url, token="")  # reads need no token
    with ThreadPoolExecutor(max_workers=16) as pool:
        if args.once:
            sys.stdout.write(frame(client, pool, args.job))
            return 0
        try:
            while True:
                sys.stdout.write(CLEAR + frame(client, pool, args.job))
                sys.stdout.flush()
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


# ---------------------------------------------------------------------- one frame


def scrape(url: str) -> Samples:
    """A ``/metrics`` page, parsed; OSError if it cannot be read."""
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as resp:
        text = resp.read().decode()
    out: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels).get(label, ""): v for labels, v in samples.get(name, {}).items()}


def one(samples: Samples, name: str) -> float:
    return samples.get(name, {}).get((), 0.0)


@dataclass
class StageRow:
    job_id: str
    stage: int
    wanted: int = 0
    started: int = 0
    unscraped: int = 0
    events_in: float = 0.0
    events_out: float = 0.0
    dropped: float = 0.0
    cpu: float = 0.0
    rss: float = 0.0

    def add(self, samples: Samples) -> None:
        self.events_in += one(samples, "mantis_worker_events_in_per_second")
        self.events_out += one(samples, "mantis_worker_events_out_per_second")
        self.dropped += one(samples, "mantis_worker_dropped_per_second")
        self.cpu += one(samples, "mantis_worker_cpu_cores")
        self.rss += one(samples, "mantis_worker_rss_bytes")

    def cells(self) -> list[object]:
        return [
            self.job_id,
            self.stage,
            f"{self.started}/{self.wanted}",
            f"{self.events_in:,.0f}",
            f"{self.events_out:,.0f}",
            f"{self.dropped:,.0f}",
            f"{self.cpu:.2f}",
            f"{self.rss / 1024 / 1024:,.0f}",
            self.unscraped,
        ]


HEADER = ["JOB", "STAGE", "WORKERS", "IN/S", "OUT/S", "DROPS/S", "CPU", "RSS MB", "UNSCRAPED"]


def stage_rows(jobs: Iterable[Json], pool: ThreadPoolExecutor) -> list[StageRow]:
    """A row per stage of `jobs`, with its Started workers' metrics scraped in parallel."""
    rows: dict[tuple[str, int], StageRow] = {}
    targets: list[tuple[StageRow, str]] = []
    for job in jobs:
        jid = str(job.get("jobMetadata", {}).get("jobId", ""))
        for stage in job.get("stageMetadataList") or []:
            n = int(stage.get("stageNum", 0))
            rows[(jid, n)] = StageRow(jid, n, wanted=int(stage.get("numWorkers", 0)))
        for w in job.get("workerMetadataList") or []:
            row = rows.setdefault((jid, int(w["stageNum"])), StageRow(jid, int(w["stageNum"])))
            if w.get("state") != "Started":
                continue
            row.started += 1
            port, host = w.get("metricsPort", -1), w.get("slave")
            if isinstance(port, int) and port > 0 and host:
                targets.append((row, f"http://{host}:{port}/metrics"))
            else:
                row.unscraped += 1
    results = pool.map(_try_scrape, [url for _, url in targets])
    for (row, _), samples in zip(targets, results, strict=True):
        if samples is None:
            row.unscraped += 1
        else:
            row.add(samples)
    return sorted(rows.values(), key=lambda r: (r.job_id, r.stage))


def _try_scrape(url: str) -> Samples | None:
    try:
        return scrape(url)
    except (OSError, ValueError):  # gone, or not a metrics page
        return None


def summary(master: Samples) -> str:
    """The master's line: jobs and workers by state, offers."""

    def states(name: str) -> str:
        counts = by_label(master, name, "state")
        return ", ".join(f"{escape(k)} {v:.0f}" for k, v in sorted(counts.items()) if v) or "none"

    offers = by_label(master, "mantis_master_offers_total", "outcome")
    offer_text = ", ".join(f"{k} {offers.get(k, 0):.0f}" for k in ("received", "used", "declined"))
    return (
        f"jobs: {states('mantis_master_jobs')}\n"
        f"workers: {states('mantis_master_workers')}\n"
        f"offers: {offer_text}\n"
    )


def frame(client: MantisClient, pool: ThreadPoolExecutor, only: Iterable[str] = ()) -> str:
    """One screen: the master's summary and the stage table."""
    master = scrape(f"{client.url}/metrics")
    wanted = set(only)
    jobs = [  # the list's views carry the workers (Mantis' job list does too)
        j for j in client.list_jobs() if not wanted or j["jobMetadata"]["jobId"] in wanted
    ]
    rows = stage_rows(jobs, pool)
    stamp = time.strftime("%H:%M:%S")
    return (
        f"mantis top  {escape(client.url)}  {stamp}\n"
        + summary(master)
        + "\n"
        + table(HEADER, (r.cells() for r in rows))
    )

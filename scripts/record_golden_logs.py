"""Record the golden event logs in tests/golden/: real store folders and their state digests.

    .venv/bin/python -m scripts.record_golden_logs      (from the repository root)
    .venv/bin/python -m scripts.record_golden_logs --digests-only

`--digests-only` keeps the recorded stores and recomputes their digests: for a change of what
the state holds (a field made volatile, say) that leaves every old store loading.

Each store is written by `adapters.store.log.EventLog` (segments, a snapshot, the archive of
terminal jobs it moved out of the log) from the events of:

- `sim-<seed>`: a simulated cluster run (`adapters.sim.world.World(seed).run()`, faults
  and master crashes included), its persisted events in batches of one time each;
- `examples`: the example jobs' lifecycle on a `ControlPlane`: the clusters of
  examples/synthetic_counts.py and examples/hot_keys.py and a cron cluster created, jobs
  submitted, placed on offers, started by heartbeats, scaled, failed and replaced, killed.

tests/golden/digests.json keeps, per store, the digest of the state its events replay to
(tests/golden/digest.py) and its archived jobs. tests/unit/test_golden_logs.py replays every
store with the current code and compares: re-record only for an intended change of the
state, knowing that stores written before it then replay differently.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from itertools import groupby
from pathlib import Path

from adapters.sim.world import World
from adapters.store.log import EventLog
from core.control import ControlPlane, Outcome
from core.events import Event
from core.model import (
    ClusterSla,
    CompletedReason,
    CronPolicy,
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    ParameterValue,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.scheduling import Offer
from core.worker import WorkerState
from tests.contracts.store import without
from tests.golden.digest import state_digest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
STORES = GOLDEN / "stores"
DIGESTS = GOLDEN / "digests.json"
SIM_SEEDS = (2, 3, 4)
STORE_OPTIONS = {"segment_bytes": 8 << 10, "snapshot_every": None}


def sim_batches(seed: int) -> list[list[Event]]:
    """A simulated run's persisted events, batched by time (one outcome's events share it)."""
    world = World(seed)
    result = world.run()
    if not result.ok:
        raise SystemExit(f"simulation seed {seed} failed: {result.violations}")
    events = world.master.store.load()
    return [list(batch) for _, batch in groupby(events, key=lambda e: e.at)]


def definition(
    name: str,
    artifact: str,
    stages: dict[int, int],
    parameters: dict[str, str],
    sla: ClusterSla | None = None,
    now: float = 0.0,
) -> JobClusterDefinition:
    """A cluster as `mantis cluster create` makes it: 0.5 cpu and 256 MB per worker."""
    info = SchedulingInfo(
        tuple(
            StageSchedulingInfo(count, MachineDefinition(0.5, 256.0), scalable=True)
            for _, count in sorted(stages.items())
        )
    )
    return JobClusterDefinition(
        name,
        (JobClusterConfig(artifact, "1", now, info),),
        user="you",
        sla=sla or ClusterSla(),
        parameters=tuple(ParameterValue(k, v) for k, v in parameters.items()),
    )


class Scenario:
    """Drives a ControlPlane like a master: outcomes are batches, launches go to offers."""

    def __init__(self) -> None:
        self.plane = ControlPlane()
        self.batches: list[list[Event]] = []
        self.now = 1_790_000_000.0

    def run(self, command: Callable[..., Outcome], *args: object, **options: object) -> Outcome:
        out = command(*args, now=self.now, **options)
        if out.events:
            self.batches.append(list(out.events))
        return out

    def later(self, seconds: float) -> None:
        self.now += seconds

    def offers(self) -> None:
        """Both agents of `mantis up` offer; pending workers are placed (launched)."""
        self.run(
            self.plane.on_offers,
            [
                Offer(
                    f"o-{self.now:.0f}-{n}",
                    f"agent-{n}",
                    f"127.0.0.{n + 2}",
                    8.0,
                    16_384.0,
                    disk=10_000.0,
                    network_mbps=1_000.0,
                    ports=((41000 + 1000 * n, 41999 + 1000 * n),),
                )
                for n in range(2)
            ],
        )

    def heartbeats(self) -> None:
        """Every live worker heartbeats (a launched one is Started by its first)."""
        for wid, w in sorted(self.plane.workers.items()):
            if not w.terminal:
                self.run(self.plane.heartbeat, wid)

    def place_and_start(self) -> None:
        self.offers()
        self.later(2.0)
        self.heartbeats()
        self.later(10.0)

    def workers_of(self, job_id: str) -> list[str]:
        return sorted(
            w for w, wk in self.plane.workers.items() if wk.job_id == job_id and not wk.terminal
        )

    def killed(self, job_id: str) -> None:
        """The agents report the job's workers killed, as Mesos does after a kill."""
        for wid in sorted(w for w, wk in self.plane.workers.items() if wk.job_id == job_id):
            if not self.plane.workers[wid].terminal:
                self.run(
                    self.plane.worker_status,
                    wid,
                    WorkerState.Failed,
                    reason=CompletedReason.Killed,
                    message="TASK_KILLED",
                )


def examples_batches() -> list[list[Event]]:
    s = Scenario()
    plane = s.plane
    s.run(
        plane.create_cluster,
        definition(
            "synthetic-counts",
            "synthetic_counts.py",
            {1: 1, 2: 2},
            {"eventsPerSecond": "2000"},
            now=s.now,
        ),
    )
    s.run(
        plane.create_cluster,
        definition(
            "hot-keys",
            "hot_keys.py",
            {1: 1},
            {"threshold": "110", "sourceCluster": "synthetic-counts"},
            now=s.now,
        ),
    )
    s.run(
        plane.create_cluster,
        definition(
            "nightly-counts",
            "synthetic_counts.py",
            {1: 1, 2: 1},
            {"eventsPerSecond": "100"},
            sla=ClusterSla(cron_spec="0 */5 * * * ?", cron_policy=CronPolicy.KEEP_NEW),
            now=s.now,
        ),
    )
    s.later(1.0)
    s.run(plane.submit_job, "synthetic-counts", JobRequest(), "you")
    s.run(plane.submit_job, "hot-keys", JobRequest(), "you")
    s.place_and_start()
    for _ in range(3):
        s.heartbeats()
        s.run(plane.tick)
        s.later(30.0)
    s.run(plane.scale_stage, "synthetic-counts-1", 2, 3, "you", "more keys")
    s.place_and_start()
    lost = s.workers_of("synthetic-counts-1")[0]
    s.run(
        plane.worker_status,
        lost,
        WorkerState.Failed,
        reason=CompletedReason.Lost,
        message="TASK_LOST",
    )
    s.later(1.0)
    s.run(plane.tick)
    s.place_and_start()
    s.run(plane.scale_stage, "synthetic-counts-1", 2, 1, "you", "quiet hour")
    s.run(
        plane.update_artifact,
        "synthetic-counts",
        "synthetic_counts.py",
        "2",
        "you",
        skip_submit=True,
    )
    for _ in range(2):  # the cron submits a nightly job, then a new one replaces it
        s.later(300.0)
        s.heartbeats()
        s.run(plane.tick)
        s.place_and_start()
    s.killed("nightly-counts-1")
    s.run(plane.kill_job, "hot-keys-1", "you", "done")
    s.killed("hot-keys-1")
    s.later(5.0)
    s.run(plane.quick_submit, "hot-keys", "you")
    s.place_and_start()
    s.run(plane.update_sla, "nightly-counts", ClusterSla(), "you")
    s.run(plane.kill_job, "nightly-counts-2", "you", "no more nightly")
    s.killed("nightly-counts-2")
    s.run(plane.disable_cluster, "nightly-counts", "you")
    s.run(plane.kill_job, "synthetic-counts-1", "you", "done")
    s.killed("synthetic-counts-1")
    s.later(5.0)
    s.run(plane.submit_job, "synthetic-counts", JobRequest(), "you")
    s.place_and_start()
    return s.batches


def record(name: str, batches: list[list[Event]]) -> dict[str, object]:
    """Write the store (snapshots at 1/2 and 4/5 of the batches, both kept, with the
    segments from the older one on); its digest entry."""
    folder = STORES / name
    shutil.rmtree(folder, ignore_errors=True)
    cuts = {len(batches) // 2, len(batches) * 4 // 5}
    with EventLog(folder, **STORE_OPTIONS) as store:  # type: ignore[arg-type]
        for n, batch in enumerate(batches):
            if n in cuts:
                store.compact()
            store.append(batch)
        loaded = store.load()
        archived = {jid: len(store.archived_job_events(jid)) for jid in store.archived_job_ids()}
    full = ControlPlane.replay(e for batch in batches for e in batch)
    if ControlPlane.replay(loaded).snapshot() != without(full.snapshot(), set(archived)):
        raise SystemExit(f"{name}: the store does not replay to the run's state")
    return {"digest": state_digest(loaded), "events": len(loaded), "archived": archived}


def redigest(name: str) -> dict[str, object]:
    """The digest entry of a recorded store, as the current code replays it."""
    with EventLog(STORES / name, **STORE_OPTIONS) as store:  # type: ignore[arg-type]
        loaded = store.load()
        archived = {jid: len(store.archived_job_events(jid)) for jid in store.archived_job_ids()}
    return {"digest": state_digest(loaded), "events": len(loaded), "archived": archived}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.record_golden_logs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--digests-only", action="store_true", help="keep the stores, recompute their digests"
    )
    if parser.parse_args(argv).digests_only:
        names = sorted(p.name for p in STORES.iterdir() if p.is_dir())
        DIGESTS.write_text(
            json.dumps({n: redigest(n) for n in names}, indent=2, sort_keys=True) + "\n"
        )
        print(f"recomputed the digests of {len(names)} stores")  # noqa: T201
        return
    STORES.mkdir(parents=True, exist_ok=True)
    digests = {f"sim-{seed}": record(f"sim-{seed}", sim_batches(seed)) for seed in SIM_SEEDS}
    digests["examples"] = record("examples", examples_batches())
    DIGESTS.write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")
    size = sum(p.stat().st_size for p in GOLDEN.rglob("*") if p.is_file())
    print(f"recorded {len(digests)} stores in {GOLDEN} ({size // 1024} KB)")  # noqa: T201


if __name__ == "__main__":
    main()

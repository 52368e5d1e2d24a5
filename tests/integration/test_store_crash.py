"""Crash tests: SIGKILL a writer process at random points; every acknowledged batch survives.

The writer (tests/integration/store_writer.py) prints `ack <n>` only after batch n is
durable. Each round kills it right after a random ack (it keeps writing meanwhile, so the
kill lands anywhere: mid-write, mid-fsync, mid-rotation, mid-compaction), reopens the store
and checks that it holds exactly a prefix of the batches that covers every ack, and that it
still takes appends. Rounds are seeded; a failure names the seed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.store.log import EventLog
from core.control import ControlPlane
from core.events import CronFired, Event
from tests.contracts.store import without
from tests.integration.store_writer import batches, options

ROOT = Path(__file__).resolve().parents[2]


def run_until_killed(folder: Path, seed: int, mode: str, kind: str, kill_after: int) -> int:
    """Start a writer, SIGKILL it just after ack number `kill_after`; the highest ack seen."""
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.store_writer",
            str(folder),
            str(seed),
            mode,
            kind,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert writer.stdout is not None
    acked, deadline = -1, time.monotonic() + 60
    try:
        for line in writer.stdout:
            if line.startswith("ack "):
                acked = max(acked, int(line.split()[1]))
                if acked >= kill_after:
                    writer.send_signal(signal.SIGKILL)
                    break
            assert time.monotonic() < deadline, "the writer is too slow"
        writer.wait(timeout=30)
        acked = max([acked] + [int(x.split()[1]) for x in writer.stdout if x.startswith("ack ")])
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode in (-signal.SIGKILL, 0), f"writer failed (seed {seed})"
    return acked


@pytest.mark.parametrize("mode", ["sync", "group"])
def test_acknowledged_plain_batches_survive_sigkill(tmp_path: Path, mode: str) -> None:
    """Rounds on one folder: each reopens what the last kill left, and must keep it all."""
    rng = random.Random(f"crash-{mode}")
    folder = tmp_path / "store"
    before: list[Event] = []
    for round_ in range(4):
        seed = rng.randrange(10**6)
        acked = run_until_killed(folder, seed, mode, "plain", rng.randint(0, 300))
        work = batches(seed, "plain")
        with EventLog(folder, **options("plain")) as store:
            loaded = store.load()
            assert loaded[: len(before)] == before, f"seed {seed}: earlier rounds' events changed"
            mine = loaded[len(before) :]
            sizes = [0]
            for batch in work:
                sizes.append(sizes[-1] + len(batch))
            assert len(mine) in sizes, f"seed {seed}: a batch survived in part"
            kept = sizes.index(len(mine))
            assert kept > acked, f"seed {seed}: acked batch {acked} lost (kept {kept})"
            assert mine == [e for batch in work[:kept] for e in batch], f"seed {seed}: wrong events"
            check = [CronFired(f"check-{round_}", 0.0)]
            store.append(check)
            before = loaded + check
        with EventLog(folder, **options("plain")) as store:
            assert store.load() == before


@pytest.mark.parametrize("mode", ["sync", "group"])
def test_acknowledged_control_plane_batches_survive_sigkill_with_compaction(
    tmp_path: Path, mode: str
) -> None:
    """Kills during rotations and snapshots too: the store replays to a prefix of the run."""
    rng = random.Random(f"crash-plane-{mode}")
    for round_ in range(3):
        seed = rng.randrange(10**6)
        folder = tmp_path / f"store-{round_}"
        work = batches(seed, "plane")
        acked = run_until_killed(
            folder, seed, mode, "plane", rng.randint(0, min(len(work) - 1, 400))
        )
        with EventLog(folder, **options("plane")) as store:
            state = ControlPlane.replay(store.load()).snapshot()
            archived = set(store.archived_job_ids())
            plane = ControlPlane()
            for batch in work[: acked + 1]:
                plane.apply_persisted(batch)
            matches = []
            for kept in range(acked + 1, len(work) + 1):
                if without(plane.snapshot(), archived) == state:
                    matches.append(kept)
                    break
                if kept < len(work):
                    plane.apply_persisted(work[kept])
            assert matches, f"seed {seed}: the store is no prefix of the run covering ack {acked}"
            # Usable: the next batch of the run goes in and replays.
            if matches[0] < len(work):
                store.append(work[matches[0]])
                plane.apply_persisted(work[matches[0]])
        with EventLog(folder, **options("plane")) as store:
            archived = set(store.archived_job_ids())
            assert ControlPlane.replay(store.load()).snapshot() == without(
                plane.snapshot(), archived
            )

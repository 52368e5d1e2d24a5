"""A graceful scale-down with real worker processes: a keyed stage scaled 3 -> 1 while its
output flows (tests/integration/jobs/keyed_ids.py: each window reports its events' ids).

The removed workers (indexes 1 and 2) end Completed by themselves (exit status 0, before the
master's grace period would kill them); their keys move to worker 0; no event is counted twice
and none is lost; a (key, window) is reported by two workers only for the window in progress
at the rescale of a key that moved, each worker with its part; every key keeps being counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.model import (
    CompletedReason,
)
from core.worker import WorkerState
from runtime.routing import HashRing
from tests.integration.workers import HOST, JOBS, local_master, read_sse, scalable_cluster

pytestmark = pytest.mark.timeout(120)

KEYS = {f"k{n}" for n in range(12)}
ARTIFACT = JOBS / "keyed_ids.py"


def full_windows(reports: list[Any]) -> list[set[str]]:
    """The keys of each complete window, in order."""
    by_start: dict[float, set[str]] = {}
    for r in reports:
        if r["complete"]:
            by_start.setdefault(r["start"], set()).add(r["key"])
    return [keys for _, keys in sorted(by_start.items())]


async def test_scale_down_3_to_1_moves_keys_counts_each_event_once(tmp_path: Path) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        m.master.run(lambda p, now: p.create_cluster(scalable_cluster("keyed", ARTIFACT), now))
        jid = m.submit("keyed", ARTIFACT, [1, 3], {"eventsPerSecond": 600})
        await m.until(lambda: len(m.started(jid, stage=2)) == 3, "3 stage-2 workers Started")
        workers = {w.index: w for w in m.started(jid, stage=2)}
        got: dict[int, list[Any]] = {i: [] for i in workers}
        readers = {  # each sink worker read directly: who reported what
            i: asyncio.create_task(read_sse(http, f"http://{HOST}:{w.ports[0]}/", got[i]))
            for i, w in workers.items()
        }
        await m.until(
            lambda: all(len(full_windows(r)) >= 2 for r in got.values()), "2 windows each"
        )

        scaled_at = time.time()
        m.master.run(lambda p, now: p.scale_stage(jid, 2, 1, "test", "less", now))
        removed = [workers[1], workers[2]]
        tasks = [m.processes[w.worker_id] for w in removed]
        await m.until(
            lambda: (
                all(t.popen.poll() is not None for t in tasks)
                and all(readers[i].done() for i in (1, 2))
            ),
            "the removed workers exited and their streams ended",
            timeout=m.master.plane.config.scale_down_grace_secs - 1,
        )
        after = len(got[0])
        await m.until(
            lambda: sum(keys == KEYS for keys in full_windows(got[0][after:])) >= 2,
            "worker 0 counting every key in whole windows",
        )
        readers[0].cancel()
        plane = m.master.plane
        hosts = plane.scheduling_info(jid).stages[1].hosts

    # Ended by themselves, Completed: not killed, not failed, not replaced.
    for w, task in zip(removed, tasks, strict=True):
        assert task.popen.returncode == 0 and not task.killed, m.logs()
        assert "worker_scaled_down" in task.log.read_text()
        state = plane.workers[w.worker_id]
        assert (state.state, state.reason) == (WorkerState.Completed, CompletedReason.Killed)
    assert [h.index for h in hosts] == [0]
    assert [w.index for w in plane.job(jid).stages[2]] == [0]

    reports = [(i, r) for i, rs in got.items() for r in rs]
    ids = Counter(n for _, r in reports for n in r["ids"])
    assert [n for n, c in ids.items() if c > 1] == [], "an event counted twice"
    recent = [n for _, r in reports if r["start"] >= scaled_at - 2 for n in r["ids"]]
    lo, hi = min(recent), max(n for r in got[0] for n in r["ids"])
    assert sorted(set(range(lo, hi + 1)) - set(ids)) == [], "events lost across the rescale"

    ring = HashRing(f"stage_2_index_{i}" for i in range(3))
    moved = {k for k in KEYS if ring.lookup(k) != "stage_2_index_0"}
    reporters: dict[tuple[str, float], set[int]] = {}
    for i, r in reports:
        reporters.setdefault((r["key"], r["start"]), set()).add(i)
    split = sorted(kw for kw, who in reporters.items() if len(who) > 1)
    assert all(k in moved and len(reporters[(k, s)]) == 2 for k, s in split), split
    assert len({k for k, _ in split}) == len(split), f"a key split in two windows: {split}"

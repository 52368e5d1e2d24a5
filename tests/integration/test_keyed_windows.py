"""The example job through `mantis up --example`: one line per key and window, from the first
window on, and still when a stage-2 worker is SIGKILLed and replaced; and what a rescale of
stage 2 does to the windows.

Stage 1 keys the synthetic events over the 2 workers of stage 2, which count each key in
1-second windows. Each (key, window start) must be reported once: by the one worker that owns
the key (runtime.transport, Declared membership).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from runtime.routing import HashRing
from tests.eventually import wait_until
from tests.integration.up_process import UpProcess, started_in
from tests.integration.workers import ROOT, local_master, read_sse

pytestmark = pytest.mark.timeout(150)

KEYS = {f"k{n}" for n in range(16)}
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def twice(lines: list[Any]) -> list[tuple[str, float]]:
    """The (key, window start) pairs reported more than once."""
    seen = Counter((w["key"], w["start"]) for w in lines)
    return sorted(k for k, n in seen.items() if n > 1)


def windows(lines: list[Any]) -> dict[float, set[str]]:
    """The keys reported per window start."""
    out: dict[float, set[str]] = {}
    for w in lines:
        out.setdefault(w["start"], set()).add(w["key"])
    return out


def stage_workers(data: Path, stage: int) -> list[int]:
    """Pids of the live worker processes of `stage` started in `data`."""
    found = []
    for pid in started_in(data):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"MANTIS_STAGE=%d" % stage in environ and b"MANTIS_JOB_ID=" in b" ".join(environ):
            found.append(pid)
    return found


def test_each_key_once_per_window_from_the_first_and_across_a_killed_worker(
    tmp_path: Path,
) -> None:
    data = tmp_path / "mantis-data"
    up = UpProcess(data, free_port(), "--example")
    try:
        # The first windows, as `make run` prints them: every key once per window.
        wait_until(lambda: len(windows(up.example_lines())) >= 4, "4 windows printed", 90)
        first = up.example_lines()
        assert twice(first) == [], f"reported twice: {twice(first)}\n{up.console()}"
        assert min(first, key=lambda w: w["start"])["start"] == first[0]["start"]
        full = sorted(windows(first).items())[1:-1]  # whole seconds: neither partial end
        assert all(keys == KEYS for _, keys in full), full

        # One stage-2 worker SIGKILLed: its slot's keys wait for its replacement (dropped
        # meanwhile), never going to the other worker, so still no window twice.
        victims = stage_workers(data, 2)
        assert len(victims) == 2, victims
        os.kill(victims[0], signal.SIGKILL)
        killed_at = len(up.example_lines())

        def replaced() -> bool:
            after = up.example_lines()[killed_at:]
            pids = stage_workers(data, 2)
            later = sorted(windows(after).items())
            return (
                len(pids) == 2
                and victims[0] not in pids
                and len(later) >= 3
                and later[-2][1] == KEYS  # a whole window of every key, from both workers
            )

        wait_until(replaced, "a replacement counting its keys again", 90, describe=up.console)
        lines = up.example_lines()
        assert twice(lines) == [], f"reported twice: {twice(lines)}"
    finally:
        up.kill()


@pytest.mark.timeout(120)
async def test_a_rescale_moves_only_the_new_workers_keys_each_split_in_one_window(
    tmp_path: Path,
) -> None:
    """Stage 2 scaled from 2 to 3 workers: the keys the new slot takes over (consistent
    hashing: and only those) stay with their old owner until the new worker has Started; the
    window in progress then is reported by both, each with its part; every other (key,
    window) is reported once."""
    info = SchedulingInfo(
        (
            StageSchedulingInfo(1, MachineDefinition(0.1, 64)),
            StageSchedulingInfo(2, MachineDefinition(0.1, 64), scalable=True),
        )
    )
    artifact = EXAMPLES / "synthetic_counts.py"
    config = JobClusterConfig("job.py", "1", time.time(), info, job_jar_url=str(artifact))
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        m.master.run(
            lambda p, now: p.create_cluster(JobClusterDefinition("counts", (config,)), now)
        )
        jid = m.submit("counts", artifact, [1, 2], {"eventsPerSecond": 2000})
        got: list[Any] = []
        reader = asyncio.create_task(read_sse(http, f"{m.url}/jobconnectbyid/{jid}", got))
        await m.until(lambda: len(windows(got)) >= 3, "3 windows")
        assert twice(got) == []
        m.master.run(lambda p, now: p.scale_stage(jid, 2, 3, "test", "more keys", now))
        await m.until(lambda: len(m.started(jid, stage=2)) == 3, "3 stage-2 workers")
        scaled_at = len(got)
        await m.until(
            lambda: sum(keys == KEYS for keys in windows(got[scaled_at:]).values()) >= 2,
            "whole windows after the rescale",
        )
        reader.cancel()

    slots = [f"stage_2_index_{i}" for i in range(3)]
    before, after = HashRing(slots[:2]), HashRing(slots)
    moved = {k for k in KEYS if before.lookup(k) != after.lookup(k)}
    assert moved and all(after.lookup(k) == slots[2] for k in moved), "only to the new slot"
    counted = Counter((w["key"], w["start"]) for w in got)
    split = [kw for kw, n in counted.items() if n > 1]
    assert all(counted[kw] == 2 and kw[0] in moved for kw in split), split
    assert len({k for k, _ in split}) == len(split), "a key split in more than one window"

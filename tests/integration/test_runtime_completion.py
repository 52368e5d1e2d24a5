"""A finite source completes its job: the last windows are emitted, every worker reports
Completed, and so the job ends Completed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.job import JobState
from core.model import CompletedReason
from core.worker import WorkerState
from tests.integration.workers import JOBS, local_master, read_sse

pytestmark = pytest.mark.timeout(90)


async def test_a_finite_source_completes_its_job_with_its_last_windows(tmp_path: Path) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = m.submit("finite", JOBS / "finite_counts.py", [1, 2])
        got: list[Any] = []
        reader = asyncio.create_task(read_sse(http, f"{m.url}/jobconnectbyid/{jid}", got))
        await m.until(lambda: m.job_state(jid) is JobState.Completed, "the job Completed")
        await m.until(lambda: sum(w["count"] for w in got) == 7 * 25, "every event counted")
        reader.cancel()
        counts: dict[str, list[int]] = defaultdict(list)
        for window in got:
            counts[window["key"]].append(window["count"])
        assert {k: sorted(c) for k, c in counts.items()} == {
            f"k{n}": [5, 10, 10] for n in range(7)
        }, "each key's last window, of 5, emitted at the end"
        job = m.master.plane.job(jid)
        assert job.reason is CompletedReason.Normal
        assert all(w.state is WorkerState.Completed for w in m.workers(jid))

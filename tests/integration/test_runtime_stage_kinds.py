"""Keyed -> keyed jobs run on real workers: ScalarToKey, KeyToKey, GroupToGroup (re-keying)
and KeyToScalar in one job, with ``mantis.stageConcurrency`` over every stage's config."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.job import JobState
from tests.integration.workers import JOBS, local_master, read_sse

pytestmark = pytest.mark.timeout(90)


async def test_a_keyed_chain_re_keys_between_keyed_stages_and_completes(tmp_path: Path) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = m.submit(
            "chain", JOBS / "keyed_chain.py", [1, 2, 2, 2], {"mantis.stageConcurrency": "2"}
        )
        got: list[Any] = []
        reader = asyncio.create_task(read_sse(http, f"{m.url}/jobconnectbyid/{jid}", got))
        await m.until(lambda: m.job_state(jid) is JobState.Completed, "the job Completed")
        await m.until(lambda: len(got) >= 2, "the regions' totals")
        reader.cancel()
        # Each region summed by one worker and one instance of it: one line each, all of it.
        assert sorted((w["key"], w["value"], w["count"]) for w in got) == [
            ("east", 100, 20),
            ("west", 100, 20),
        ]
        logs = [p.log.read_text() for p in m.processes.values()]
        assert len(logs) == 7 and all("concurrency=2" in text for text in logs), "the override"

"""The examples run as real worker processes: counts per key per second, and a chained job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.workers import local_master, read_sse

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.timeout(100)
async def test_synthetic_counts_and_the_chained_hot_keys_job(tmp_path: Path) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        counts = m.submit(
            "synthetic-counts",
            EXAMPLES / "synthetic_counts.py",
            [2, 2],
            {"eventsPerSecond": 1000, "minValue": 50},
        )
        hot = m.submit("hot-keys", EXAMPLES / "hot_keys.py", [1], {"threshold": 20})
        await m.until(
            lambda: len(m.started(counts)) == 4 and len(m.started(hot)) == 1, "both jobs Started"
        )
        windows: list[Any] = []
        hot_windows: list[Any] = []
        readers = [
            asyncio.create_task(read_sse(http, f"{m.url}/jobconnectbyid/{counts}", windows)),
            asyncio.create_task(read_sse(http, f"{m.url}/jobconnectbyid/{hot}", hot_windows)),
        ]
        # three full seconds of windows from both stage-2 workers
        await m.until(lambda: len({w["end"] for w in windows}) >= 4, "4 windows", timeout=30)
        await m.until(lambda: len(hot_windows) >= 5, "hot keys", timeout=30)
        for r in readers:
            r.cancel()

        full = sorted({w["end"] for w in windows})[1:-1]  # whole seconds, both sources on
        for end in full:
            per_key = [w for w in windows if w["end"] == end]
            assert {w["key"] for w in per_key} <= {f"k{n}" for n in range(16)}
            total = sum(w["count"] for w in per_key)
            # 2 sources x 1,000 events/s, about half kept (value >= 50)
            assert 700 <= total <= 1300, (end, total)
        assert all(h["count"] >= 20 and h["source"] == "synthetic-counts" for h in hot_windows)
        upstream = {(w["key"], w["end"]) for w in windows}
        assert any((h["key"], h["end"]) in upstream for h in hot_windows)

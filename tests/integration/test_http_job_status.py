"""The job status stream (WebSocket) with real workers: history first, live messages, end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.workers import local_master

pytestmark = pytest.mark.timeout(60)


@pytest.mark.timeout(50)
async def test_status_stream_replays_history_follows_the_job_and_ends_with_it(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        messages: list[dict[str, Any]] = []
        async with http.ws_connect(f"{m.url}/api/v1/jobStatusStream/{jid}") as ws:
            for _ in range(2):
                messages.append((await ws.receive_json(timeout=10))["status"])
            async with http.delete(
                f"{m.url}/api/v1/jobs/{jid}", params={"user": "t", "reason": "done"}
            ) as resp:
                assert resp.status == 202
            async for msg in ws:
                messages.append(msg.json()["status"])
        texts = [s["message"] for s in messages]
        assert texts[0] == "job submitted by test" and texts[1] == "all workers started"
        assert messages[-1]["state"] == "Completed" and "done" in texts[-1]
        assert all(s["jobId"] == jid for s in messages)
        async with http.get(f"{m.url}/api/v1/jobStatusStream/{jid}") as resp:
            assert resp.status == 400 and (await resp.json())["field"] == "Upgrade"
        async with http.get(f"{m.url}/api/v1/jobStatusStream/nope-1") as resp:
            assert resp.status == 404

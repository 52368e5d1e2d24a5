"""A worker whose job code does not match its submission fails at start-up, saying why."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.worker import WorkerState
from tests.integration.workers import JOBS, LocalMaster

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def local_master(tmp_path: Path) -> AsyncIterator[LocalMaster]:
    master = LocalMaster(tmp_path)
    await master.start()
    try:
        yield master
    finally:
        await master.close()


@pytest.mark.timeout(90)
async def test_a_stage_count_that_differs_from_the_code_fails_every_worker_at_start_up(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m:
        # jobs/counter.py defines three stages.
        fewer = m.submit("fewer", JOBS / "counter.py", [1])
        more = m.submit("more", JOBS / "counter.py", [1, 1, 1, 1])

        def failed(jid: str) -> list[str]:
            return [w.message for w in m.workers(jid) if w.state is WorkerState.Failed]

        await m.until(lambda: failed(fewer) and len(failed(more)) >= 4, "workers Failed")
        assert set(failed(fewer)) == {"the job defines 3 stages but was submitted with 1"}
        assert set(failed(more)) == {"the job defines 3 stages but was submitted with 4"}
        assert not m.started(fewer) and not m.started(more)  # failed before Started
        m.kill(fewer)
        m.kill(more)

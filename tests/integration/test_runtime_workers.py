"""Real worker processes (`python -m runtime.worker`) on loopback, against the master's API."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.job import JobState
from core.worker import WorkerState
from tests.integration.aio import run
from tests.integration.workers import HOST, JOBS, LocalMaster, read_sse

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def local_master(tmp_path: Path) -> AsyncIterator[LocalMaster]:
    master = LocalMaster(tmp_path)
    await master.start()
    try:
        yield master
    finally:
        await master.close()


def test_three_stages_deliver_exactly_the_expected_output_with_key_affinity(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
            jid = m.submit("three", JOBS / "three_stage.py", [1, 2, 2], {"n": 1400})
            await m.until(lambda: len(m.started(jid)) == 5, "5 workers Started")
            sinks = sorted(m.started(jid, stage=3), key=lambda w: w.index)
            outputs: dict[int, list[Any]] = {w.index: [] for w in sinks}
            readers = [
                asyncio.create_task(read_sse(http, f"http://{HOST}:{w.ports[0]}/", outputs[w.index]))
                for w in sinks
            ]
            await m.until(lambda: sum(len(o) for o in outputs.values()) >= 70, "70 windows")
            for r in readers:
                r.cancel()

            keys_by_worker = {i: {w["key"] for w in out} for i, out in outputs.items()}
            seen: dict[str, list[int]] = defaultdict(list)
            for out in outputs.values():
                for window in out:
                    assert len(window["items"]) == 10, window
                    seen[window["key"]].extend(window["items"])
            expected = {f"k{k}": sorted(i for i in range(0, 1400, 2) if i % 7 == k) for k in range(7)}
            assert {k: sorted(v) for k, v in seen.items()} == expected
            # key affinity: every key was counted by exactly one stage-3 worker
            assert sum(len(keys) for keys in keys_by_worker.values()) == 7, keys_by_worker
            assert all(keys_by_worker.values()), "both stage-3 workers got keys"
            assert m.job_state(jid) is JobState.Launched

    run(main(), timeout=90)


def test_sigterm_completes_a_worker_and_bad_artifacts_fail_with_a_clear_message(
    tmp_path: Path,
) -> None:
    bad = {
        "import_error.py": "import no_such_module_here\n",
        "no_job.py": "def not_job():\n    return 1\n",
        "wrong_type.py": "def job():\n    return 42\n",
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)

    async def main() -> None:
        async with local_master(tmp_path) as m:
            jobs = {name: m.submit(name.removesuffix(".py").replace("_", "-"), tmp_path / name, [1])
                    for name in bad}  # fmt: skip
            missing = m.submit("missing", tmp_path / "nope.py", [1])

            def failed(jid: str) -> list[Any]:
                return [w for w in m.workers(jid) if w.state is WorkerState.Failed]

            every = [*jobs.values(), missing]
            await m.until(lambda: all(failed(j) for j in every), "every bad worker Failed")
            messages = {name: failed(jid)[0].message for name, jid in jobs.items()}
            assert "cannot import" in messages["import_error.py"]
            assert "no_such_module_here" in messages["import_error.py"]
            assert "defines no job() function" in messages["no_job.py"]
            assert "returned a int, expected a runtime.job.Job" in messages["wrong_type.py"]
            assert "no such file or directory" in failed(missing)[0].message

    run(main(), timeout=60)

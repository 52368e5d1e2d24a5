"""Real worker processes (`python -m runtime.worker`) on loopback, against the master's API."""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.job import JobState
from core.model import CompletedReason, DurationType, JobSla, metrics_port
from core.ports import TaskStatus
from core.worker import WorkerState
from tests.eventually import eventually_value
from tests.integration.workers import HOST, JOBS, local_master, read_sse

pytestmark = pytest.mark.timeout(120)


@pytest.mark.timeout(90)
async def test_three_stages_deliver_exactly_the_expected_output_with_key_affinity_and_complete(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = m.submit("three", JOBS / "three_stage.py", [1, 2, 2], {"n": 14000})
        await m.until(lambda: len(m.started(jid)) == 5, "5 workers Started")
        sinks = sorted(m.started(jid, stage=3), key=lambda w: w.index)
        outputs: dict[int, list[Any]] = {w.index: [] for w in sinks}
        readers = [
            asyncio.create_task(read_sse(http, f"http://{HOST}:{w.ports[0]}/", outputs[w.index]))
            for w in sinks
        ]
        await m.until(lambda: sum(len(o) for o in outputs.values()) >= 700, "700 windows")
        await m.until(lambda: m.job_state(jid) is JobState.Completed, "the job Completed")
        for r in readers:
            r.cancel()

        keys_by_worker = {i: {w["key"] for w in out} for i, out in outputs.items()}
        seen: dict[str, list[int]] = defaultdict(list)
        for out in outputs.values():
            for window in out:
                assert len(window["items"]) == 10, window
                seen[window["key"]].extend(window["items"])
        expected = {f"k{k}": sorted(i for i in range(0, 14000, 2) if i % 7 == k) for k in range(7)}
        assert {k: sorted(v) for k, v in seen.items()} == expected
        # key affinity: every key was counted by exactly one stage-3 worker
        assert sum(len(keys) for keys in keys_by_worker.values()) == 7, keys_by_worker
        assert all(keys_by_worker.values()), "both stage-3 workers got keys"


@pytest.mark.timeout(60)
async def test_bad_artifacts_parameters_and_code_fail_the_worker_with_a_clear_message(
    tmp_path: Path,
) -> None:
    bad = {
        "import_error.py": "import no_such_module_here\n",
        "no_job.py": "def not_job():\n    return 1\n",
        "wrong_type.py": "def job():\n    return 42\n",
        "raises_later.py": (
            "from runtime.job import IterableSource, Job, ServerSentEventsSink\n"
            "from runtime.parameters import IntParameter\n"
            "from runtime.stages import ScalarStage\n"
            "def check(events):\n"
            "    if 50 in events:\n"
            "        raise ValueError('event 50 is bad')\n"
            "    return events\n"
            "def job():\n"
            "    return Job(IterableSource(range(100), 10), [ScalarStage(batch_fn=check)],\n"
            "               ServerSentEventsSink(eager=True), [IntParameter('n', default=1)])\n"
        ),
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)

    async with local_master(tmp_path) as m:
        jobs = {
            name: m.submit(name.removesuffix(".py").replace("_", "-"), tmp_path / name, [1])
            for name in bad
        }
        missing = m.submit("missing", tmp_path / "nope.py", [1])
        bad_parameter = m.submit("bad-parameter", tmp_path / "raises_later.py", [1], {"n": "x"})

        def failed(jid: str) -> list[Any]:
            return [w for w in m.workers(jid) if w.state is WorkerState.Failed]

        every = [*jobs.values(), missing, bad_parameter]
        await m.until(lambda: all(failed(j) for j in every), "every bad worker Failed")
        messages = {name: failed(jid)[0].message for name, jid in jobs.items()}
        assert "cannot import" in messages["import_error.py"]
        assert "no_such_module_here" in messages["import_error.py"]
        assert "defines no job() function" in messages["no_job.py"]
        assert "returned a int, expected a runtime.job.Job" in messages["wrong_type.py"]
        assert "no such file or directory" in failed(missing)[0].message
        assert "ValueError: event 50 is bad" in messages["raises_later.py"]
        assert "bad job parameters: parameter 'n'" in failed(bad_parameter)[0].message


async def drops(http: aiohttp.ClientSession, worker: Any) -> int:
    """The events a worker's output has dropped so far (its metrics; a heartbeat reports
    those since the previous one)."""
    async with http.get(f"http://{HOST}:{metrics_port(worker.ports)}/metrics") as resp:
        families = text_string_to_metric_families(await resp.text())
    return next(
        int(s.value)
        for f in families
        for s in f.samples
        if s.name == "mantis_worker_events_dropped_total"
    )


@pytest.mark.timeout(90)
async def test_a_sigkilled_worker_is_replaced_downstream_reconnects_and_the_loss_is_counted(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        (sink,) = m.started(jid, stage=3)
        got: list[Any] = []
        reader = asyncio.create_task(read_sse(http, f"http://{HOST}:{sink.ports[0]}/", got))
        await m.until(lambda: len(got) > 500, "output")
        (middle,) = m.started(jid, stage=2)
        m.process(jid, 2, 0).popen.send_signal(signal.SIGKILL)
        await m.until(lambda: middle.state is WorkerState.Failed, "the kill noticed")
        seen_at_kill = len(got)
        await m.until(lambda: len(m.started(jid, stage=2)) == 1, "a replacement Started")
        (replacement,) = m.started(jid, stage=2)
        assert replacement.number > middle.number and replacement.index == middle.index
        await m.until(
            lambda: any(e["s2"] == replacement.number for e in got[seen_at_kill:]),
            "output through the replacement",
        )
        reader.cancel()
        ids = [e["i"] for e in got]
        assert ids == sorted(ids), "one path, in order"
        missing = ids[-1] - ids[0] + 1 - len(ids)
        assert missing > 0
        # Stage 1 counted what it could not deliver (its metrics show it): all but
        # what the dead worker had acknowledged and not yet passed on (one batch or so).
        (source,) = m.started(jid, stage=1)

        async def dropped_enough() -> bool:
            return bool(await drops(http, source) >= missing - 500)

        await eventually_value(dropped_enough, f"stage 1 to count ~{missing} dropped events", 10)


@pytest.mark.timeout(90)
async def test_a_replaced_worker_that_lives_on_is_refused_by_its_upstream_and_exits(
    tmp_path: Path,
) -> None:
    """As when its agent was SIGKILLed and the worker survived: the master wrote it off and
    started a replacement; the old one must not stay on as a second consumer of its slot."""
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        (middle,) = m.started(jid, stage=2)
        old = m.processes.pop(middle.worker_id)  # out of the local agent's reach: it lives on
        try:
            status = TaskStatus(middle.worker_id, "TASK_LOST", "local", "agent removed")
            m.master.run(lambda plane, now: plane.task_status(status, now))
            await m.until(lambda: len(m.started(jid, stage=2)) == 1, "a replacement Started")
            (replacement,) = m.started(jid, stage=2)
            assert replacement.number > middle.number
            assert await asyncio.to_thread(old.popen.wait, 20) == 1, "the old worker exits"
            text = old.log.read_text()
            assert f"replaced by worker {replacement.number}" in text, text[-2000:]
            (sink,) = m.started(jid, stage=3)
            got: list[Any] = []
            reader = asyncio.create_task(read_sse(http, f"http://{HOST}:{sink.ports[0]}/", got))
            await m.until(lambda: len(got) > 2000, "output through the replacement alone")
            reader.cancel()
            ids = [e["i"] for e in got]  # a second consumer would take half of them
            assert len(ids) >= 0.9 * (ids[-1] - ids[0] + 1), "a share went elsewhere"
        finally:
            if old.popen.poll() is None:
                old.popen.kill()
            old.popen.wait()


@pytest.mark.timeout(60)
async def test_sigterm_stops_a_worker_cleanly_without_completing_it_with_an_api_token(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path, api_token="s3cret") as m:
        jid = await m.counter_job()
        (sink,) = m.started(jid, stage=3)
        process = m.process(jid, 3, 0)
        process.reported = True  # the master hears only from the worker itself
        process.popen.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.popen.wait, 10) == 0
        # Everything it posted was applied before it exited: no Completed among it.
        assert sink.state is WorkerState.Started
        assert m.job_state(jid) is JobState.Launched
        assert "worker_stopped" in process.log.read_text()


@pytest.mark.timeout(90)
async def test_a_cluster_shutdown_does_not_end_the_job_its_workers_are_replaced(
    tmp_path: Path,
) -> None:
    """Every worker SIGTERMed, as when the agents shut down, and reported as an agent does."""
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        before = {w.worker_id: w for w in m.started(jid)}
        processes = [m.processes[wid] for wid in before]
        for p in processes:
            p.reported = True  # reported below, the way a stopping agent reports them
            p.popen.send_signal(signal.SIGTERM)
        for p in processes:
            assert await asyncio.to_thread(p.popen.wait, 10) == 0
        assert m.job_state(jid) is JobState.Launched
        assert all(w.state is WorkerState.Started for w in before.values())
        for wid in before:
            status = TaskStatus(
                wid, "TASK_KILLED", "local", "Agent shut down; Command exited with status 0"
            )
            m.master.run(lambda plane, now, s=status: plane.task_status(s, now))
        await m.until(
            lambda: (
                len(m.started(jid)) == 3
                and not set(w.worker_id for w in m.started(jid)) & before.keys()
            ),
            "3 replacements Started",
        )
        assert m.job_state(jid) is JobState.Launched
        assert all(
            w.state is WorkerState.Failed and w.reason is CompletedReason.Killed
            for w in before.values()
        )
        (sink,) = m.started(jid, stage=3)
        got: list[Any] = []
        reader = asyncio.create_task(read_sse(http, f"http://{HOST}:{sink.ports[0]}/", got))
        await m.until(lambda: len(got) > 100, "output from the replacements")
        reader.cancel()


@pytest.mark.timeout(60)
async def test_client_ids_load_balance_within_a_group_and_broadcast_across_groups(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jid = await m.counter_job()
        (sink,) = m.started(jid, stage=3)
        url = f"http://{HOST}:{sink.ports[0]}/"
        a1: list[Any] = []
        a2: list[Any] = []
        b: list[Any] = []
        readers = [
            asyncio.create_task(read_sse(http, url + "?clientId=a", a1)),
            asyncio.create_task(read_sse(http, url + "?clientId=a", a2)),
            asyncio.create_task(read_sse(http, url + "?clientId=b", b)),
        ]
        await m.until(lambda: min(len(a1), len(a2), len(b)) > 2000, "output to all three")
        for r in readers:
            r.cancel()
        ids = {name: [e["i"] for e in got] for name, got in (("a1", a1), ("a2", a2), ("b", b))}
        lo = max(ids[n][0] for n in ids)
        hi = min(ids[n][-1] for n in ids)
        window = set(range(lo, hi + 1))
        in_a1, in_a2 = set(ids["a1"]) & window, set(ids["a2"]) & window
        assert len(window) > 1000
        assert in_a1 and in_a2 and not in_a1 & in_a2, "group a: split, no duplicates"
        assert in_a1 | in_a2 == window, "group a: together, everything"
        assert set(ids["b"]) >= window, "group b: everything"


@pytest.mark.timeout(60)
async def test_a_transient_job_without_subscribers_is_killed_by_its_sink_worker(
    tmp_path: Path,
) -> None:
    async with local_master(tmp_path) as m:
        jid = m.submit(
            "counter",
            JOBS / "counter.py",
            [1, 1, 1],
            job_sla=JobSla(duration_type=DurationType.Transient),
            subscription_timeout_secs=1,
        )
        await m.until(
            lambda: m.job_state(jid).name in ("Completed", "Failed"), "the job killed", timeout=15
        )
        job = m.master.plane.job(jid)
        assert job.reason is CompletedReason.Killed and "no subscriber for 1s" in job.message

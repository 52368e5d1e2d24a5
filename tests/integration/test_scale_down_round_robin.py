"""A graceful scale-down of a stage fed round-robin, with real worker processes: a scalar
stage scaled 3 -> 1 while a steady stream of numbered events flows through it
(tests/integration/jobs/scalar_ids.py: stage 1 sends lossless, round-robin, to stage 2).

Stage 1 stops choosing the removed workers (indexes 1 and 2) for new events as soon as the
scheduling info drops their indexes; they serve what they already received and end Completed
by themselves. Every event id reaches a sink exactly once, and stage 1 drops nothing. The
transport alone (in-process, over TCP): a slot no longer declared gets no new event, and still
gets what was buffered for it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runtime.stage_output import StageOutputServer
from tests.eventually import eventually
from tests.integration.test_runtime_transport import connected, reader, stop
from tests.integration.workers import HOST, JOBS, local_master, read_sse, scalable_cluster

pytestmark = pytest.mark.timeout(120)

ARTIFACT = JOBS / "scalar_ids.py"


def dropped(metrics: str) -> float:
    """Stage 1's output drops, from the Prometheus text of its metrics port."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mantis_worker_events_dropped") and not line.startswith("#")
    )


async def test_round_robin_scale_down_3_to_1_delivers_every_event_once(tmp_path: Path) -> None:
    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        m.master.run(lambda p, now: p.create_cluster(scalable_cluster("scalar", ARTIFACT), now))
        jid = m.submit("scalar", ARTIFACT, [1, 3], {"eventsPerSecond": 10000})
        await m.until(lambda: len(m.started(jid, stage=2)) == 3, "3 stage-2 workers Started")
        workers = {w.index: w for w in m.started(jid, stage=2)}
        got: dict[int, list[Any]] = {i: [] for i in workers}
        readers = {  # each sink worker read directly: who served what
            i: asyncio.create_task(read_sse(http, f"http://{HOST}:{w.ports[0]}/", got[i]))
            for i, w in workers.items()
        }
        await m.until(lambda: all(len(ids) >= 2000 for ids in got.values()), "events at every sink")

        m.master.run(lambda p, now: p.scale_stage(jid, 2, 1, "test", "less", now))
        tasks = [m.processes[workers[i].worker_id] for i in (1, 2)]
        await m.until(
            lambda: (
                all(t.popen.poll() is not None for t in tasks)
                and all(readers[i].done() for i in (1, 2))
            ),
            "the removed workers exited and their streams ended",
            timeout=m.master.plane.config.scale_down_grace_secs - 1,
        )
        after = len(got[0])
        await m.until(lambda: len(got[0]) >= after + 5000, "worker 0 taking every event")
        source = m.started(jid, stage=1)[0]  # before worker 0 loses its reader (and demand)
        async with http.get(f"http://{HOST}:{source.ports[1]}/metrics") as resp:
            metrics = await resp.text()
        readers[0].cancel()

    for task in tasks:
        assert task.popen.returncode == 0 and not task.killed, m.logs()
        assert "worker_scaled_down" in task.log.read_text()
    ids = Counter(e["id"] for events in got.values() for e in events)
    assert [n for n, c in ids.items() if c > 1] == [], "an event served twice"
    # From the first id every sink had (all three subscribed) to the last one worker 0 served.
    lo = max(events[0]["id"] for events in got.values())
    hi = max(e["id"] for e in got[0])
    assert sorted(set(range(lo, hi + 1)) - set(ids)) == [], "events lost across the rescale"
    assert dropped(metrics) == 0, metrics


async def test_round_robin_skips_an_undeclared_slot_and_still_flushes_what_it_holds() -> None:
    slots = [f"stage_2_index_{i}" for i in range(3)]
    out = StageOutputServer(batch_size=512, flush_interval=60.0)  # held until flushed
    await out.start()
    out.set_downstream_slots(slots)
    inputs = await connected(out, *slots)
    got: list[list[Any]] = [[] for _ in slots]
    tasks = [reader(inp, into) for inp, into in zip(inputs, got, strict=True)]
    assert out.offer_many([{"i": i} for i in range(30)]) == 30  # 10 held for each slot

    out.set_downstream_slots(slots[:2])  # index 2 scaled down
    assert out.offer_many([{"i": i} for i in range(30, 130)]) == 100
    assert all(out.offer({"i": i}) for i in range(130, 140))
    out.flush()
    await eventually(lambda: sum(map(len, got)) == 140, "every event")
    assert [len(g) for g in got] == [65, 65, 10]
    assert sorted(e["i"] for e in got[2]) == list(range(20, 30)), "only what it held"
    assert out.stats().dropped_count == 0
    await stop(*tasks, *inputs, out)

"""Autoscaling end to end with real worker processes: a stage with an RPS policy grows under a
load ramp and shrinks when the load falls.

tests/integration/jobs/rate_file.py makes events at the rate a file says; its stage 2 (1..3
workers, RPS rule: up by 2 above 300 events/s per worker, down by 2 below 50, 2 of 3 samples,
2 s cooldown) is sampled every second (`mantis.job.worker.heartbeat.interval.secs`). The
workers' heartbeats carry the `WorkerMetrics` payload whose `RPS` the master's autoscaler reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.autoscaling import AUTOSCALER_USER, INITIAL_COOLDOWN_PARAM
from core.control import HEARTBEAT_INTERVAL_PARAM
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    MachineDefinition,
    ScalingStrategy,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
)
from core.worker import WorkerState
from tests.integration.workers import JOBS, LocalMaster, local_master

pytestmark = pytest.mark.timeout(90)

ARTIFACT = JOBS / "rate_file.py"
POLICY = StageScalingPolicy(
    stage=2,
    min=1,
    max=3,
    increment=2,
    decrement=2,
    cool_down_secs=2,
    strategies=(ScalingStrategy("RPS", 50.0, 300.0, 2, 3),),
)


def autoscaled_cluster() -> JobClusterDefinition:
    machine = MachineDefinition(0.1, 64)
    info = SchedulingInfo(
        (
            StageSchedulingInfo(1, machine),
            StageSchedulingInfo(1, machine, scalable=True, scaling_policy=POLICY),
        )
    )
    config = JobClusterConfig("job.py", "1", time.time(), info, job_jar_url=str(ARTIFACT))
    return JobClusterDefinition("autoscaled", (config,))


@contextlib.asynccontextmanager
async def ticking(m: LocalMaster, every: float = 0.2) -> AsyncIterator[None]:
    """The master's timers (heartbeat checks, autoscaling), as `mantis up` runs them."""

    async def tick() -> None:
        while True:
            m.master.tick()
            await asyncio.sleep(every)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()


async def test_an_rps_policy_scales_up_under_a_ramp_and_down_when_the_load_falls(
    tmp_path: Path,
) -> None:
    rate = tmp_path / "rate"
    rate.write_text("20")
    async with local_master(tmp_path) as m, ticking(m):
        m.master.run(lambda p, now: p.create_cluster(autoscaled_cluster(), now))
        parameters = {
            "rateFile": rate,
            HEARTBEAT_INTERVAL_PARAM: 1,
            INITIAL_COOLDOWN_PARAM: "false",
        }
        jid = m.submit("autoscaled", ARTIFACT, [1, 1], parameters)
        await m.until(lambda: len(m.started(jid)) == 2, "2 workers Started")
        job = m.master.plane.job(jid)

        for step in (150, 400, 750):  # the ramp: 750/s is 250/s per worker at 3 workers
            rate.write_text(str(step))
            await asyncio.sleep(0.5)
        await m.until(lambda: len(m.started(jid, stage=2)) == 3, "stage 2 grown to 3 workers")
        up = job.scalings[2][-1]
        assert (up.user, up.from_workers, up.to_workers) == (AUTOSCALER_USER, 1, 3), up
        assert "RPS" in up.reason, up.reason

        rate.write_text("30")  # 10/s per worker: below 50
        await m.until(lambda: len(job.stages[2]) == 1, "stage 2 shrunk to 1 worker", 30)
        down = job.scalings[2][-1]
        assert (down.user, down.from_workers, down.to_workers) == (AUTOSCALER_USER, 3, 1), down
        removed = [w for w in m.workers(jid) if w.stage == 2 and w.index > 0]
        tasks = [m.processes[w.worker_id] for w in removed]
        await m.until(
            lambda: all(t.popen.poll() is not None for t in tasks), "removed workers exited"
        )
        assert all(t.popen.returncode == 0 and not t.killed for t in tasks), m.logs()
        assert all(w.state is WorkerState.Completed for w in removed)
        assert len(job.scalings[2]) == 2, list(job.scalings[2])  # no flapping meanwhile

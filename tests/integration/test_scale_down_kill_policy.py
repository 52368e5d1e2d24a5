"""A kill's grace reaches the task through Mesos: the pymesos adapter sends it as KILL's
`kill_policy`, the mesoslite master passes it on in KILL_TASK, and the agent SIGKILLs a task
that ignores SIGTERM after that grace instead of its own `--kill-grace-period` (30 s here).

A worker a scale-down removed gets the scale-down grace this way (tests/unit/
test_scale_down_policy.py checks the effect and the call's shape)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesoslite.local import AgentSpec, LocalCluster
from tests.contracts.resource_manager import Recorder, launch_on
from tests.eventually import wait_until

pytest.importorskip("pymesos")

from adapters.mesos.resource_manager import PymesosResourceManager  # noqa: E402

pytestmark = pytest.mark.timeout(60)

AGENT_GRACE = "30"
TERMINAL = {"TASK_KILLED", "TASK_FINISHED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR"}


@pytest.fixture
def subscribed(tmp_path: Path) -> Iterator[tuple[PymesosResourceManager, Recorder]]:
    agent = AgentSpec(
        "cpus:2;mem:1024;disk:1000;ports:[31000-31099]",
        args=("--kill-grace-period", AGENT_GRACE),
    )
    local = LocalCluster(tmp_path, [agent], master_args=["--allocation-interval", "0.1"]).start()
    try:
        rm = PymesosResourceManager(local.address, framework_name="grace", user="test")
        events = Recorder(rm)
        rm.start(events)
        try:
            wait_until(lambda: bool(events.offer_batches), "an offer", 15)
            yield rm, events
        finally:
            rm.stop()
    finally:
        local.stop()


def test_a_task_ignoring_sigterm_is_sigkilled_after_the_kills_grace(
    subscribed: tuple[PymesosResourceManager, Recorder], tmp_path: Path
) -> None:
    rm, events = subscribed
    offer = events.offer_batches[0][0]
    trapped = tmp_path / "trapped"  # the shell (and its sleep) ignore SIGTERM from here on
    task_id = "grace-1-worker-0-1"
    command = f"trap '' TERM; touch {trapped}; sleep 60; :"
    rm.launch([launch_on(offer, task_id, cpus=0.1, mem=32, command=command)])
    wait_until(trapped.exists, "the task to ignore SIGTERM", 15)

    started = time.monotonic()
    rm.kill(task_id, offer.agent_id, grace_secs=0.5)
    wait_until(lambda: bool(TERMINAL & set(events.states(task_id))), "the task's end", 15)
    took = time.monotonic() - started

    end = [s for s in events.statuses if s.task_id == task_id][-1]
    assert (end.state, end.message) == ("TASK_KILLED", "Command terminated with signal SIGKILL")
    assert 0.5 <= took < float(AGENT_GRACE) / 3, took

"""A real pymesos framework for mesoslite tests, and the cluster settings those tests share.

The framework is pymesos' MesosSchedulerDriver with a small Scheduler: its callbacks run on
pymesos' IO thread, so they only record what happened under a Condition (and launch from
offers); the test thread waits on that Condition with deadlines. A callback must never raise
(pymesos would kill its thread and interrupt the main one), so each one records its exceptions
instead. Allocation uses the `drf` module unless MESOSLITE_TEST_ALLOCATOR names another one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import pytest

from mesoslite.local import AgentSpec
from mesoslite.resources import Resources

pymesos = pytest.importorskip("pymesos")

ALLOCATOR = os.environ.get("MESOSLITE_TEST_ALLOCATOR", "drf")
FAST = [
    "--allocator",
    ALLOCATOR,
    "--allocation-interval",
    "0.1",
    "--heartbeat-interval",
    "1",
    "--agent-ping-timeout",
    "0.5",
    "--max-agent-ping-timeouts",
    "3",
    "--agent-reregister-timeout",
    "3",
    "--status-update-retry-min",
    "1",
]
TERMINAL = {
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_DROPPED",
}

logging.getLogger("pymesos").setLevel(logging.CRITICAL)  # it logs a master restart as errors


def agents(
    n: int, resources: str = "cpus:4;mem:4096;disk:1000;ports:[31000-31999]"
) -> list[AgentSpec]:
    return [AgentSpec(resources, f"name:agent-{i};zone:z{i % 2}") for i in range(n)]


class RecordingScheduler(pymesos.Scheduler):  # type: ignore[misc,name-defined]
    """Launches queued commands on offers; records every callback for the test thread.

    An offer it has no use for is declined for 30 s: queue the tasks before the driver starts.
    """

    def __init__(
        self, cpus: float = 0.1, mem: float = 32, per_offer: int = 1000, relaunch_lost: bool = False
    ) -> None:
        self.cond = threading.Condition()
        self.queue: deque[tuple[str, str]] = deque()  # (task id, shell command)
        self.cpus, self.mem, self.per_offer = cpus, mem, per_offer
        self.relaunch_lost = relaunch_lost
        self.states: dict[str, list[str]] = defaultdict(list)
        self.statuses: list[dict[str, Any]] = []
        self.agent_of: dict[str, str] = {}
        self.launched_on: dict[str, str] = {}
        self.offers: list[dict[str, Any]] = []
        self.lost_agents: list[str] = []
        self.registrations: list[str] = []
        self.errors: list[str] = []
        self.framework_id: str | None = None
        self.driver: Any = None  # set by PymesosFramework

    # -- callbacks (pymesos' IO thread) --------------------------------------------------------

    def registered(self, driver: Any, framework_id: dict[str, str], master_info: Any) -> None:
        with self.cond:
            self.framework_id = framework_id["value"]
            self.registrations.append("registered")
            self.cond.notify_all()

    def reregistered(self, driver: Any, master_info: Any) -> None:
        with self.cond:
            self.registrations.append("reregistered")
            self.cond.notify_all()

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:  # noqa: N802
        try:
            for offer in offers:
                tasks = self._tasks_for(offer)
                if tasks:
                    driver.launchTasks(offer["id"], tasks, {"refuse_seconds": 0.5})
                else:
                    driver.declineOffer(offer["id"], {"refuse_seconds": 30})
        except Exception as e:
            self._error(e)

    def _tasks_for(self, offer: dict[str, Any]) -> list[dict[str, Any]]:
        free = Resources.from_mesos(offer["resources"])
        need = Resources.of(cpus=self.cpus, mem=self.mem)
        tasks: list[dict[str, Any]] = []
        with self.cond:
            self.offers.append(offer)
            while self.queue and len(tasks) < self.per_offer and free.contains(need):
                task_id, command = self.queue.popleft()
                free = free - need
                self.launched_on[task_id] = offer["agent_id"]["value"]
                tasks.append(
                    {
                        "name": task_id,
                        "task_id": {"value": task_id},
                        "agent_id": offer["agent_id"],
                        "resources": need.to_mesos(),
                        "command": {"value": command},
                    }
                )
            self.cond.notify_all()
        return tasks

    def statusUpdate(self, driver: Any, status: dict[str, Any]) -> None:  # noqa: N802
        try:
            task_id, state = status["task_id"]["value"], status["state"]
            relaunch = False
            with self.cond:
                self.statuses.append(status)
                self.states[task_id].append(state)
                if "agent_id" in status:
                    self.agent_of[task_id] = status["agent_id"]["value"]
                if state == "TASK_LOST" and self.relaunch_lost and "uuid" in status:
                    self.queue.append((task_id + "-again", "sleep 60"))
                    relaunch = True
                self.cond.notify_all()
            if relaunch:
                driver.reviveOffers()
        except Exception as e:
            self._error(e)

    def slaveLost(self, driver: Any, agent_id: dict[str, str]) -> None:  # noqa: N802
        with self.cond:
            self.lost_agents.append(agent_id["value"])
            self.cond.notify_all()

    def error(self, driver: Any, message: str) -> None:
        self._error(RuntimeError(message))

    def _error(self, e: BaseException) -> None:
        with self.cond:
            self.errors.append(repr(e))
            self.cond.notify_all()

    # -- the test thread -----------------------------------------------------------------------

    def submit(self, commands: dict[str, str]) -> None:
        with self.cond:
            self.queue.extend(commands.items())

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate() or bool(self.errors), timeout):
                counts: defaultdict[str, int] = defaultdict(int)
                for states in self.states.values():
                    counts[states[-1]] += 1
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; "
                    f"last states: {dict(counts)}; errors: {self.errors}"
                )
            assert not self.errors, self.errors

    def last(self, task_id: str) -> str | None:
        states = self.states.get(task_id)
        return states[-1] if states else None


class PymesosFramework:
    """A pymesos driver around a RecordingScheduler, stopped (TEARDOWN) at the end."""

    def __init__(
        self,
        address: str,
        scheduler: RecordingScheduler,
        principal: str | None = None,
        secret: str | None = None,
        **info: Any,
    ) -> None:
        self.scheduler = scheduler
        self.driver = scheduler.driver = pymesos.MesosSchedulerDriver(
            scheduler,
            {"user": "test", "name": "mesoslite-it", **info},
            address,
            principal=principal,
            secret=secret,
        )

    def __enter__(self) -> RecordingScheduler:
        self.driver.start()
        self.scheduler.wait(lambda: self.scheduler.framework_id is not None, 10, "SUBSCRIBED")
        return self.scheduler

    def __exit__(self, *exc: object) -> None:
        self.driver.stop()
        self.driver.join()

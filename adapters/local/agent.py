"""`LocalAgent`: the ResourceManager port as one agent on this machine (tests, benchmarks).

It behaves like a small Mesos with one agent: it offers its free CPUs, memory and a few free
loopback ports whenever no offer is outstanding and no decline filter holds (capped at `max_refuse`, so back-offs
are not stretched by Mesos' 5 s default), starts a launched task as a process group running
its command (the shell replaced by it, `exec`) with its environment, sends TASK_RUNNING, turns a kill into SIGTERM to the group,
and reports an exit as TASK_FINISHED, TASK_FAILED or TASK_KILLED. Statuses are delivered once
(nothing is lost in a process), so acknowledgements change nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.ports import ResourceManagerEvents, TaskLaunch, TaskStatus
from core.scheduling import Offer

HOST = "127.0.0.1"
AGENT_ID = "local"
OFFER_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class LocalTask:
    task_id: str
    popen: subprocess.Popen[bytes]
    log: Path
    cpus: float
    mem: float
    killed: bool = False
    reported: bool = False


class LocalAgent:
    """See the module docstring; `step()` makes offers and reports exits."""

    def __init__(
        self,
        work_dir: Path,
        cpus: float = 64.0,
        mem: float = 65536.0,
        env: dict[str, str] | None = None,
        max_refuse: float = 0.2,
        agent_id: str = AGENT_ID,
        host: str = HOST,
    ) -> None:
        """`agent_id` and `host` (a loopback address) tell several such agents apart."""
        self.agent_id, self.host = agent_id, host
        self.work_dir = work_dir
        self.cpus, self.mem = cpus, mem
        self.env = env or {}
        self.max_refuse = max_refuse
        self.tasks: dict[str, LocalTask] = {}
        self.events: ResourceManagerEvents | None = None
        self._refused_until = 0.0
        self._offers: set[str] = set()
        self._offer_seq = 0
        self._offered_at = 0.0

    # -- the port --------------------------------------------------------------------------------

    def start(self, events: ResourceManagerEvents) -> None:
        self.events = events
        events.registered("local-framework")

    def stop(self) -> None:
        self.events = None

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        for launch in tasks:
            a = launch.task.assignment
            if not set(a.offer_ids) <= self._offers:
                self._report(a.worker_id, "TASK_LOST", "REASON_INVALID_OFFERS", "stale offer")
                continue
            log = self.work_dir / f"{a.worker_id}.log"
            environ = {**os.environ, **dict(launch.environment), **self.env}
            with log.open("wb") as out:
                popen = subprocess.Popen(
                    f"exec {launch.command}",
                    shell=True,
                    env=environ,
                    cwd=self.work_dir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.tasks[a.worker_id] = LocalTask(a.worker_id, popen, log, a.cpus, a.mem)
            self._report(a.worker_id, "TASK_RUNNING", "", "")
        for launch in tasks:
            self._offers.difference_update(launch.task.assignment.offer_ids)

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None:
        self._offers.difference_update(offer_ids)
        self._refused_until = time.monotonic() + min(refuse_seconds, self.max_refuse)

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        """SIGTERM only (`grace_secs` unused): the agent SIGKILLs its tasks when it closes."""
        task = self.tasks.get(task_id)
        if task is None:
            self._report(
                task_id, "TASK_LOST", "REASON_RECONCILIATION", "Attempted to kill an unknown task"
            )
        elif task.popen.poll() is None:
            task.killed = True
            os.killpg(task.popen.pid, signal.SIGTERM)

    def revive(self) -> None:
        self._refused_until = 0.0

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        for task_id, _ in tasks:
            if task_id not in self.tasks:
                self._report(task_id, "TASK_LOST", "REASON_RECONCILIATION", "unknown task")
        if not tasks:
            for task in self.tasks.values():
                if task.popen.poll() is None:
                    self._report(task.task_id, "TASK_RUNNING", "REASON_RECONCILIATION", "")

    def acknowledge(self, status: TaskStatus) -> None:
        pass

    # -- the agent --------------------------------------------------------------------------------

    def step(self) -> None:
        """Report tasks that ended; offer what is free unless a filter holds."""
        for task in self.tasks.values():
            rc = task.popen.poll()
            if rc is None or task.reported:
                continue
            task.reported = True
            state = "TASK_KILLED" if task.killed else "TASK_FINISHED" if rc == 0 else "TASK_FAILED"
            self._report(task.task_id, state, "", f"exit status {rc}")
        now = time.monotonic()
        if self._offers and now - self._offered_at > OFFER_TIMEOUT:
            self._offers.clear()  # unanswered: rescinded, as Mesos' --offer_timeout does
        if self.events is None or self._offers or now < self._refused_until:
            return
        running = [t for t in self.tasks.values() if t.popen.poll() is None]
        cpus = self.cpus - sum(t.cpus for t in running)
        mem = self.mem - sum(t.mem for t in running)
        if cpus <= 0.01:
            return
        self._offer_seq += 1
        offer_id = f"{self.agent_id}-offer-{self._offer_seq}"
        self._offers = {offer_id}
        self._offered_at = now
        ports = tuple((p, p) for p in sorted({free_port() for _ in range(8)}))
        self.events.offers(
            [
                Offer(
                    offer_id,
                    self.agent_id,
                    self.host,
                    round(cpus, 3),
                    round(mem, 3),
                    100_000.0,
                    10_000.0,
                    ports,
                )
            ]
        )

    def close(self) -> None:
        """Kill every task's process group and wait for it."""
        for task in self.tasks.values():
            if task.popen.poll() is None:
                os.killpg(task.popen.pid, signal.SIGKILL)
        for task in self.tasks.values():
            task.popen.wait(timeout=10)

    def _report(self, task_id: str, state: str, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.task_status(TaskStatus(task_id, state, self.agent_id, message, reason))

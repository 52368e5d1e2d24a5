"""Simulated agents and resource manager: the ground truth of what runs where.

`SimResourceManager` implements the ResourceManager port on a virtual clock. It behaves like
a Mesos master for one framework: offers each live agent's free resources unless a decline
filter holds, launches tasks after a delay, re-sends status updates until acknowledged
(at-least-once, so lost updates come back and some arrive twice), reports tasks of a crashed
agent as TASK_LOST after a detection delay, and answers reconciliation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from core.ports import ResourceManagerEvents, TaskLaunch, TaskStatus
from core.scheduling import Offer

Schedule = Callable[[float, Callable[[], None]], None]  # (delay, action)

ALLOCATION_INTERVAL = 2.0
AGENT_LOST_AFTER = 75.0  # Mesos: 15 s x 5 missed pings
STATUS_RETRY = 10.0


@dataclass(slots=True)
class SimTask:
    task_id: str
    agent_id: str
    cpus: float
    mem: float
    ports: tuple[int, ...]
    state: str = "TASK_STAGING"
    hung: bool = False  # running but its worker no longer heartbeats


@dataclass(slots=True)
class SimAgent:
    agent_id: str
    hostname: str
    zone: str
    cpus: float
    mem: float
    ports: tuple[int, int]
    up: bool = True
    partitioned: bool = False
    tasks: dict[str, SimTask] = field(default_factory=dict)
    refused_until: float = 0.0
    pending_kills: list[str] = field(default_factory=list)  # kills sent while partitioned

    def free(self) -> tuple[float, float, list[int]]:
        used_ports = {p for t in self.tasks.values() for p in t.ports}
        free_ports = [p for p in range(self.ports[0], self.ports[1] + 1) if p not in used_ports]
        return (
            round(self.cpus - sum(t.cpus for t in self.tasks.values()), 3),
            round(self.mem - sum(t.mem for t in self.tasks.values()), 3),
            free_ports,
        )


def _ranges(ports: list[int]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for p in ports:
        if out and out[-1][1] == p - 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return tuple(out)


class SimResourceManager:
    """One framework's view of a simulated Mesos cluster; see the module docstring."""

    def __init__(
        self,
        rng: random.Random,
        schedule: Schedule,
        clock: Callable[[], float],
        agents: Sequence[SimAgent],
        status_loss: float,
        status_dup: float,
        on_running: Callable[[SimTask], None],
    ) -> None:
        self.rng = rng
        self.schedule = schedule
        self.clock = clock
        self.agents = {a.agent_id: a for a in agents}
        self.status_loss = status_loss
        self.status_dup = status_dup
        self.on_running = on_running
        self.events: ResourceManagerEvents | None = None
        self.unacked: dict[str, TaskStatus] = {}  # uuid -> update
        self._offer_seq = 0
        self._update_seq = 0
        self._outstanding: dict[str, str] = {}  # offer id -> agent id
        self.last_offers: list[Offer] = []
        self._started = False
        self.master_reachable = True
        self.changed = False  # tasks were added or removed since the last check

    # ---------------------------------------------------------------- the port

    def start(self, events: ResourceManagerEvents) -> None:
        """Subscribe (again, when a recovered master comes back: the cycles keep running)."""
        self.events = events
        events.registered("sim-framework")
        if not self._started:
            self._started = True
            self.schedule(0.0, self._allocate)
            self.schedule(STATUS_RETRY, self._retry)

    def stop(self) -> None:
        self.events = None

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        for t in tasks:
            a = t.task.assignment
            agent = self.agents.get(a.agent_id)
            if (
                agent is None
                or not agent.up
                or any(o not in self._outstanding for o in a.offer_ids)
            ):
                self._status(a.worker_id, a.agent_id, "TASK_LOST", "REASON_INVALID_OFFERS")
                continue
            task = SimTask(a.worker_id, a.agent_id, a.cpus, a.mem, a.ports)
            free_cpus, free_mem, free_ports = agent.free()
            if (
                task.cpus > free_cpus + 1e-9
                or task.mem > free_mem + 1e-9
                or not set(a.ports) <= set(free_ports)
            ):
                self._status(a.worker_id, a.agent_id, "TASK_ERROR", "REASON_TASK_INVALID")
                continue
            agent.tasks[task.task_id] = task
            self.changed = True
            self.schedule(self.rng.uniform(0.2, 3.0), partial(self._run, task))
        for t in tasks:
            for offer_id in t.task.assignment.offer_ids:
                self._outstanding.pop(offer_id, None)

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None:
        for offer_id in offer_ids:
            agent_id = self._outstanding.pop(offer_id, None)
            if agent_id is not None:
                self.agents[agent_id].refused_until = self.clock() + refuse_seconds

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        for agent in self.agents.values():
            task = agent.tasks.get(task_id)
            if task is None or not agent.up:
                continue
            if agent.partitioned:
                agent.pending_kills.append(task_id)
            else:
                self.schedule(
                    self.rng.uniform(0.1, 3.0), partial(self._end, agent, task, "TASK_KILLED")
                )
            return

    def revive(self) -> None:
        for agent in self.agents.values():
            agent.refused_until = 0.0

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        known = {tid for a in self.agents.values() if a.up for tid in a.tasks}
        for task_id, agent_id in tasks:
            if task_id not in known:
                self._status(task_id, agent_id, "TASK_LOST", "REASON_RECONCILIATION")
        if not tasks:
            for agent in self.agents.values():
                for task in agent.tasks.values():
                    if agent.up:
                        self._status(
                            task.task_id, agent.agent_id, task.state, "REASON_RECONCILIATION"
                        )

    def acknowledge(self, status: TaskStatus) -> None:
        self.unacked.pop(status.uuid, None)

    # ---------------------------------------------------------------- the cluster

    def _allocate(self) -> None:
        """Mesos' allocation cycle: offer free resources every interval."""
        if self.events is None:
            return
        if self.master_reachable:
            offers = self.make_offers()
            if offers:
                self.events.offers(offers)
        self.schedule(ALLOCATION_INTERVAL, self._allocate)

    def _retry(self) -> None:
        if self.events is None:
            return
        self.redeliver()
        self.schedule(STATUS_RETRY, self._retry)

    def make_offers(self, min_cpus: float = 0.01) -> list[Offer]:
        """Offer every live agent's free resources, one offer per agent, unless filtered."""
        now = self.clock()
        self._outstanding.clear()  # unanswered offers expire at the next round
        offers = []
        for agent in self.agents.values():
            if not agent.up or agent.partitioned or agent.refused_until > now:
                continue
            cpus, mem, ports = agent.free()
            if cpus < min_cpus:
                continue
            self._offer_seq += 1
            offer_id = f"offer-{self._offer_seq}"
            self._outstanding[offer_id] = agent.agent_id
            offers.append(
                Offer(
                    offer_id,
                    agent.agent_id,
                    agent.hostname,
                    cpus,
                    mem,
                    10_000.0,
                    1_000.0,
                    _ranges(ports),
                    (("zone", agent.zone),),
                )
            )
        self.last_offers = offers
        return offers

    def crash_agent(self, agent: SimAgent) -> None:
        """The agent dies with its tasks; the master notices after the ping timeout."""
        agent.up = False
        lost = list(agent.tasks.values())
        agent.tasks.clear()
        for task in lost:
            self.schedule(
                AGENT_LOST_AFTER,
                partial(
                    self._status, task.task_id, task.agent_id, "TASK_LOST", "REASON_AGENT_REMOVED"
                ),
            )

    def fail_task(self, task_id: str) -> None:
        for agent in self.agents.values():
            task = agent.tasks.get(task_id)
            if task is not None and agent.up:
                self._end(agent, task, "TASK_FAILED")

    def heal(self, agent: SimAgent) -> None:
        """The partition ends: kills sent meanwhile arrive, held updates are sent again."""
        agent.partitioned = False
        for task_id in agent.pending_kills:
            self.kill(task_id, agent.agent_id)
        agent.pending_kills.clear()
        self.redeliver()

    def redeliver(self) -> None:
        """Status updates not yet acknowledged are sent again (Mesos' at-least-once)."""
        for status in list(self.unacked.values()):
            self._deliver(status)

    def _run(self, task: SimTask) -> None:
        agent = self.agents[task.agent_id]
        if agent.tasks.get(task.task_id) is task:
            task.state = "TASK_RUNNING"
            self._status(task.task_id, task.agent_id, "TASK_RUNNING", "")
            self.on_running(task)

    def _end(self, agent: SimAgent, task: SimTask, state: str) -> None:
        if agent.tasks.pop(task.task_id, None) is not None:
            self.changed = True
            self._status(task.task_id, agent.agent_id, state, "")

    def _status(self, task_id: str, agent_id: str, state: str, reason: str) -> None:
        self._update_seq += 1
        status = TaskStatus(
            task_id, state, agent_id, reason.lower(), reason, f"u{self._update_seq}"
        )
        self.unacked[status.uuid] = status
        self._deliver(status)

    def _deliver(self, status: TaskStatus) -> None:
        agent = self.agents.get(status.agent_id)
        if (
            self.events is None
            or not self.master_reachable
            or (agent is not None and agent.partitioned)
        ):
            return
        if self.rng.random() < self.status_loss:
            return
        copies = 2 if self.rng.random() < self.status_dup else 1
        for _ in range(copies):
            self.schedule(self.rng.uniform(0.0, 0.5), partial(self._arrive, status))

    def _arrive(self, status: TaskStatus) -> None:
        if self.events is not None and self.master_reachable:
            self.events.task_status(status)

"""The master's in-memory model (frameworks, agents, tasks, offers) and its `/master/state` JSON.

Nothing here is persisted: a restarted master rebuilds agents and their tasks from the agents'
re-registrations, and frameworks from their re-subscriptions (see mesoslite.master). The
classes are named *Record so as not to be taken for core's Offer or mesoslite.agent's MesosliteAgent.
The JSON follows Mesos' `/state` endpoint: `slaves`, `frameworks` with `tasks` and
`executors`, resources as
`{"cpus": 4.0, "mem": 8192.0, "disk": 0.0, "gpus": 0.0, "ports": "[31000-32000]"}`.

A framework's custom executors are kept as Mesos' master keeps them (`Framework::executors` in
src/master/master.hpp): per agent, from the accepted launch that starts one until the agent
reports it exited or the agent or the framework is removed. Command tasks have none.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mesoslite.multirole import framework_roles
from mesoslite.protocol import (
    MESOS_VERSION,
    PARTITION_AWARE,
    STAGING,
    TERMINAL,
    InvalidCall,
    framework_role,
    has_capability,
    id_of,
)
from mesoslite.resources import Attributes, Resources
from mesoslite.streams import EventStream

COMPLETED_TASKS_KEPT = 1000  # per framework, like Mesos' --max_completed_tasks_per_framework
COMPLETED_FRAMEWORKS_KEPT = 50
STATUS_HISTORY_KEPT = 10


@dataclass(eq=False)
class TaskRecord:
    """A task as the master knows it: where it runs, its latest state."""

    framework_id: str
    agent_id: str
    info: dict[str, Any]  # the TaskInfo as launched (or as the agent reported it)
    resources: Resources
    state: str = STAGING
    statuses: list[dict[str, Any]] = field(default_factory=list)  # recent {state, timestamp}
    kill_requested: bool = False  # to be killed when its agent is reachable again
    kill_policy: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return str(self.info["task_id"]["value"])

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(eq=False)
class Update:
    """A reliable status update (it has a uuid) waiting for the framework's acknowledgement."""

    status: dict[str, Any]
    from_agent: bool  # the acknowledgement is forwarded to the agent that sent it
    attempts: int = 0
    next_send: float = 0.0  # monotonic; meaningful once attempts > 0

    @property
    def uuid(self) -> str:
        return str(self.status["uuid"])


@dataclass(eq=False)
class OfferRecord:
    """Resources of one agent offered to one framework, until used, declined or rescinded."""

    id: str
    framework_id: str
    agent_id: str
    resources: Resources
    created: float  # monotonic
    role: str = "*"  # the role it is allocated to (allocation_info.role)


@dataclass(eq=False)
class FrameworkRecord:
    """A subscribed (or recovered, or disconnected) framework and everything it holds."""

    id: str
    info: dict[str, Any]  # FrameworkInfo, with `id` set
    registered_time: float  # wall clock
    stream: EventStream | None = None
    recovered: bool = False  # known only from agents' re-registration, not subscribed yet
    suppressed_roles: set[str] = field(default_factory=set)  # SUPPRESSed, not revived since
    failover_deadline: float | None = None  # monotonic; set while disconnected
    reregistered_time: float | None = None
    unregistered_time: float | None = None
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    unreachable_tasks: dict[str, TaskRecord] = field(default_factory=dict)
    completed_tasks: deque[TaskRecord] = field(
        default_factory=lambda: deque(maxlen=COMPLETED_TASKS_KEPT)
    )
    offers: dict[str, OfferRecord] = field(default_factory=dict)
    inverse_offers: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> InverseOffer
    updates: dict[str, deque[Update]] = field(default_factory=dict)  # per task, FIFO
    # agent id -> executor id -> ExecutorInfo (with `framework_id`), while it runs there
    executors: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.stream is not None and not self.stream.closed

    @property
    def role(self) -> str:
        return framework_role(self.info)

    @property
    def roles(self) -> tuple[str, ...]:
        """Every role it is offered for (MULTI_ROLE: its `roles`; else its one `role`)."""
        return framework_roles(self.info)

    @property
    def suppressed(self) -> bool:
        """Suppressed in all its roles: it is offered nothing."""
        return set(self.roles) <= self.suppressed_roles

    @property
    def partition_aware(self) -> bool:
        return has_capability(self.info, PARTITION_AWARE)

    @property
    def failover_timeout(self) -> float:
        try:
            return max(0.0, float(self.info.get("failover_timeout", 0.0)))
        except (TypeError, ValueError):
            return 0.0

    def send(self, event: dict[str, Any]) -> None:
        if self.stream is not None:
            self.stream.send(event)

    def pending_updates(self) -> int:
        return sum(len(q) for q in self.updates.values())

    def add_executor(self, agent_id: str, info: dict[str, Any]) -> None:
        """An executor a launch starts (kept once: later tasks run in the same one)."""
        eid = str(info["executor_id"]["value"])
        running = self.executors.setdefault(agent_id, {})
        if eid not in running:
            running[eid] = {**info, "framework_id": {"value": self.id}}

    def remove_executor(self, agent_id: str, executor_id: str) -> None:
        running = self.executors.get(agent_id, {})
        running.pop(executor_id, None)
        if not running:
            self.executors.pop(agent_id, None)

    def set_executors(self, agent_id: str, infos: list[dict[str, Any]]) -> None:
        """What a re-registering agent says it runs for this framework replaces what the master
        knew there (Master::reconcileKnownSlave in src/master/master.cpp)."""
        self.executors.pop(agent_id, None)
        for info in infos:
            self.add_executor(agent_id, info)

    def executors_on(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (agent id, ExecutorInfo) it runs."""
        return [(aid, info) for aid, running in self.executors.items() for info in running.values()]


@dataclass(eq=False)
class AgentRecord:
    """A registered agent: its resources, its tasks, its event stream."""

    id: str
    hostname: str
    port: int
    total: Resources
    attributes: Attributes
    registered_time: float
    stream: EventStream | None = None
    reregistered_time: float | None = None
    tasks: dict[tuple[str, str], TaskRecord] = field(default_factory=dict)  # (framework, task) ids
    used: Resources = field(default_factory=Resources)
    offered: Resources = field(default_factory=Resources)
    ping_seq: int = 0
    pong_seq: int = 0
    missed_pings: int = 0
    in_allocator: bool = False
    deactivated: bool = False  # by the operator (DEACTIVATE_AGENT, DRAIN_AGENT): no offers
    drain: dict[str, Any] | None = None  # DrainInfo {state, config} while draining or drained

    @property
    def connected(self) -> bool:
        return self.stream is not None and not self.stream.closed

    @property
    def pid(self) -> str:
        return f"slave({self.id})@{self.hostname}:{self.port}"

    def recompute_used(self) -> None:
        used = Resources()
        for task in self.tasks.values():
            if not task.terminal:
                used = used + task.resources
        self.used = used

    def free(self) -> Resources:
        """What is neither used by tasks nor offered."""
        return self.total - self.used - self.offered


@dataclass(eq=False)
class ReportedExecutors:
    """The executors a registering agent runs for one framework, and that framework's info
    (Mesos' ReregisterSlaveMessage carries `executor_infos` and `frameworks` likewise)."""

    framework_info: dict[str, Any]
    infos: list[dict[str, Any]] = field(default_factory=list)


def reported_executors(call: dict[str, Any]) -> dict[str, ReportedExecutors] | None:
    """An agent REGISTER's `executors` ([{framework_info, executor_info}]) by framework id;
    None if it sends none."""
    listed = (call.get("register") or {}).get("executors")
    if listed is None:
        return None
    if not isinstance(listed, list):
        raise InvalidCall("'register.executors' must be a list")
    out: dict[str, ReportedExecutors] = {}
    for i, entry in enumerate(listed):
        where = f"register.executors[{i}]"
        finfo = entry.get("framework_info") if isinstance(entry, dict) else None
        info = entry.get("executor_info") if isinstance(entry, dict) else None
        if not isinstance(finfo, dict) or not isinstance(info, dict):
            raise InvalidCall(f"'{where}' must carry 'framework_info' and 'executor_info' objects")
        fid = id_of(finfo, "id", f"{where}.framework_info")
        id_of(info, "executor_id", f"{where}.executor_info")
        out.setdefault(fid, ReportedExecutors(finfo)).infos.append(info)
    return out


def resources_json(r: Resources) -> dict[str, Any]:
    r = r.flatten()  # reserved or not, as Mesos' `resources` (`reserved_resources` by role)
    out: dict[str, Any] = {"cpus": r.cpus, "mem": r.mem, "disk": r.disk, "gpus": r.gpus}
    if r.ports:
        out["ports"] = "[" + ", ".join(f"{b}-{e}" for b, e in r.ports) + "]"
    for name, amount in r.custom:
        out[name] = amount / 1000
    return out


def task_json(task: TaskRecord) -> dict[str, Any]:
    info = task.info
    out: dict[str, Any] = {
        "id": task.id,
        "name": info.get("name", ""),
        "framework_id": task.framework_id,
        "executor_id": executor_id(info),
        "slave_id": task.agent_id,
        "state": task.state,
        "resources": resources_json(task.resources),
        "statuses": list(task.statuses),
    }
    for key in ("labels", "discovery"):
        if key in info:
            out[key] = info[key]
    return out


def executor_id(tinfo: dict[str, Any]) -> str:
    """The id of the task's custom executor; "" for a command task (Mesos' Task.executor_id)."""
    executor = tinfo.get("executor")
    if not isinstance(executor, dict):
        return ""
    return str((executor.get("executor_id") or {}).get("value", ""))


def command_json(command: dict[str, Any]) -> dict[str, Any]:
    """A CommandInfo as Mesos' master renders it (json(CommandInfo) in src/common/http.cpp)."""
    out: dict[str, Any] = {}
    for key in ("shell", "value"):
        if key in command:
            out[key] = command[key]
    out["argv"] = list(command.get("arguments") or [])
    if "environment" in command:
        out["environment"] = command["environment"]
    out["uris"] = [
        {"value": u.get("value", ""), "executable": bool(u.get("executable", False))}
        for u in command.get("uris") or []
        if isinstance(u, dict)
    ]
    return out


def executor_json(agent_id: str, info: dict[str, Any]) -> dict[str, Any]:
    """An ExecutorInfo in a framework's `executors` of `/master/state` (json(ExecutorInfo) in
    Mesos' src/common/http.cpp, plus `slave_id` as src/master/readonly_handler.cpp adds it)."""
    resources = info.get("resources") or []
    out: dict[str, Any] = {
        "executor_id": str(info["executor_id"]["value"]),
        "name": info.get("name", ""),
        "framework_id": str(info["framework_id"]["value"]),
        "command": command_json(info.get("command") or {}),
        "resources": resources_json(Resources.from_mesos(resources)),
    }
    if resources:  # one role per executor (MESOS-6636)
        out["role"] = (resources[0].get("allocation_info") or {}).get("role", "")
    if "labels" in info:
        out["labels"] = (info["labels"] or {}).get("labels", [])
    if "type" in info:
        out["type"] = info["type"]
    out["slave_id"] = agent_id
    return out


def offer_json(offer: OfferRecord) -> dict[str, Any]:
    return {
        "id": offer.id,
        "framework_id": offer.framework_id,
        "slave_id": offer.agent_id,
        "resources": resources_json(offer.resources),
    }


def framework_json(fw: FrameworkRecord, now_wall: float) -> dict[str, Any]:
    info = fw.info
    used = Resources()
    for task in fw.tasks.values():
        if not task.terminal:
            used = used + task.resources
    offered = Resources()
    for offer in fw.offers.values():
        offered = offered + offer.resources
    out: dict[str, Any] = {
        "id": fw.id,
        "name": info.get("name", ""),
        "user": info.get("user", ""),
        "hostname": info.get("hostname", ""),
        "principal": info.get("principal", ""),
        "role": fw.role,
        "roles": info.get("roles") or [fw.role],
        "active": fw.connected and not fw.suppressed,
        "connected": fw.connected,
        "recovered": fw.recovered,
        "suppressed": fw.suppressed,
        "failover_timeout": fw.failover_timeout,
        "checkpoint": bool(info.get("checkpoint", False)),
        "capabilities": [
            c.get("type") for c in info.get("capabilities") or [] if isinstance(c, dict)
        ],
        "registered_time": fw.registered_time,
        "webui_url": info.get("webui_url", ""),
        "executors": [executor_json(aid, e) for aid, e in fw.executors_on()],
        "used_resources": resources_json(used),
        "offered_resources": resources_json(offered),
        "tasks": [task_json(t) for t in fw.tasks.values()],
        "unreachable_tasks": [task_json(t) for t in fw.unreachable_tasks.values()],
        "completed_tasks": [task_json(t) for t in fw.completed_tasks],
        "offers": [offer_json(o) for o in fw.offers.values()],
        "pending_status_updates": fw.pending_updates(),
    }
    if fw.reregistered_time is not None:
        out["reregistered_time"] = fw.reregistered_time
    if fw.unregistered_time is not None:
        out["unregistered_time"] = fw.unregistered_time
    return out


def agent_json(agent: AgentRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": agent.id,
        "hostname": agent.hostname,
        "port": agent.port,
        "pid": agent.pid,
        "active": agent.connected and not agent.deactivated,
        "deactivated": agent.deactivated,
        "version": MESOS_VERSION,
        "capabilities": [],
        "registered_time": agent.registered_time,
        "resources": resources_json(agent.total),
        "used_resources": resources_json(agent.used),
        "offered_resources": resources_json(agent.offered),
        "unreserved_resources": resources_json(agent.total.unreserved()),
        "reserved_resources": {role: resources_json(pool) for role, pool in agent.total.reserved},
        "attributes": dict(agent.attributes),
        "task_count": sum(1 for t in agent.tasks.values() if not t.terminal),
        "missed_pings": agent.missed_pings,
    }
    if agent.reregistered_time is not None:
        out["reregistered_time"] = agent.reregistered_time
    if agent.drain is not None:
        out["drain_info"] = agent.drain
    return out

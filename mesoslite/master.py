"""The mesoslite master: Mesos' v1 scheduler HTTP API over agents that run tasks as processes.

Frameworks (pymesos' `MesosSchedulerDriver`, or any v1 HTTP client) talk to it exactly as to a
Mesos master (reference/mesos-fenzo.md B):

- `POST /api/v1/scheduler` (also `/master/api/v1/scheduler`), JSON only. SUBSCRIBE answers
  200 with a chunked RecordIO event stream and a `Mesos-Stream-Id` header; every other call
  answers 202 (UPDATE_FRAMEWORK and RECONCILE_OPERATIONS 200) and must carry that header.
  Calls: SUBSCRIBE, TEARDOWN, ACCEPT (LAUNCH), DECLINE, REVIVE, SUPPRESS, KILL, SHUTDOWN,
  ACKNOWLEDGE, RECONCILE (explicit and implicit), MESSAGE, REQUEST (ignored, as Mesos'
  allocator does), UPDATE_FRAMEWORK; inverse-offer and operation calls are accepted no-ops.
  Events: SUBSCRIBED, OFFERS, RESCIND, UPDATE, MESSAGE, FAILURE, ERROR, HEARTBEAT, each with its
  payload in a sub-message named after its type (`{"type":"OFFERS","offers":{"offers":[...]}}`).
- Errors use Mesos' status codes and messages (src/master/http.cpp): 405 for a method other
  than POST; 400 "Expecting 'Content-Type' to be present"; 415 for another content type
  (protobuf included: mesoslite speaks JSON only); 400 for a body that is not a valid Call;
  406 when `Accept` allows no JSON; 400 for a stream id on SUBSCRIBE or a missing or wrong one
  later, and for an unknown framework ("Framework cannot be found"); 403 "Framework is not
  subscribed" while it is disconnected. Bodies are plain text.
- Status updates with a `uuid` are delivered at least once: per task, in order, the head one is
  re-sent with exponential back-off (`--status-update-retry-min` doubling up to `-max`) until
  the framework ACKNOWLEDGEs it; the acknowledgement is then forwarded to the agent.
- Failover: a disconnected framework keeps its tasks for `failover_timeout` seconds
  (FrameworkInfo; pymesos sends 100 by default); re-subscribing with its id in time gets the
  un-acknowledged updates again and offers resume; past it, its tasks are killed.
- Allocation: the allocation module (`--allocator`, see mesoslite.allocator) runs every
  `--allocation-interval` seconds and right after a subscribe, a revive or an agent joining;
  each Grant becomes one Offer. Declined and unused resources go back with the refuse filter.
- `GET /master/state` (also `/state`): Mesos-like JSON. `GET /master/redirect` answers 307 to
  this master (there is only ever one). `GET /version` and `/health`.

Agents connect to `POST /mesoslite/api/v1/agent`; the protocol is described in
mesoslite.agent. A lost agent (its stream closed, or `--max-agent-ping-timeouts` pings in a
row unanswered within `--agent-ping-timeout` each) has its offers rescinded; once the pings
run out it is removed: frameworks get TASK_LOST (TASK_UNREACHABLE if PARTITION_AWARE) for its
tasks, with REASON_AGENT_REMOVED, and a FAILURE event.

Nothing is persisted. A restarted master learns its agents and their tasks again when they
re-register (they keep their ids and report every task with its latest state and its
un-acknowledged updates); frameworks re-subscribe with their ids and reconcile. For
`--agent-reregister-timeout` seconds after start, explicit reconciliation of a task the master
does not know yet is answered only when that window closes (Mesos waits for the agents it
recovered from its registry likewise), so a framework does not see TASK_LOST for a task whose
agent simply has not re-registered yet.

Resources are accounted, never isolated: a task may use more CPU or memory than it asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import signal
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import orjson
import structlog
from aiohttp import web

from common import logs
from mesoslite.allocator import Allocator, load_allocator
from mesoslite.protocol import (
    DROPPED,
    ERROR,
    GONE,
    KILLED,
    LOST,
    MESOS_VERSION,
    OPERATION_TYPES,
    REASON_AGENT_REMOVED,
    REASON_AGENT_RESTARTED,
    REASON_FRAMEWORK_REMOVED,
    REASON_INVALID_OFFERS,
    REASON_RECONCILIATION,
    REASON_TASK_INVALID,
    SCHEDULER_CALLS,
    SOURCE_MASTER,
    STAGING,
    TASK_STATES,
    TERMINAL,
    UNKNOWN,
    UNREACHABLE,
    InvalidCall,
    framework_role,
    id_of,
    optional_id,
    refuse_seconds,
    sub_message,
    task_status,
)
from mesoslite.resources import (
    SCALARS,
    ResourceError,
    Resources,
    attributes_from_mesos,
    attributes_to_mesos,
)
from mesoslite.state import (
    COMPLETED_FRAMEWORKS_KEPT,
    STATUS_HISTORY_KEPT,
    Agent,
    Framework,
    Offer,
    Task,
    Update,
    agent_json,
    framework_json,
)
from mesoslite.streams import EventStream

log = structlog.get_logger()

SCHEDULER_PATHS = ("/api/v1/scheduler", "/master/api/v1/scheduler")
AGENT_PATH = "/mesoslite/api/v1/agent"
AGENT_SESSION_HEADER = "Mesoslite-Agent-Session"
STREAM_ID_HEADER = "Mesos-Stream-Id"
_IMMUTABLE_FRAMEWORK_FIELDS = ("user", "principal", "checkpoint")  # ignored on re-subscribe
TIMER_TICK = 0.05  # seconds between checks of deadlines (failover, retries, offer timeouts)

# Allocation modules that ship with mesoslite, for a checkout that is not pip-installed (then
# the `mesoslite.allocators` entry points do not exist). Installed, the entry points win.
BUILTIN_ALLOCATORS = {
    "drf": "mesoslite.allocator.drf:HierarchicalDRF",
    "priority": "mesoslite.allocator.priority:StrictPriority",
}


@dataclass(frozen=True, slots=True)
class MasterConfig:
    host: str = "127.0.0.1"
    port: int = 5050
    hostname: str | None = None  # advertised; defaults to `host`
    allocator: str = "drf"
    allocation_interval: float = 1.0
    heartbeat_interval: float = 15.0
    agent_ping_timeout: float = 15.0
    max_agent_ping_timeouts: int = 5
    agent_reregister_timeout: float = 10.0
    status_update_retry_min: float = 10.0
    status_update_retry_max: float = 600.0
    offer_timeout: float | None = None
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def advertised_host(self) -> str:
        return self.hostname or self.host


def resolve_allocator(name: str) -> Allocator:
    """`--allocator`: an entry-point name (`drf`, `priority`) or `package.module:Factory`."""
    if ":" not in name:
        try:
            return load_allocator(name)
        except ValueError:
            if name not in BUILTIN_ALLOCATORS:
                raise
            name = BUILTIN_ALLOCATORS[name]
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load allocator {name!r}: {e}") from None
    allocator: Allocator = factory()
    return allocator


def _ipv4_as_uint32(host: str) -> int:
    """MasterInfo.ip: the IPv4 address packed in network order, read as a host uint32."""
    try:
        packed = ipaddress.IPv4Address(host).packed
    except ValueError:
        packed = ipaddress.IPv4Address("127.0.0.1").packed
    value: int = struct.unpack("=I", packed)[0]
    return value


class Master:
    """All master state and behaviour; HTTP handlers call into it, it never awaits mid-change."""

    def __init__(
        self, config: MasterConfig, allocator: Allocator,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.config = config
        self.allocator = allocator
        self.clock = clock
        self.id = str(uuid.uuid4())
        self.port = config.port
        self.start_time = time.time()
        self.started = clock()
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: deque[Framework] = deque(maxlen=COMPLETED_FRAMEWORKS_KEPT)
        self.removed_framework_ids: set[str] = set()
        self.agents: dict[str, Agent] = {}
        self.removed_agents: dict[str, set[tuple[str, str]]] = {}  # id -> tasks reported LOST
        self.offers: dict[str, Offer] = {}
        self.deferred_reconciles: list[tuple[str, str]] = []  # (framework, task) ids
        self._framework_seq = itertools.count()
        self._agent_seq = itertools.count(1)
        self._offer_seq = itertools.count(1)
        self._allocate_soon = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        for role, weight in sorted(config.weights.items()):
            allocator.set_weight(role, weight)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._allocation_loop(), name="allocation"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeats"),
            asyncio.create_task(self._ping_loop(), name="agent-pings"),
            asyncio.create_task(self._timer_loop(), name="timers"),
        ]

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        for fw in self.frameworks.values():
            if fw.stream is not None:
                fw.stream.close()
        for agent in self.agents.values():
            if agent.stream is not None:
                agent.stream.close()

    @property
    def pid(self) -> str:
        return f"master@{self.config.advertised_host}:{self.port}"

    def master_info(self) -> dict[str, Any]:
        host = self.config.advertised_host
        return {
            "id": self.id, "ip": _ipv4_as_uint32(self.config.host), "port": self.port,
            "pid": self.pid, "hostname": host, "version": MESOS_VERSION,
            "address": {"hostname": host, "ip": self.config.host, "port": self.port},
        }  # fmt: skip

    # -- allocator calls: a failing allocation module is logged, never a failed HTTP call -------

    def _alloc(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.allocator, method)(*args)
        except Exception:
            log.exception("allocator_call_failed", method=method, args=[str(a) for a in args])
            return None

    def _alloc_ok(self, method: str, *args: Any) -> bool:
        try:
            getattr(self.allocator, method)(*args)
        except Exception:
            log.exception("allocator_call_failed", method=method, args=[str(a) for a in args])
            return False
        return True

    def _recover(self, fid: str, aid: str, r: Resources, refuse: float | None = None) -> None:
        if not r.is_empty():
            self._alloc("recover", fid, aid, r, self.clock(), refuse)

    def trigger_allocation(self) -> None:
        self._allocate_soon.set()

    # -- frameworks: subscribe, disconnect, remove ----------------------------------------------

    def subscribe(self, call: dict[str, Any]) -> tuple[Framework | None, EventStream]:
        """SUBSCRIBE: validate (InvalidCall), then a stream that starts with SUBSCRIBED or ERROR."""
        sub = sub_message(call, "subscribe")
        info = sub.get("framework_info")
        if not isinstance(info, dict):
            raise InvalidCall("Expecting 'subscribe.framework_info' to be present")
        for required in ("user", "name"):
            if not isinstance(info.get(required), str):
                raise InvalidCall(f"Expecting 'subscribe.framework_info.{required}' to be a string")
        timeout = info.get("failover_timeout", 0.0)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout >= 0:
            raise InvalidCall("'subscribe.framework_info.failover_timeout' must be a number >= 0")
        info_id = optional_id(info, "id", "subscribe.framework_info")
        call_id = optional_id(call, "framework_id")
        if info_id != call_id:
            raise InvalidCall("'framework_id' differs from 'subscribe.framework_info.id'")
        suppressed_roles = sub.get("suppressed_roles") or []
        if not isinstance(suppressed_roles, list):
            raise InvalidCall("'subscribe.suppressed_roles' must be a list of roles")

        stream = EventStream()
        now_wall = time.time()
        if info_id is not None and info_id in self.removed_framework_ids:
            stream.send({"type": "ERROR", "error": {"message": "Framework has been removed"}})
            stream.close()
            return None, stream
        info = dict(info)
        if info_id is None:
            fid = f"{self.id}-{next(self._framework_seq):04d}"
            info["id"] = {"value": fid}
            fw = self.frameworks[fid] = Framework(fid, info, now_wall)
            log.info("framework_subscribed", framework_id=fid, name=info["name"])
        else:
            fid = info_id
            fw_or_none = self.frameworks.get(fid)
            if fw_or_none is None:  # known to a previous master, or to no one: adopt the id
                fw = self.frameworks[fid] = Framework(fid, info, now_wall)
            else:
                fw = fw_or_none
                if fw.connected and fw.stream is not None:
                    fw.stream.send({"type": "ERROR", "error": {"message": "Framework failed over"}})
                    fw.stream.close()
                # Offers made to the previous subscription are void (Mesos removes them too).
                self._rescind_offers(fw.offers.values(), notify=False)
                keep: dict[str, Any] = {k: fw.info[k] for k in _IMMUTABLE_FRAMEWORK_FIELDS if k in fw.info}
                fw.info = {**info, **keep}
                fw.reregistered_time = now_wall
            fw.recovered = False
            fw.failover_deadline = None
            log.info("framework_resubscribed", framework_id=fid, name=info["name"])
        fw.stream = stream
        stream.send({
            "type": "SUBSCRIBED",
            "subscribed": {
                "framework_id": {"value": fid},
                "heartbeat_interval_seconds": self.config.heartbeat_interval,
                "master_info": self.master_info(),
            },
        })  # fmt: skip
        self._alloc("add_framework", fid, fw.role, self.clock())
        fw.suppressed = fw.role in suppressed_roles
        if fw.suppressed:
            self._alloc("suppress", fid)
        for queue in fw.updates.values():
            self._send_update(fw, queue[0])
        self.trigger_allocation()
        return fw, stream

    def stream_closed(self, fw: Framework, stream: EventStream) -> None:
        """The subscription connection ended (either side)."""
        stream.close()
        if fw.stream is not stream or self.frameworks.get(fw.id) is not fw:
            return  # replaced by a newer subscription, or removed already
        fw.stream = None
        self._rescind_offers(fw.offers.values(), notify=False)
        self._alloc("suppress", fw.id)  # deactivate: no offers until it comes back
        timeout = fw.failover_timeout
        log.info("framework_disconnected", framework_id=fw.id, failover_timeout=timeout)
        if timeout <= 0:
            self.remove_framework(fw, "disconnected with failover_timeout 0")
        else:
            fw.failover_deadline = self.clock() + timeout

    def remove_framework(self, fw: Framework, why: str) -> None:
        """TEARDOWN, or failover timeout: kill its tasks and forget it."""
        log.info("framework_removed", framework_id=fw.id, reason=why, tasks=len(fw.tasks))
        self._rescind_offers(fw.offers.values(), notify=False)
        agents_to_tell: set[str] = set()
        for task in list(fw.tasks.values()):
            agent = self.agents.get(task.agent_id)
            if not task.terminal:
                agents_to_tell.add(task.agent_id)
                status = task_status(
                    task.id, KILLED, agent_id=task.agent_id, reason=REASON_FRAMEWORK_REMOVED,
                    message=f"Framework removed: {why}", reliable=False,
                )  # fmt: skip
                self._apply_status(task, status, recover=True)
            if agent is not None:
                agent.tasks.pop((fw.id, task.id), None)
            fw.completed_tasks.append(task)
        fw.tasks.clear()
        fw.updates.clear()
        for aid in sorted(agents_to_tell):
            agent = self.agents.get(aid)
            if agent is not None and agent.stream is not None:
                agent.stream.send({
                    "type": "SHUTDOWN_FRAMEWORK",
                    "shutdown_framework": {"framework_id": {"value": fw.id}},
                })  # fmt: skip
        self._alloc("remove_framework", fw.id)
        if fw.stream is not None:
            fw.stream.close()
            fw.stream = None
        fw.unregistered_time = time.time()
        del self.frameworks[fw.id]
        self.completed_frameworks.append(fw)
        self.removed_framework_ids.add(fw.id)

    # -- calls from subscribed frameworks -------------------------------------------------------

    def framework_for_call(self, call: dict[str, Any], stream_id: str | None) -> Framework:
        fid = id_of(call, "framework_id")
        fw = self.frameworks.get(fid)
        if fw is None:
            raise InvalidCall("Framework cannot be found")
        if not fw.connected or fw.stream is None:
            raise InvalidCall("Framework is not subscribed", 403)
        if stream_id is None:
            raise InvalidCall("All non-subscribe calls should include the 'Mesos-Stream-Id' header")
        if stream_id != fw.stream.id:
            raise InvalidCall(
                f"The stream ID '{stream_id}' included in this request didn't match the stream"
                f" ID currently associated with framework ID {fid}"
            )  # fmt: skip
        return fw

    def handle_call(self, fw: Framework, call: dict[str, Any]) -> dict[str, Any] | None:
        """One non-SUBSCRIBE call; None means 202 Accepted, a dict a 200 with that body."""
        kind = call["type"]
        if kind == "TEARDOWN":
            self.remove_framework(fw, "TEARDOWN")
        elif kind == "ACCEPT":
            self.accept(fw, sub_message(call, "accept"))
        elif kind == "DECLINE":
            self.decline(fw, sub_message(call, "decline"))
        elif kind == "REVIVE":
            fw.suppressed = False
            self._alloc("revive", fw.id)
            self.trigger_allocation()
        elif kind == "SUPPRESS":
            fw.suppressed = True
            self._alloc("suppress", fw.id)
        elif kind == "KILL":
            kill = sub_message(call, "kill")
            self.kill(fw, id_of(kill, "task_id", "kill"), kill.get("kill_policy"))
        elif kind == "SHUTDOWN":
            shutdown = sub_message(call, "shutdown")
            executor_id = id_of(shutdown, "executor_id", "shutdown")
            id_of(shutdown, "agent_id", "shutdown")
            if executor_id in fw.tasks:  # the command executor's id is its task's id
                self.kill(fw, executor_id, None)
        elif kind == "ACKNOWLEDGE":
            ack = sub_message(call, "acknowledge")
            task_id = id_of(ack, "task_id", "acknowledge")
            id_of(ack, "agent_id", "acknowledge")
            status_uuid = ack.get("uuid")
            if not isinstance(status_uuid, str) or not status_uuid:
                raise InvalidCall("Expecting 'acknowledge.uuid' to be present")
            self.acknowledge(fw, task_id, status_uuid)
        elif kind == "RECONCILE":
            self.reconcile(fw, sub_message(call, "reconcile", required=False))
        elif kind == "MESSAGE":
            self.message(fw, sub_message(call, "message"))
        elif kind == "UPDATE_FRAMEWORK":
            self.update_framework(fw, sub_message(call, "update_framework"))
            return {}
        elif kind == "RECONCILE_OPERATIONS":
            return {"type": "RECONCILE_OPERATIONS", "reconcile_operations": {"operation_statuses": []}}
        # REQUEST (Mesos' allocator ignores it too), inverse offers (mesoslite makes none) and
        # operation acknowledgements (no operation feedback) are accepted and have no effect.
        return None

    def accept(self, fw: Framework, accept: dict[str, Any]) -> None:
        offer_ids = accept.get("offer_ids") or []
        operations = accept.get("operations") or []
        if not isinstance(offer_ids, list) or not isinstance(operations, list):
            raise InvalidCall("'accept.offer_ids' and 'accept.operations' must be lists")
        ids = [id_of({"offer_id": o}, "offer_id", "accept.offer_ids[]") for o in offer_ids]
        launches = _parse_operations(operations)
        refuse = refuse_seconds(accept.get("filters"))

        error = None if ids else "No offers specified"
        taken: list[Offer] = []
        for oid in ids:
            offer = self.offers.get(oid)
            if offer is None:
                error = f"Offer {oid} is no longer valid"
            elif offer.framework_id != fw.id:
                error = f"Offer {oid} is not owned by framework {fw.id}"
            elif offer in taken:
                error = f"Offer {oid} appears more than once"
            else:
                taken.append(offer)
        if len({o.agent_id for o in taken}) > 1:
            error = "Aggregated offers must belong to one single agent"
        for offer in taken:
            self._remove_offer(offer)
        if error is not None:
            log.info("accept_invalid_offers", framework_id=fw.id, error=error)
            for offer in taken:
                self._recover(fw.id, offer.agent_id, offer.resources)
            state = DROPPED if fw.partition_aware else LOST
            for _kind, tinfo in launches:
                # agent_id as the TaskInfo names it: schedulers echo it in the ACKNOWLEDGE
                # (pymesos' acknowledgeStatusUpdate needs it in every status with a uuid).
                self._forward(fw, task_status(
                    _task_id_or(tinfo), state, agent_id=tinfo["agent_id"]["value"],
                    reason=REASON_INVALID_OFFERS,
                    message=f"Task launched with invalid offers: {error}",
                ), from_agent=False)  # fmt: skip
            return

        agent = self.agents[taken[0].agent_id]
        remaining = Resources()
        for offer in taken:
            remaining = remaining + offer.resources
        seen: set[str] = set()
        for kind, tinfo in launches:
            problem = (
                "LAUNCH_GROUP is not supported by mesoslite (use LAUNCH)"
                if kind == "LAUNCH_GROUP" else self._task_problem(fw, agent, tinfo, seen)
            )  # fmt: skip
            task_id = _task_id_or(tinfo)
            seen.add(task_id)
            resources = Resources()
            if problem is None:
                resources = Resources.from_mesos(tinfo.get("resources") or [])
                if not remaining.contains(resources):
                    problem = (
                        f"Task uses more resources {resources} than available {remaining}"
                    )  # fmt: skip
            if problem is not None:
                log.info("task_invalid", framework_id=fw.id, task_id=task_id, error=problem)
                self._forward(fw, task_status(
                    task_id, ERROR, agent_id=agent.id, reason=REASON_TASK_INVALID,
                    message=problem,
                ), from_agent=False)  # fmt: skip
                continue
            remaining = remaining - resources
            self._launch(fw, agent, tinfo, resources)
        self._recover(fw.id, agent.id, remaining, refuse)

    def _task_problem(
        self, fw: Framework, agent: Agent, tinfo: dict[str, Any], seen: set[str],
    ) -> str | None:  # fmt: skip
        """Why this TaskInfo cannot run (TASK_ERROR), or None."""
        task_id = tinfo["task_id"]["value"]
        if "/" in task_id or task_id in (".", "..") or any(c.isspace() for c in task_id):
            return f"Task ID {task_id!r} must not contain '/' or whitespace, nor be '.' or '..'"
        if task_id in fw.tasks or task_id in seen or task_id in fw.unreachable_tasks:
            return f"Task has duplicate ID: {task_id}"
        if tinfo["agent_id"]["value"] != agent.id:
            return (
                f"Task uses agent ID {tinfo['agent_id']['value']} but its offers are"
                f" from agent {agent.id}"
            )  # fmt: skip
        if "executor" in tinfo:
            return "mesoslite runs tasks with the command executor only: set TaskInfo.command"
        command = tinfo.get("command")
        if not isinstance(command, dict):
            return "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
        if not isinstance(command.get("value"), str) or not command["value"]:
            return "CommandInfo.value is required (the shell command, or the executable)"
        arguments = command.get("arguments", [])
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            return "CommandInfo.arguments must be a list of strings"
        env = command.get("environment", {})
        variables = env.get("variables", []) if isinstance(env, dict) else None
        if not isinstance(variables, list) or not all(
            isinstance(v, dict) and isinstance(v.get("name"), str) for v in variables
        ):  # fmt: skip
            return "CommandInfo.environment.variables must be a list of {name, value}"
        resources = tinfo.get("resources") or []
        for r in resources:
            if r.get("name") not in SCALARS and r.get("name") != "ports":
                return f"Resource {r.get('name')!r} is not offered by mesoslite"
        try:
            Resources.from_mesos(resources)
        except ResourceError as e:
            return f"Invalid resources: {e}"
        return None

    def _launch(self, fw: Framework, agent: Agent, tinfo: dict[str, Any], r: Resources) -> None:
        task = Task(fw.id, agent.id, tinfo, r)
        task.statuses.append({"state": STAGING, "timestamp": time.time()})
        fw.tasks[task.id] = task
        agent.tasks[(fw.id, task.id)] = task
        agent.used = agent.used + r
        if agent.stream is not None:
            agent.stream.send({"type": "RUN_TASK", "run_task": {"framework_info": fw.info, "task": tinfo}})

    def decline(self, fw: Framework, decline: dict[str, Any]) -> None:
        offer_ids = decline.get("offer_ids") or []
        if not isinstance(offer_ids, list):
            raise InvalidCall("'decline.offer_ids' must be a list")
        ids = [id_of({"offer_id": o}, "offer_id", "decline.offer_ids[]") for o in offer_ids]
        refuse = refuse_seconds(decline.get("filters"))
        for oid in ids:
            offer = self.offers.get(oid)
            if offer is None or offer.framework_id != fw.id:
                log.debug("decline_unknown_offer", framework_id=fw.id, offer_id=oid)
                continue
            self._remove_offer(offer)
            self._recover(fw.id, offer.agent_id, offer.resources, refuse)

    def kill(self, fw: Framework, task_id: str, kill_policy: Any) -> None:
        task = fw.tasks.get(task_id)
        if task is None:
            unreachable = fw.unreachable_tasks.get(task_id)
            if unreachable is not None:
                unreachable.kill_requested = True  # when (if) its agent comes back
                return
            state = UNKNOWN if fw.partition_aware else LOST
            fw.send(_update_event(task_status(
                task_id, state, reason=REASON_RECONCILIATION,
                message="Attempted to kill an unknown task", reliable=False,
            )))  # fmt: skip
            return
        if task.terminal:
            return
        task.kill_policy = kill_policy if isinstance(kill_policy, dict) else None
        agent = self.agents.get(task.agent_id)
        if agent is None or agent.stream is None:
            task.kill_requested = True
            return
        self._send_kill(agent, task)

    def _send_kill(self, agent: Agent, task: Task) -> None:
        kill: dict[str, Any] = {
            "framework_id": {"value": task.framework_id}, "task_id": {"value": task.id},
        }  # fmt: skip
        if task.kill_policy:
            kill["kill_policy"] = task.kill_policy
        if agent.stream is not None:
            agent.stream.send({"type": "KILL_TASK", "kill_task": kill})

    def acknowledge(self, fw: Framework, task_id: str, status_uuid: str) -> None:
        queue = fw.updates.get(task_id)
        if not queue or queue[0].uuid != status_uuid:
            log.debug("ack_ignored", framework_id=fw.id, task_id=task_id, uuid=status_uuid)
            return
        update = queue.popleft()
        if update.from_agent:
            agent = self.agents.get(str(update.status.get("agent_id", {}).get("value", "")))
            if agent is not None and agent.stream is not None:
                agent.stream.send({"type": "ACKNOWLEDGE", "acknowledge": {
                    "framework_id": {"value": fw.id}, "task_id": {"value": task_id},
                    "uuid": status_uuid,
                }})  # fmt: skip
        if queue:
            self._send_update(fw, queue[0])
        else:
            del fw.updates[task_id]
            task = fw.tasks.get(task_id)
            if task is not None and task.terminal:
                self._complete_task(fw, task)

    def _complete_task(self, fw: Framework, task: Task) -> None:
        fw.tasks.pop(task.id, None)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.pop((fw.id, task.id), None)
        fw.completed_tasks.append(task)

    def reconcile(self, fw: Framework, reconcile: dict[str, Any]) -> None:
        wanted = reconcile.get("tasks") or []
        if not isinstance(wanted, list):
            raise InvalidCall("'reconcile.tasks' must be a list")
        task_ids = [id_of(t, "task_id", "reconcile.tasks[]") for t in wanted]
        if not task_ids:  # implicit: everything the master knows of this framework
            for task in list(fw.tasks.values()) + list(fw.unreachable_tasks.values()):
                self._send_reconciled(fw, task.id, task.state, task.agent_id)
            return
        for task_id in task_ids:
            self._reconcile_one(fw, task_id, defer=True)

    def _reconcile_one(self, fw: Framework, task_id: str, defer: bool) -> None:
        task = fw.tasks.get(task_id) or fw.unreachable_tasks.get(task_id)
        if task is None:
            task = next((t for t in fw.completed_tasks if t.id == task_id), None)
        if task is not None:
            self._send_reconciled(fw, task_id, task.state, task.agent_id)
        elif defer and self.clock() < self.started + self.config.agent_reregister_timeout:
            self.deferred_reconciles.append((fw.id, task_id))
        else:
            self._send_reconciled(fw, task_id, UNKNOWN if fw.partition_aware else LOST, None)

    def _send_reconciled(self, fw: Framework, task_id: str, state: str, agent_id: str | None) -> None:
        fw.send(_update_event(task_status(
            task_id, state, agent_id=agent_id, reason=REASON_RECONCILIATION,
            message="Reconciliation: latest task state", reliable=False,
        )))  # fmt: skip

    def message(self, fw: Framework, message: dict[str, Any]) -> None:
        agent_id = id_of(message, "agent_id", "message")
        executor_id = id_of(message, "executor_id", "message")
        if not isinstance(message.get("data"), str):
            raise InvalidCall("Expecting 'message.data' (base64) to be present")
        agent = self.agents.get(agent_id)
        if agent is None or agent.stream is None:
            log.info("framework_message_dropped", framework_id=fw.id, agent_id=agent_id)
            return
        agent.stream.send({"type": "FRAMEWORK_MESSAGE", "framework_message": {
            "framework_id": {"value": fw.id}, "executor_id": {"value": executor_id},
            "data": message["data"],
        }})  # fmt: skip

    def update_framework(self, fw: Framework, update: dict[str, Any]) -> None:
        info = update.get("framework_info")
        if not isinstance(info, dict) or id_of(info, "id", "update_framework.framework_info") != fw.id:
            raise InvalidCall("'update_framework.framework_info.id' must be the framework's id")
        if framework_role(info) != fw.role:
            raise InvalidCall("mesoslite does not support changing a framework's role")
        keep: dict[str, Any] = {k: fw.info[k] for k in _IMMUTABLE_FRAMEWORK_FIELDS if k in fw.info}
        fw.info = {**info, **keep}
        suppress = fw.role in (update.get("suppressed_roles") or [])
        if suppress and not fw.suppressed:
            self._alloc("suppress", fw.id)
        elif not suppress and fw.suppressed:
            self._alloc("revive", fw.id)
            self.trigger_allocation()
        fw.suppressed = suppress

    # -- status updates -------------------------------------------------------------------------

    def _apply_status(self, task: Task, status: dict[str, Any], recover: bool) -> None:
        """The task's latest state; resources come back once, on the first terminal state."""
        was_terminal = task.terminal
        task.state = status["state"]
        task.statuses.append({"state": task.state, "timestamp": status.get("timestamp")})
        del task.statuses[:-STATUS_HISTORY_KEPT]
        if task.terminal and not was_terminal:
            agent = self.agents.get(task.agent_id)
            if agent is not None:
                try:
                    agent.used = agent.used - task.resources
                except ResourceError:
                    agent.recompute_used()
                if recover and agent.in_allocator:
                    self._recover(task.framework_id, agent.id, task.resources)

    def _forward(self, fw: Framework, status: dict[str, Any], from_agent: bool) -> None:
        """Deliver a status: reliable ones (with a uuid) queue per task until acknowledged."""
        if "uuid" not in status:
            fw.send(_update_event(status))
            return
        task_id = status["task_id"]["value"]
        queue = fw.updates.setdefault(task_id, deque())
        if any(u.uuid == status["uuid"] for u in queue):
            return  # a duplicate (an agent re-sent it)
        update = Update(status, from_agent)
        queue.append(update)
        if len(queue) == 1:
            self._send_update(fw, update)

    def _send_update(self, fw: Framework, update: Update) -> None:
        if not fw.connected:
            return
        fw.send(_update_event(update.status))
        update.attempts += 1
        backoff = self.config.status_update_retry_min * 2 ** (update.attempts - 1)
        update.next_send = self.clock() + min(backoff, self.config.status_update_retry_max)

    # -- offers ---------------------------------------------------------------------------------

    def _remove_offer(self, offer: Offer) -> None:
        self.offers.pop(offer.id, None)
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.pop(offer.id, None)
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            try:
                agent.offered = agent.offered - offer.resources
            except ResourceError:
                agent.offered = Resources()
                for o in self.offers.values():
                    if o.agent_id == agent.id:
                        agent.offered = agent.offered + o.resources

    def _rescind_offers(self, offers: Iterable[Offer], notify: bool = True) -> None:
        for offer in list(offers):
            self._remove_offer(offer)
            agent = self.agents.get(offer.agent_id)
            if agent is not None and agent.in_allocator:
                self._recover(offer.framework_id, offer.agent_id, offer.resources)
            fw = self.frameworks.get(offer.framework_id)
            if notify and fw is not None:
                fw.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.id}}})

    def allocate(self) -> int:
        """One allocation cycle: Grants -> Offers, one OFFERS event per framework."""
        now = self.clock()
        grants = self._alloc("allocate", now) or []
        batches: dict[str, list[dict[str, Any]]] = {}
        for grant in grants:
            fw = self.frameworks.get(grant.framework_id)
            agent = self.agents.get(grant.agent_id)
            problem = None
            if fw is None or not fw.connected:
                problem = "framework not connected"
            elif agent is None or not agent.connected:
                problem = "agent not connected"
            else:
                try:
                    if not agent.free().contains(grant.resources):
                        problem = f"grant exceeds the agent's free {agent.free()}"
                except ResourceError:
                    problem = "agent accounting over-committed"
            if problem is not None or fw is None or agent is None:
                log.warning("grant_dropped", framework_id=grant.framework_id,
                            agent_id=grant.agent_id, resources=str(grant.resources), why=problem)
                self._recover(grant.framework_id, grant.agent_id, grant.resources)
                continue
            offer = Offer(f"{self.id}-O{next(self._offer_seq)}", fw.id, agent.id, grant.resources, now)
            self.offers[offer.id] = offer
            fw.offers[offer.id] = offer
            agent.offered = agent.offered + offer.resources
            batches.setdefault(fw.id, []).append(self._offer_json(offer, agent, fw.role))
        for fid, offers in batches.items():
            self.frameworks[fid].send({"type": "OFFERS", "offers": {"offers": offers}})
        return sum(len(o) for o in batches.values())

    def _offer_json(self, offer: Offer, agent: Agent, role: str) -> dict[str, Any]:
        resources = offer.resources.to_mesos()
        for r in resources:
            r["allocation_info"] = {"role": role}
        return {
            "id": {"value": offer.id},
            "framework_id": {"value": offer.framework_id},
            "agent_id": {"value": agent.id},
            "hostname": agent.hostname,
            "url": {
                "scheme": "http", "path": f"/slave({agent.id})",
                "address": {"hostname": agent.hostname, "port": agent.port},
            },
            "resources": resources,
            "attributes": attributes_to_mesos(agent.attributes),
            "executor_ids": [],
            "allocation_info": {"role": role},
        }  # fmt: skip

    # -- agents ---------------------------------------------------------------------------------

    def register_agent(self, call: dict[str, Any]) -> tuple[Agent, EventStream]:
        """REGISTER (first time, or again with its id after a disconnection or a master restart)."""
        reg = sub_message(call, "register")
        info = reg.get("agent_info")
        if not isinstance(info, dict):
            raise InvalidCall("Expecting 'register.agent_info' to be present")
        try:
            total = Resources.from_mesos(info.get("resources") or [])
            attributes = attributes_from_mesos(info.get("attributes") or [])
        except (ResourceError, KeyError, TypeError) as e:
            raise InvalidCall(f"Invalid agent resources or attributes: {e}") from None
        hostname = info.get("hostname")
        if not isinstance(hostname, str) or not hostname:
            raise InvalidCall("Expecting 'register.agent_info.hostname' to be present")
        port = info.get("port", 5051)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
            raise InvalidCall("'register.agent_info.port' must be a port number")
        reported = _parse_reported_tasks(reg.get("tasks") or [])
        aid = optional_id(info, "id", "register.agent_info")

        stream = EventStream()
        now_wall = time.time()
        lost_keys: set[tuple[str, str]] = set()
        agent = self.agents.get(aid) if aid else None
        if agent is not None:  # a reconnection: drop the old incarnation's offers and stream
            self._deactivate_agent(agent)
            agent.hostname, agent.port, agent.total, agent.attributes = hostname, port, total, attributes
            agent.reregistered_time = now_wall
            event = "agent_reregistered"
        else:
            if aid is None:
                aid = f"{self.id}-S{next(self._agent_seq)}"
                event = "agent_registered"
            else:
                lost_keys = self.removed_agents.pop(aid, set())
                event = "agent_readmitted" if lost_keys else "agent_recovered"
            agent = self.agents[aid] = Agent(aid, hostname, port, total, attributes, now_wall)
        agent.stream = stream
        agent.ping_seq = agent.pong_seq = agent.missed_pings = 0
        stream.send({"type": "REGISTERED", "registered": {
            "agent_id": {"value": aid}, "master_info": self.master_info(),
            "ping_interval_seconds": self.config.agent_ping_timeout,
        }})  # fmt: skip

        self._reconcile_agent_tasks(agent, reported, lost_keys)
        agent.recompute_used()
        allocated: dict[str, Resources] = {}
        for task in agent.tasks.values():
            if not task.terminal:
                allocated[task.framework_id] = allocated.get(task.framework_id, Resources()) + task.resources
        # A failure here leaves the agent connected but never offered (logged as an error).
        agent.in_allocator = self._alloc_ok("add_agent", aid, total, allocated)
        log.info(event, agent_id=aid, hostname=hostname, resources=str(total),
                 tasks=sum(1 for t in agent.tasks.values() if not t.terminal))
        self.trigger_allocation()
        return agent, stream

    def _reconcile_agent_tasks(
        self, agent: Agent, reported: dict[tuple[str, str], dict[str, Any]],
        lost_keys: set[tuple[str, str]],
    ) -> None:  # fmt: skip
        """Make the master's view of the agent's tasks match what the agent reports."""
        for key, missing in list(agent.tasks.items()):
            if key in reported or missing.terminal:
                continue
            fw = self.frameworks.get(missing.framework_id)
            if fw is None:
                continue
            state = (DROPPED if missing.state == STAGING else GONE) if fw.partition_aware else LOST
            status = task_status(
                missing.id, state, agent_id=agent.id, reason=REASON_AGENT_RESTARTED,
                message="The agent re-registered without this task",
            )  # fmt: skip
            self._apply_status(missing, status, recover=False)
            self._forward(fw, status, from_agent=False)

        kill_frameworks: set[str] = set()
        for (fid, tid), entry in reported.items():
            fw = self.frameworks.get(fid)
            if fw is None:
                if fid in self.removed_framework_ids:
                    kill_frameworks.add(fid)
                    continue
                fw = self._recover_framework(fid, entry["framework_info"])
            if (fid, tid) in lost_keys and not fw.partition_aware:
                # Reported TASK_LOST when the agent was removed: a non-partition-aware framework
                # has been told it is gone, so it must not come back (Mesos kills it likewise).
                self._send_kill(agent, Task(fid, agent.id, entry["task"], entry["resources"]))
                continue
            state = entry["state"]
            task: Task | None = fw.tasks.get(tid)
            readopted = False
            if task is None and tid in fw.unreachable_tasks:
                task = fw.unreachable_tasks.pop(tid)
                fw.tasks[tid] = task
                readopted = True
            if task is None:
                if state in TERMINAL and any(t.id == tid for t in fw.completed_tasks):
                    for status in entry["updates"]:  # seen and acknowledged already
                        self._ack_to_agent(agent, fid, tid, status["uuid"])
                    continue
                task = Task(fid, agent.id, entry["task"], entry["resources"], state)
                fw.tasks[tid] = task
            task.agent_id = agent.id
            agent.tasks[(fid, tid)] = task
            if task.state != state:
                task.state = state
                task.statuses.append({"state": state, "timestamp": time.time()})
            for status in entry["updates"]:
                self._forward(fw, status, from_agent=True)
            if readopted:
                self._forward(fw, task_status(
                    tid, state, agent_id=agent.id, source=SOURCE_MASTER,
                    message="The agent of this task re-registered",
                ), from_agent=False)  # fmt: skip
            if task.kill_requested and not task.terminal:
                task.kill_requested = False
                self._send_kill(agent, task)
        for fid in sorted(kill_frameworks):
            if agent.stream is not None:
                agent.stream.send({
                    "type": "SHUTDOWN_FRAMEWORK",
                    "shutdown_framework": {"framework_id": {"value": fid}},
                })  # fmt: skip

    def _recover_framework(self, fid: str, info: dict[str, Any]) -> Framework:
        """A framework known only from an agent's report (the master restarted)."""
        info = {**info, "id": {"value": fid}}
        fw = self.frameworks[fid] = Framework(fid, info, time.time(), recovered=True)
        timeout = fw.failover_timeout
        # It cannot have been disconnected for longer than this master has been up; give it its
        # whole failover timeout from now, at least the re-registration window.
        fw.failover_deadline = self.clock() + max(timeout, self.config.agent_reregister_timeout)
        log.info("framework_recovered", framework_id=fid, name=info.get("name"))
        return fw

    def _ack_to_agent(self, agent: Agent, fid: str, tid: str, status_uuid: str) -> None:
        if agent.stream is not None:
            agent.stream.send({"type": "ACKNOWLEDGE", "acknowledge": {
                "framework_id": {"value": fid}, "task_id": {"value": tid}, "uuid": status_uuid,
            }})  # fmt: skip

    def agent_stream_closed(self, agent: Agent, stream: EventStream) -> None:
        stream.close()
        if agent.stream is not stream or self.agents.get(agent.id) is not agent:
            return
        log.info("agent_disconnected", agent_id=agent.id, hostname=agent.hostname)
        self._deactivate_agent(agent)

    def _deactivate_agent(self, agent: Agent) -> None:
        """No more offers from it: rescind the outstanding ones, take it out of the allocator."""
        if agent.stream is not None:
            agent.stream.close()
            agent.stream = None
        self._rescind_offers([o for o in self.offers.values() if o.agent_id == agent.id])
        if agent.in_allocator:
            self._alloc("remove_agent", agent.id)
            agent.in_allocator = False

    def remove_agent(self, agent: Agent, why: str) -> None:
        """The agent is gone: its tasks are LOST (UNREACHABLE to partition-aware frameworks)."""
        log.warning("agent_removed", agent_id=agent.id, hostname=agent.hostname, reason=why)
        self._deactivate_agent(agent)
        lost: set[tuple[str, str]] = set()
        for (fid, tid), task in list(agent.tasks.items()):
            fw = self.frameworks.get(fid)
            if fw is None:
                continue
            if task.terminal:
                continue  # its terminal update is queued for the framework already
            # The agent's own updates die with it, as in Mesos (they lived in its status update
            # manager); the master's verdict goes out at once instead of queueing behind them.
            queue = fw.updates.get(tid)
            if queue:
                queue = deque(u for u in queue if not u.from_agent)
                if queue:
                    fw.updates[tid] = queue
                else:
                    del fw.updates[tid]
            state = UNREACHABLE if fw.partition_aware else LOST
            status = task_status(
                tid, state, agent_id=agent.id, reason=REASON_AGENT_REMOVED,
                message=f"Agent {agent.hostname} ({agent.id}) removed: {why}",
            )  # fmt: skip
            self._apply_status(task, status, recover=False)
            fw.tasks.pop(tid, None)
            if fw.partition_aware:
                fw.unreachable_tasks[tid] = task
            else:
                fw.completed_tasks.append(task)
                lost.add((fid, tid))
            self._forward(fw, status, from_agent=False)
        del self.agents[agent.id]
        self.removed_agents[agent.id] = lost
        for fw in self.frameworks.values():
            fw.send({"type": "FAILURE", "failure": {"agent_id": {"value": agent.id}}})

    def agent_call(self, call: dict[str, Any], session: str | None) -> None:
        """UPDATE / PONG / EXECUTOR_MESSAGE / UNREGISTER from a registered agent."""
        aid = id_of(call, "agent_id")
        agent = self.agents.get(aid)
        if agent is None:
            raise InvalidCall(f"Agent {aid} is not registered", 404)
        if agent.stream is None or session != agent.stream.id:
            raise InvalidCall(f"'{AGENT_SESSION_HEADER}' does not match agent {aid}'s session", 409)
        kind = call.get("type")
        if kind == "UPDATE":
            updates = sub_message(call, "update").get("updates")
            if not isinstance(updates, list):
                raise InvalidCall("Expecting 'update.updates' to be a list")
            for item in updates:
                fid = id_of(item, "framework_id", "update.updates[]")
                status = _parse_status(item.get("status"))
                self.agent_status_update(agent, fid, status)
        elif kind == "PONG":
            seq = sub_message(call, "pong").get("seq")
            if isinstance(seq, int):
                agent.pong_seq = max(agent.pong_seq, seq)
        elif kind == "EXECUTOR_MESSAGE":
            msg = sub_message(call, "executor_message")
            fid = id_of(msg, "framework_id", "executor_message")
            executor_id = id_of(msg, "executor_id", "executor_message")
            fw = self.frameworks.get(fid)
            if fw is not None and isinstance(msg.get("data"), str):
                fw.send({"type": "MESSAGE", "message": {
                    "agent_id": {"value": aid}, "executor_id": {"value": executor_id},
                    "data": msg["data"],
                }})  # fmt: skip
        elif kind == "UNREGISTER":
            self.remove_agent(agent, "the agent shut down")
        else:
            raise InvalidCall(f"Unknown agent call type {kind!r}")

    def agent_status_update(self, agent: Agent, fid: str, status: dict[str, Any]) -> None:
        tid = status["task_id"]["value"]
        fw = self.frameworks.get(fid)
        task = fw.tasks.get(tid) if fw is not None else None
        if fw is None or task is None or task.agent_id != agent.id:
            # Its framework was removed or the task written off: nobody to tell. Acknowledge it
            # for the framework, or the agent would keep it forever.
            log.info("update_for_unknown_task", agent_id=agent.id, framework_id=fid, task_id=tid,
                     state=status["state"])
            if "uuid" in status:
                self._ack_to_agent(agent, fid, tid, status["uuid"])
            return
        if "uuid" in status and any(u.uuid == status["uuid"] for u in fw.updates.get(tid, ())):
            return  # a duplicate
        self._apply_status(task, status, recover=True)
        self._forward(fw, status, from_agent=True)

    # -- timers ---------------------------------------------------------------------------------

    async def _allocation_loop(self) -> None:
        interval = self.config.allocation_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._allocate_soon.wait(), timeout=interval)
            self._allocate_soon.clear()
            try:
                self.allocate()
            except Exception:
                log.exception("allocation_failed")

    async def _heartbeat_loop(self) -> None:
        event = {"type": "HEARTBEAT"}
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            for fw in self.frameworks.values():
                fw.send(event)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.agent_ping_timeout)
            try:
                self.check_agents()
            except Exception:
                log.exception("agent_ping_check_failed")

    def check_agents(self) -> None:
        """One ping period: count unanswered pings, remove agents out of chances, ping again."""
        for agent in list(self.agents.values()):
            answered = agent.connected and agent.pong_seq >= agent.ping_seq
            agent.missed_pings = 0 if answered else agent.missed_pings + 1
            if agent.missed_pings >= self.config.max_agent_ping_timeouts:
                self.remove_agent(
                    agent, f"health check timed out ({agent.missed_pings} pings unanswered)"
                )  # fmt: skip
                continue
            if agent.stream is not None:
                agent.ping_seq += 1
                agent.stream.send({"type": "PING", "ping": {"seq": agent.ping_seq}})

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(TIMER_TICK)
            try:
                self.check_timers()
            except Exception:
                log.exception("timer_check_failed")

    def check_timers(self) -> None:
        now = self.clock()
        for fw in list(self.frameworks.values()):
            if fw.failover_deadline is not None and not fw.connected and now >= fw.failover_deadline:
                self.remove_framework(fw, "failover timeout")
                continue
            if fw.connected:
                for queue in fw.updates.values():
                    if queue[0].attempts and now >= queue[0].next_send:
                        log.debug("status_update_resent", framework_id=fw.id,
                                  task_id=queue[0].status["task_id"]["value"])
                        self._send_update(fw, queue[0])
        if self.config.offer_timeout is not None:
            expired = [o for o in self.offers.values() if now - o.created >= self.config.offer_timeout]
            self._rescind_offers(expired)
        if self.deferred_reconciles and now >= self.started + self.config.agent_reregister_timeout:
            deferred, self.deferred_reconciles = self.deferred_reconciles, []
            for fid, tid in deferred:
                fw_or_none = self.frameworks.get(fid)
                if fw_or_none is not None:
                    self._reconcile_one(fw_or_none, tid, defer=False)

    # -- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        now_wall = time.time()
        flags = {k: str(v) for k, v in sorted(vars_of(self.config).items())}
        return {
            "version": MESOS_VERSION,
            "id": self.id,
            "pid": self.pid,
            "hostname": self.config.advertised_host,
            "leader": self.pid,
            "leader_info": self.master_info(),
            "start_time": self.start_time,
            "elected_time": self.start_time,
            "activated_slaves": sum(1 for a in self.agents.values() if a.connected),
            "deactivated_slaves": sum(1 for a in self.agents.values() if not a.connected),
            "flags": flags,
            "slaves": [agent_json(a) for a in self.agents.values()],
            "frameworks": [framework_json(f, now_wall) for f in self.frameworks.values()],
            "completed_frameworks": [framework_json(f, now_wall) for f in self.completed_frameworks],
            "unregistered_frameworks": [],
            "orphan_tasks": [],
        }


def vars_of(config: MasterConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def _update_event(status: dict[str, Any]) -> dict[str, Any]:
    return {"type": "UPDATE", "update": {"status": status}}


def _task_id_or(tinfo: dict[str, Any]) -> str:
    return str(tinfo["task_id"]["value"])


def _parse_operations(operations: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The TaskInfos to launch, as (operation type, TaskInfo); malformed ones are a 400."""
    launches: list[tuple[str, dict[str, Any]]] = []
    for i, op in enumerate(operations):
        where = f"accept.operations[{i}]"
        if not isinstance(op, dict) or op.get("type") not in OPERATION_TYPES:
            raise InvalidCall(f"'{where}.type' must be one of {', '.join(sorted(OPERATION_TYPES))}")
        if op["type"] == "LAUNCH":
            infos = sub_message(op, "launch").get("task_infos")
            kind = "LAUNCH"
        elif op["type"] == "LAUNCH_GROUP":
            infos = sub_message(op, "launch_group").get("task_group", {}).get("tasks")
            kind = "LAUNCH_GROUP"
        else:
            log.warning("operation_not_supported", type=op["type"])
            continue
        if not isinstance(infos, list):
            raise InvalidCall(f"Expecting '{where}' to carry a list of TaskInfo")
        for j, tinfo in enumerate(infos):
            at = f"{where}.task_infos[{j}]"
            if not isinstance(tinfo, dict):
                raise InvalidCall(f"'{at}' must be a TaskInfo object")
            if not isinstance(tinfo.get("name"), str):
                raise InvalidCall(f"Expecting '{at}.name' to be present")
            id_of(tinfo, "task_id", at)
            id_of(tinfo, "agent_id", at)
            resources = tinfo.get("resources", [])
            if not isinstance(resources, list) or not all(
                isinstance(r, dict) and isinstance(r.get("name"), str) and "type" in r
                for r in resources
            ):  # fmt: skip
                raise InvalidCall(f"'{at}.resources' must be a list of Resource with name and type")
            launches.append((kind, tinfo))
    return launches


def _parse_status(status: Any) -> dict[str, Any]:
    if not isinstance(status, dict):
        raise InvalidCall("Expecting 'status' to be present")
    id_of(status, "task_id", "status")
    if status.get("state") not in TASK_STATES:
        raise InvalidCall(f"'status.state' {status.get('state')!r} is not a TaskState")
    return status


def _parse_reported_tasks(tasks: Any) -> dict[tuple[str, str], dict[str, Any]]:
    if not isinstance(tasks, list):
        raise InvalidCall("'register.tasks' must be a list")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i, entry in enumerate(tasks):
        where = f"register.tasks[{i}]"
        if not isinstance(entry, dict):
            raise InvalidCall(f"'{where}' must be an object")
        finfo = entry.get("framework_info")
        tinfo = entry.get("task")
        if not isinstance(finfo, dict) or not isinstance(tinfo, dict):
            raise InvalidCall(f"'{where}' must carry 'framework_info' and 'task' objects")
        fid = id_of(finfo, "id", f"{where}.framework_info")
        tid = id_of(tinfo, "task_id", f"{where}.task")
        state = entry.get("state")
        if state not in TASK_STATES:
            raise InvalidCall(f"'{where}.state' {state!r} is not a TaskState")
        updates = [_parse_status(s) for s in entry.get("updates") or []]
        if any("uuid" not in s for s in updates):
            raise InvalidCall(f"'{where}.updates' must all carry a uuid")
        try:
            resources = Resources.from_mesos(tinfo.get("resources") or [])
        except ResourceError as e:
            raise InvalidCall(f"'{where}.task.resources': {e}") from None
        out[(fid, tid)] = {
            "framework_info": finfo, "task": tinfo, "state": state, "updates": updates,
            "resources": resources,
        }  # fmt: skip
    return out


# -- HTTP ---------------------------------------------------------------------------------------

MASTER_KEY = web.AppKey("master", Master)


def _text(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=message, headers=headers)


async def _read_call(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON Call, or the error response Mesos would give."""
    if request.method != "POST":
        return _text(405, f"Expecting 'POST', received '{request.method}'", Allow="POST")
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        return _text(400, "Expecting 'Content-Type' to be present")
    mime = content_type.split(";")[0].strip().lower()
    if mime == "application/x-protobuf":
        return _text(415, "mesoslite speaks JSON only: expecting 'Content-Type' of application/json")
    if mime != "application/json":
        return _text(
            415, "Expecting 'Content-Type' of application/json or application/x-protobuf"
        )  # fmt: skip
    body = await request.read()
    try:
        call = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return _text(400, f"Failed to parse body into JSON: {e}")
    if not isinstance(call, dict):
        return _text(400, "Failed to convert JSON into Call protobuf: expected a JSON object")
    return call


def _accepts_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept")
    if not accept:
        return True
    for part in accept.split(","):
        mime = part.split(";")[0].strip().lower()
        if mime in ("application/json", "application/*", "*/*"):
            return True
    return False


async def scheduler_api(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER_KEY]
    call = await _read_call(request)
    if isinstance(call, web.Response):
        return call
    kind = call.get("type")
    if kind not in SCHEDULER_CALLS:
        return _text(400, f"Failed to convert JSON into Call protobuf: unknown call type {kind!r}")
    try:
        if kind == "SUBSCRIBE":
            if not _accepts_json(request):
                return _text(406, "Expecting 'Accept' to allow 'application/json'")
            if STREAM_ID_HEADER in request.headers:
                return _text(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
            fw, stream = master.subscribe(call)

            def closed() -> None:
                if fw is not None:
                    master.stream_closed(fw, stream)

            return await _serve_stream(request, stream, {STREAM_ID_HEADER: stream.id}, closed)
        fw = master.framework_for_call(call, request.headers.get(STREAM_ID_HEADER))
        result = master.handle_call(fw, call)
    except InvalidCall as e:
        log.info("call_rejected", type=kind, status=e.status, error=e.message)
        return _text(e.status, e.message)
    except Exception as e:
        log.exception("call_failed", type=kind)
        return _text(500, f"mesoslite failed on this {kind} call: {e!r}")
    if result is None:
        return web.Response(status=202)
    return web.json_response(result, dumps=lambda o: orjson.dumps(o).decode())


async def _serve_stream(
    request: web.Request, stream: EventStream, headers: dict[str, str],
    on_close: Callable[[], Any],
) -> web.StreamResponse:  # fmt: skip
    response = web.StreamResponse(status=200, headers={
        "Content-Type": "application/json", "Cache-Control": "no-cache", **headers,
    })  # fmt: skip
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        await stream.pump(response)
    except (ConnectionError, RuntimeError) as e:
        log.debug("stream_broken", error=repr(e))
    finally:
        on_close()
    return response


async def agent_api(request: web.Request) -> web.StreamResponse:
    master = request.app[MASTER_KEY]
    call = await _read_call(request)
    if isinstance(call, web.Response):
        return call
    try:
        if call.get("type") == "REGISTER":
            agent, stream = master.register_agent(call)
            return await _serve_stream(request, stream, {AGENT_SESSION_HEADER: stream.id},
                                       lambda: master.agent_stream_closed(agent, stream))
        master.agent_call(call, request.headers.get(AGENT_SESSION_HEADER))
    except InvalidCall as e:
        log.info("agent_call_rejected", type=call.get("type"), status=e.status, error=e.message)
        return _text(e.status, e.message)
    return web.Response(status=202)


async def state_endpoint(request: web.Request) -> web.Response:
    master = request.app[MASTER_KEY]
    return web.json_response(master.state(), dumps=lambda o: orjson.dumps(o).decode())


async def redirect_endpoint(request: web.Request) -> web.Response:
    master = request.app[MASTER_KEY]
    location = f"//{master.config.advertised_host}:{master.port}"
    return web.Response(status=307, headers={"Location": location})


async def version_endpoint(request: web.Request) -> web.Response:
    return web.json_response({"version": MESOS_VERSION, "build_user": "mesoslite", "git_tag": ""})


async def health_endpoint(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def teardown_endpoint(request: web.Request) -> web.Response:
    """The operator's `/master/teardown` (form field `frameworkId`)."""
    master = request.app[MASTER_KEY]
    form = await request.post()
    fid = form.get("frameworkId")
    fw = master.frameworks.get(str(fid)) if fid is not None else None
    if fw is None:
        return _text(400, "No framework found with specified ID")
    master.remove_framework(fw, "operator teardown")
    return web.Response(status=200)


def create_app(master: Master) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[MASTER_KEY] = master
    for path in SCHEDULER_PATHS:
        app.router.add_route("*", path, scheduler_api)
    app.router.add_route("*", AGENT_PATH, agent_api)
    for path in ("/master/state", "/state", "/master/state.json", "/state.json"):
        app.router.add_get(path, state_endpoint)
    for path in ("/master/redirect", "/redirect"):
        app.router.add_get(path, redirect_endpoint)
    app.router.add_get("/version", version_endpoint)
    app.router.add_get("/health", health_endpoint)
    app.router.add_get("/master/health", health_endpoint)
    app.router.add_post("/master/teardown", teardown_endpoint)

    async def on_startup(_: web.Application) -> None:
        master.start()

    async def on_shutdown(_: web.Application) -> None:
        await master.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


# -- entry point --------------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _weights(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        role, sep, weight = item.partition("=")
        try:
            out[role.strip()] = _positive(weight)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"{item!r}: expected role=weight") from None
        if not sep or not role.strip():
            raise argparse.ArgumentTypeError(f"{item!r}: expected role=weight")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The master's options (`mantis mesoslite ...`, `python -m mesoslite.master ...`)."""
    d = MasterConfig()
    parser.add_argument("--host", default=d.host, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=d.port, help="port (default: %(default)s; 0 picks one)")
    parser.add_argument("--hostname", default=None, help="name advertised to frameworks (default: --host)")
    parser.add_argument("--allocator", default=d.allocator,
                        help="allocation module: drf, priority, or package.module:Factory (default: %(default)s)")
    parser.add_argument("--allocation-interval", type=_positive, default=d.allocation_interval,
                        metavar="SECONDS", help="seconds between allocation cycles (default: %(default)s)")
    parser.add_argument("--heartbeat-interval", type=_positive, default=d.heartbeat_interval,
                        metavar="SECONDS", help="HEARTBEAT period to frameworks (default: %(default)s)")
    parser.add_argument("--agent-ping-timeout", type=_positive, default=d.agent_ping_timeout,
                        metavar="SECONDS", help="time an agent has to answer a ping (default: %(default)s)")
    parser.add_argument("--max-agent-ping-timeouts", type=int, default=d.max_agent_ping_timeouts,
                        metavar="N", help="unanswered pings before an agent is removed (default: %(default)s)")
    parser.add_argument("--agent-reregister-timeout", type=float, default=d.agent_reregister_timeout,
                        metavar="SECONDS",
                        help="after start, how long reconciliation waits for agents to re-register (default: %(default)s)")
    parser.add_argument("--status-update-retry-min", type=_positive, default=d.status_update_retry_min,
                        metavar="SECONDS", help="first re-send of an unacknowledged update (default: %(default)s)")
    parser.add_argument("--status-update-retry-max", type=_positive, default=d.status_update_retry_max,
                        metavar="SECONDS", help="cap of the re-send back-off (default: %(default)s)")
    parser.add_argument("--offer-timeout", type=_positive, default=None, metavar="SECONDS",
                        help="rescind offers not used within this time (default: never)")
    parser.add_argument("--weights", type=_weights, default={}, metavar="ROLE=W,...",
                        help="role weights for the allocator, e.g. 'prod=2,dev=1'")


def config_from_args(args: argparse.Namespace) -> MasterConfig:
    return MasterConfig(
        host=args.host, port=args.port, hostname=args.hostname, allocator=args.allocator,
        allocation_interval=args.allocation_interval, heartbeat_interval=args.heartbeat_interval,
        agent_ping_timeout=args.agent_ping_timeout,
        max_agent_ping_timeouts=max(1, args.max_agent_ping_timeouts),
        agent_reregister_timeout=max(0.0, args.agent_reregister_timeout),
        status_update_retry_min=args.status_update_retry_min,
        status_update_retry_max=max(args.status_update_retry_max, args.status_update_retry_min),
        offer_timeout=args.offer_timeout, weights=args.weights,
    )  # fmt: skip


async def serve(config: MasterConfig, ready: Callable[[Master], None] | None = None) -> None:
    """Run a master until SIGTERM or SIGINT."""
    master = Master(config, resolve_allocator(config.allocator))
    app = create_app(master)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    if sockets:
        master.port = sockets[0].getsockname()[1]
    log.info("master_started", url=f"http://{config.host}:{master.port}", id=master.id,
             allocator=config.allocator)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(master)
    try:
        await stop.wait()
    finally:
        log.info("master_stopping")
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    """Run the master from parsed options; logging is the caller's to configure."""
    try:
        config = config_from_args(args)
        resolve_allocator(config.allocator)  # fail fast, before binding
    except ValueError as e:
        log.error("master_config_invalid", error=str(e))
        return 2
    try:
        asyncio.run(serve(config))
    except OSError as e:
        log.error("master_failed", error=str(e))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    description = "mesoslite master: Mesos' v1 scheduler HTTP API on 127.0.0.1 by default."
    return logs.standalone("python -m mesoslite.master", description, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

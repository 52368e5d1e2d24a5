"""The mesoslite master's state and logic (as Mesos' src/master/master.cpp): frameworks, agents,
offers, tasks and status updates, driven by the calls mesoslite.http hands it.

Frameworks (pymesos' `MesosSchedulerDriver`, or any v1 HTTP client) talk to it exactly as to a
Mesos master through the v1 scheduler API (mesoslite.http; calls parsed by mesoslite.wire):

- Calls: SUBSCRIBE, TEARDOWN, ACCEPT (LAUNCH), DECLINE, REVIVE, SUPPRESS, KILL, SHUTDOWN,
  ACKNOWLEDGE, RECONCILE (explicit and implicit), MESSAGE, REQUEST (ignored, as Mesos'
  allocator does), UPDATE_FRAMEWORK; inverse-offer and operation calls are accepted no-ops.
  Events: SUBSCRIBED, OFFERS, RESCIND, UPDATE, MESSAGE, FAILURE, ERROR, HEARTBEAT, each with its
  payload in a sub-message named after its type (`{"type":"OFFERS","offers":{"offers":[...]}}`).
- Status updates with a `uuid` are delivered at least once: per task, in order, the head one is
  re-sent with exponential back-off (`--status-update-retry-min` doubling up to `-max`) until
  the framework ACKNOWLEDGEs it; the acknowledgement is then forwarded to the agent.
- Failover: a disconnected framework keeps its tasks for `failover_timeout` seconds
  (FrameworkInfo; pymesos sends 100 by default); re-subscribing with its id in time gets the
  un-acknowledged updates again and offers resume; past it, its tasks are killed.
- Allocation: the allocation module (`--allocator`, see mesoslite.allocator) runs every
  `--allocation-interval` seconds and right after a subscribe, a revive or an agent joining;
  each Grant becomes one Offer. Declined and unused resources go back with the refuse filter.

Agents connect through the agent API (mesoslite.http); the protocol is described in
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
agent simply has not re-registered yet. A master elected in ZooKeeper (`--zk`,
mesoslite.leadership) starts the same way when it takes over from a failed leader, its window
opening when it is elected.

Resources are accounted, never isolated: a task may use more CPU or memory than it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from mesoslite import container, executors, fetcher, health, maintenance, multirole
from mesoslite.allocator import Allocator, client_id, client_parts
from mesoslite.flags import MasterConfig, flag_values
from mesoslite.protocol import (
    DROPPED,
    ERROR,
    GONE,
    GONE_BY_OPERATOR,
    KILLED,
    LOST,
    MESOS_VERSION,
    REASON_AGENT_REMOVED,
    REASON_AGENT_REMOVED_BY_OPERATOR,
    REASON_AGENT_RESTARTED,
    REASON_FRAMEWORK_REMOVED,
    REASON_INVALID_OFFERS,
    REASON_RECONCILIATION,
    REASON_TASK_INVALID,
    SOURCE_MASTER,
    STAGING,
    TERMINAL,
    UNKNOWN,
    UNREACHABLE,
    InvalidCall,
    id_of,
    sub_message,
    task_status,
)
from mesoslite.resources import SCALARS, ResourceError, Resources
from mesoslite.roles import framework_roles_error
from mesoslite.state import (
    COMPLETED_FRAMEWORKS_KEPT,
    STATUS_HISTORY_KEPT,
    AgentRecord,
    FrameworkRecord,
    OfferRecord,
    ReportedExecutors,
    TaskRecord,
    Update,
    agent_json,
    framework_json,
    reported_executors,
)
from mesoslite.streams import EventStream
from mesoslite.subscribers import OperatorSubscribers
from mesoslite.wire import (
    AGENT_SESSION_HEADER,
    ipv4_as_uint32,
    offer_message,
    parse_accept,
    parse_acknowledge,
    parse_decline,
    parse_kill,
    parse_message,
    parse_reconcile,
    parse_registration,
    parse_roles,
    parse_shutdown,
    parse_status_updates,
    parse_subscribe,
    task_id_of,
    update_event,
)

log = structlog.get_logger()

_IMMUTABLE_FRAMEWORK_FIELDS = ("user", "principal", "checkpoint")  # ignored on re-subscribe
TIMER_TICK = 0.05  # seconds between checks of deadlines (failover, retries, offer timeouts)


class MesosliteMaster:
    """All master state and behaviour; HTTP handlers call into it, it never awaits mid-change."""

    def __init__(
        self,
        config: MasterConfig,
        allocator: Allocator,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.allocator = allocator
        self.clock = clock
        self.id = str(uuid.uuid4())
        self.port = config.port
        self.start_time = time.time()
        self.elected_time: float | None = None  # once it leads (mesoslite.leadership)
        self.started = clock()
        self.frameworks: dict[str, FrameworkRecord] = {}
        self.completed_frameworks: deque[FrameworkRecord] = deque(maxlen=COMPLETED_FRAMEWORKS_KEPT)
        self.removed_framework_ids: set[str] = set()
        self.agents: dict[str, AgentRecord] = {}
        self.removed_agents: dict[str, set[tuple[str, str]]] = {}  # id -> tasks reported LOST
        self.offers: dict[str, OfferRecord] = {}
        self.deferred_reconciles: list[tuple[str, str]] = []  # (framework, task) ids
        self.gone_agents: set[str] = set()  # marked gone by the operator: never readmitted
        self.weights: dict[str, float] = dict(config.weights)  # UPDATE_WEIGHTS changes them
        # role -> (guarantees, limits) by resource name, as UPDATE_QUOTA set them (mesoslite.quota)
        self.quotas: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        self.counters: Counter[str] = Counter()  # the metrics that count (mesoslite.metrics)
        self.subscribers = OperatorSubscribers()  # the operator API's event streams
        self.maintenance = maintenance.Maintenance()  # the schedule (mesoslite.maintenance)
        self._framework_seq = itertools.count()
        self._agent_seq = itertools.count(1)
        self._offer_seq = itertools.count(1)
        self._allocate_soon = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        for role, weight in sorted(config.weights.items()):
            allocator.set_weight(role, weight)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Lead: the re-registration window of `--agent-reregister-timeout` opens now."""
        self.started = self.clock()
        self.elected_time = time.time()
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
        self.subscribers.close()

    @property
    def pid(self) -> str:
        return f"master@{self.config.advertised_host}:{self.port}"

    def master_info(self) -> dict[str, Any]:
        host = self.config.advertised_host
        return {
            "id": self.id,
            "ip": ipv4_as_uint32(self.config.host),
            "port": self.port,
            "pid": self.pid,
            "hostname": host,
            "version": MESOS_VERSION,
            "address": {"hostname": host, "ip": self.config.host, "port": self.port},
        }

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

    def _recover(
        self, fid: str, role: str, aid: str, r: Resources, refuse: float | None = None
    ) -> None:
        """Resources the framework held in `role` come back to the allocator."""
        if not r.is_empty():
            self._alloc("recover", client_id(fid, role), aid, r, self.clock(), refuse)

    def task_role(self, task: TaskRecord) -> str:
        """The role the task's resources are allocated to (mesoslite.multirole)."""
        fw = self.frameworks.get(task.framework_id)
        return multirole.allocation_role(task.info, fw.role if fw is not None else "*")

    def _register_roles(
        self, fw: FrameworkRecord, before: tuple[str, ...], suppressed: Iterable[str]
    ) -> None:
        """The allocator offers to the framework once per role (mesoslite.allocator); roles it
        left are removed there (what they hold stays allocated until it comes back)."""
        now = self.clock()
        for role in before:
            if role not in fw.roles:
                self._alloc("remove_framework", client_id(fw.id, role))
        fw.suppressed_roles = set(suppressed) & set(fw.roles)
        for role in fw.roles:
            self._alloc("add_framework", client_id(fw.id, role), role, now)
            if role in fw.suppressed_roles:
                self._alloc("suppress", client_id(fw.id, role))

    def _suppress(self, fw: FrameworkRecord, roles: Iterable[str], suppress: bool) -> None:
        """SUPPRESS (or REVIVE: also clears its filters) the framework in these roles."""
        revived = False
        for role in roles:
            self._alloc("suppress" if suppress else "revive", client_id(fw.id, role))
            if suppress:
                fw.suppressed_roles.add(role)
            else:
                fw.suppressed_roles.discard(role)
                revived = True
        if revived:
            self.trigger_allocation()

    def trigger_allocation(self) -> None:
        self._allocate_soon.set()

    # -- frameworks: subscribe, disconnect, remove ----------------------------------------------

    def subscribe(
        self,
        call: dict[str, Any],
        principal: str | None = None,
    ) -> tuple[FrameworkRecord | None, EventStream]:
        """SUBSCRIBE: validate (InvalidCall), then a stream that starts with SUBSCRIBED or ERROR.

        `principal` is the one the request authenticated as (None: frameworks are not
        authenticated); FrameworkInfo.principal must be it, and is set to it when absent, as
        Mesos' Master::Http::scheduler does.
        """
        subscription = parse_subscribe(call)
        info_id = subscription.framework_id
        info = dict(subscription.framework_info)
        before: tuple[str, ...] = ()  # the roles it had in the allocator
        if principal is not None:
            claimed = info.setdefault("principal", principal)
            if claimed != principal:
                raise InvalidCall(_principal_mismatch(principal, claimed))
        stream = EventStream()
        now_wall = time.time()
        error = framework_roles_error(info)  # Mesos' validation::framework::validate
        if error is None:
            error = multirole.suppressed_roles_error(info, subscription.suppressed_roles)
        if error is None and info_id is not None and info_id in self.removed_framework_ids:
            error = "Framework has been removed"
        elif (
            error is None
            and principal is not None
            and info_id in self.frameworks
            and self.frameworks[info_id].info.get("principal") != principal
        ):
            # Mesos' validation::framework::validateUpdate: a known id is not taken over by
            # another principal.
            log.warning(
                "framework_principal_change_refused",
                framework_id=info_id,
                principal=principal,
                was=self.frameworks[info_id].info.get("principal"),
            )
            error = "Changing framework's principal is not allowed."
        if error is not None:
            stream.send({"type": "ERROR", "error": {"message": error}})
            stream.close()
            return None, stream
        if info_id is None:
            fid = f"{self.id}-{next(self._framework_seq):04d}"
            info["id"] = {"value": fid}
            fw = self.frameworks[fid] = FrameworkRecord(fid, info, now_wall)
            log.info("framework_subscribed", framework_id=fid, name=info["name"])
            fw.stream = stream
            self.subscribers.framework_added(fw)
        else:
            fid = info_id
            fw_or_none = self.frameworks.get(fid)
            if fw_or_none is None:  # known to a previous master, or to no one: adopt the id
                fw = self.frameworks[fid] = FrameworkRecord(fid, info, now_wall)
            else:
                fw = fw_or_none
                if fw.connected and fw.stream is not None:
                    fw.stream.send({"type": "ERROR", "error": {"message": "Framework failed over"}})
                    fw.stream.close()
                # Offers made to the previous subscription are void (Mesos removes them too).
                self._rescind_offers(fw.offers.values(), notify=False)
                before = () if fw.recovered else fw.roles
                keep: dict[str, Any] = {
                    k: fw.info[k] for k in _IMMUTABLE_FRAMEWORK_FIELDS if k in fw.info
                }
                fw.info = {**info, **keep}
                fw.reregistered_time = now_wall
            fw.recovered = False
            fw.failover_deadline = None
            log.info("framework_resubscribed", framework_id=fid, name=info["name"])
            fw.stream = stream
            if fw_or_none is None:
                self.subscribers.framework_added(fw)
            else:
                self.subscribers.framework_updated(fw)
        stream.send(
            {
                "type": "SUBSCRIBED",
                "subscribed": {
                    "framework_id": {"value": fid},
                    "heartbeat_interval_seconds": self.config.heartbeat_interval,
                    "master_info": self.master_info(),
                },
            }
        )
        self._register_roles(fw, before, subscription.suppressed_roles)
        for queue in fw.updates.values():
            self._send_update(fw, queue[0])
        self.trigger_allocation()
        return fw, stream

    def stream_closed(self, fw: FrameworkRecord, stream: EventStream) -> None:
        """The subscription connection ended (either side)."""
        stream.close()
        if fw.stream is not stream or self.frameworks.get(fw.id) is not fw:
            return  # replaced by a newer subscription, or removed already
        fw.stream = None
        self._rescind_offers(fw.offers.values(), notify=False)
        for role in fw.roles:  # deactivate: no offers until it comes back
            self._alloc("suppress", client_id(fw.id, role))
        timeout = fw.failover_timeout
        log.info("framework_disconnected", framework_id=fw.id, failover_timeout=timeout)
        self.subscribers.framework_updated(fw)
        if timeout <= 0:
            self.remove_framework(fw, "disconnected with failover_timeout 0")
        else:
            fw.failover_deadline = self.clock() + timeout

    def remove_framework(self, fw: FrameworkRecord, why: str) -> None:
        """TEARDOWN, or failover timeout: kill its tasks and forget it."""
        log.info("framework_removed", framework_id=fw.id, reason=why, tasks=len(fw.tasks))
        self._rescind_offers(fw.offers.values(), notify=False)
        agents_to_tell: set[str] = set()
        for task in list(fw.tasks.values()):
            agent = self.agents.get(task.agent_id)
            if not task.terminal:
                agents_to_tell.add(task.agent_id)
                status = task_status(
                    task.id,
                    KILLED,
                    agent_id=task.agent_id,
                    reason=REASON_FRAMEWORK_REMOVED,
                    message=f"Framework removed: {why}",
                    reliable=False,
                )
                self._apply_status(task, status, recover=True)
            if agent is not None:
                agent.tasks.pop((fw.id, task.id), None)
            fw.completed_tasks.append(task)
        fw.tasks.clear()
        fw.updates.clear()
        agents_to_tell |= set(fw.executors)  # idle executors too (Master::removeFramework)
        fw.executors.clear()
        for aid in sorted(agents_to_tell):
            agent = self.agents.get(aid)
            if agent is not None and agent.stream is not None:
                agent.stream.send(
                    {
                        "type": "SHUTDOWN_FRAMEWORK",
                        "shutdown_framework": {"framework_id": {"value": fw.id}},
                    }
                )
        for role in fw.roles:
            self._alloc("remove_framework", client_id(fw.id, role))
        if fw.stream is not None:
            fw.stream.close()
            fw.stream = None
        fw.unregistered_time = time.time()
        del self.frameworks[fw.id]
        self.completed_frameworks.append(fw)
        self.removed_framework_ids.add(fw.id)
        self.subscribers.framework_removed(fw)

    # -- calls from subscribed frameworks -------------------------------------------------------

    def framework_for_call(
        self,
        call: dict[str, Any],
        stream_id: str | None,
        principal: str | None = None,
    ) -> FrameworkRecord:
        """The subscribed framework a non-SUBSCRIBE call is from, or InvalidCall saying why not."""
        fid = id_of(call, "framework_id")
        fw = self.frameworks.get(fid)
        if fw is None:
            raise InvalidCall("Framework cannot be found")
        if principal is not None and principal != fw.info.get("principal"):
            raise InvalidCall(_principal_mismatch(principal, fw.info.get("principal", "")))
        if not fw.connected or fw.stream is None:
            raise InvalidCall("Framework is not subscribed", 403)
        if stream_id is None:
            raise InvalidCall("All non-subscribe calls should include the 'Mesos-Stream-Id' header")
        if stream_id != fw.stream.id:
            raise InvalidCall(
                f"The stream ID '{stream_id}' included in this request didn't match the stream"
                f" ID currently associated with framework ID {fid}"
            )
        return fw

    def handle_call(self, fw: FrameworkRecord, call: dict[str, Any]) -> dict[str, Any] | None:
        """One non-SUBSCRIBE call; None means 202 Accepted, a dict a 200 with that body."""
        kind = call["type"]
        if kind == "TEARDOWN":
            self.remove_framework(fw, "TEARDOWN")
        elif kind == "ACCEPT":
            self.accept(fw, sub_message(call, "accept"))
        elif kind == "DECLINE":
            self.decline(fw, sub_message(call, "decline"))
        elif kind in ("REVIVE", "SUPPRESS"):
            named = parse_roles(call, kind.lower(), fw.roles)
            self._suppress(fw, [r for r in fw.roles if r in named], kind == "SUPPRESS")
        elif kind == "KILL":
            self.kill(fw, *parse_kill(call))
        elif kind == "SHUTDOWN":
            executor_id = parse_shutdown(call)
            if executors.shutdown(self, fw, call):
                pass  # a custom executor (mesoslite.executors)
            elif executor_id in fw.tasks:  # the command executor's id is its task's id
                self.kill(fw, executor_id, None)
        elif kind == "ACKNOWLEDGE":
            self.acknowledge(fw, *parse_acknowledge(call))
        elif kind == "RECONCILE":
            self.reconcile(fw, parse_reconcile(call))
        elif kind == "MESSAGE":
            self.message(fw, *parse_message(call))
        elif kind == "UPDATE_FRAMEWORK":
            self.update_framework(fw, sub_message(call, "update_framework"))
            return {}
        elif kind == "RECONCILE_OPERATIONS":
            return {
                "type": "RECONCILE_OPERATIONS",
                "reconcile_operations": {"operation_statuses": []},
            }
        elif kind in ("ACCEPT_INVERSE_OFFERS", "DECLINE_INVERSE_OFFERS"):
            accepted = kind == "ACCEPT_INVERSE_OFFERS"
            maintenance.answer_inverse_offers(self, fw, call, accepted)
        # REQUEST (Mesos' allocator ignores it too) and operation acknowledgements (no
        # operation feedback) are accepted and have no effect.
        return None

    def accept(self, fw: FrameworkRecord, accept: dict[str, Any]) -> None:
        ids, launches, refuse = parse_accept(accept)
        groups = executors.task_groups(accept)
        error = None if ids else "No offers specified"
        taken: list[OfferRecord] = []
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
        error = multirole.aggregated_offers_problem([(o.id, o.role) for o in taken]) or error
        for offer in taken:
            self._remove_offer(offer)
        if error is not None:
            log.info("accept_invalid_offers", framework_id=fw.id, error=error)
            for offer in taken:
                self._recover(fw.id, offer.role, offer.agent_id, offer.resources)
            state = DROPPED if fw.partition_aware else LOST
            for _kind, tinfo in launches:
                # agent_id as the TaskInfo names it: schedulers echo it in the ACKNOWLEDGE
                # (pymesos' acknowledgeStatusUpdate needs it in every status with a uuid).
                self._forward(
                    fw,
                    task_status(
                        task_id_of(tinfo),
                        state,
                        agent_id=tinfo["agent_id"]["value"],
                        reason=REASON_INVALID_OFFERS,
                        message=f"Task launched with invalid offers: {error}",
                    ),
                    from_agent=False,
                )
            return

        agent = self.agents[taken[0].agent_id]
        role = taken[0].role
        remaining = Resources()
        for offer in taken:
            remaining = remaining + offer.resources
        seen: set[str] = set()
        for kind, tinfo in launches:
            if kind == "LAUNCH_GROUP":
                continue  # each group as a whole, below
            problem = multirole.launch_problem(tinfo, role) or self._task_problem(
                fw, agent, tinfo, seen
            )
            task_id = task_id_of(tinfo)
            seen.add(task_id)
            resources = Resources()
            if problem is None:
                resources = Resources.from_mesos(tinfo.get("resources") or [])
                if "executor" in tinfo:
                    resources += executors.executor_resources(agent, fw.id, tinfo["executor"])
                if not remaining.contains(resources):
                    problem = f"Task uses more resources {resources} than available {remaining}"
            if problem is not None:
                log.info("task_invalid", framework_id=fw.id, task_id=task_id, error=problem)
                self._forward(
                    fw,
                    task_status(
                        task_id,
                        ERROR,
                        agent_id=agent.id,
                        reason=REASON_TASK_INVALID,
                        message=problem,
                    ),
                    from_agent=False,
                )
                continue
            remaining = remaining - resources
            self._launch(fw, agent, tinfo, resources)
        for executor, tasks in groups:
            for tinfo in tasks:
                multirole.inject_allocation_role(tinfo.get("resources") or [], role)
            multirole.inject_allocation_role(executor.get("resources") or [], role)
            remaining = executors.launch_group(self, fw, agent, executor, tasks, remaining, seen)
        self._recover(fw.id, role, agent.id, remaining, refuse)

    def _task_problem(
        self,
        fw: FrameworkRecord,
        agent: AgentRecord,
        tinfo: dict[str, Any],
        seen: set[str],
    ) -> str | None:
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
            )
        if "executor" in tinfo:
            if "command" in tinfo:
                return executors.BOTH_OR_NEITHER
            executor_problem = executors.problem(fw.id, agent, tinfo["executor"])
            if executor_problem is not None:
                return executor_problem
        command = executors.command_of(tinfo)
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
        ):
            return "CommandInfo.environment.variables must be a list of {name, value}"
        uris_problem = fetcher.problem(command) or container.problem(
            tinfo.get("container"), "TaskInfo.container"
        )
        if uris_problem is not None:
            return uris_problem
        if "health_check" in tinfo:
            check_problem = health.problem(tinfo["health_check"])
            if check_problem is not None:
                return f"Task uses invalid health check: {check_problem}"
        resources = tinfo.get("resources") or []
        for r in resources:
            if r.get("name") not in SCALARS and r.get("name") != "ports" and r["type"] != "SCALAR":
                return f"Resource {r.get('name')!r} of type {r['type']} is not offered by mesoslite"
        try:
            Resources.from_mesos(resources)
        except ResourceError as e:
            return f"Invalid resources: {e}"
        return None

    def _launch(
        self,
        fw: FrameworkRecord,
        agent: AgentRecord,
        tinfo: dict[str, Any],
        r: Resources,
        send: bool = True,
    ) -> None:
        """Record the task on the agent; `send` it RUN_TASK (a task group goes as a whole)."""
        task = TaskRecord(fw.id, agent.id, tinfo, r)
        task.statuses.append({"state": STAGING, "timestamp": time.time()})
        fw.tasks[task.id] = task
        agent.tasks[(fw.id, task.id)] = task
        agent.used = agent.used + r
        if isinstance(tinfo.get("executor"), dict):
            fw.add_executor(agent.id, tinfo["executor"])
        self.subscribers.task_added(task, fw)
        if send and agent.stream is not None:
            agent.stream.send(
                {"type": "RUN_TASK", "run_task": {"framework_info": fw.info, "task": tinfo}}
            )

    def decline(self, fw: FrameworkRecord, decline: dict[str, Any]) -> None:
        ids, refuse = parse_decline(decline)
        for oid in ids:
            offer = self.offers.get(oid)
            if offer is None or offer.framework_id != fw.id:
                log.debug("decline_unknown_offer", framework_id=fw.id, offer_id=oid)
                continue
            self._remove_offer(offer)
            self._recover(fw.id, offer.role, offer.agent_id, offer.resources, refuse)

    def kill(self, fw: FrameworkRecord, task_id: str, kill_policy: Any) -> None:
        task = fw.tasks.get(task_id)
        if task is None:
            unreachable = fw.unreachable_tasks.get(task_id)
            if unreachable is not None:
                unreachable.kill_requested = True  # when (if) its agent comes back
                return
            state = UNKNOWN if fw.partition_aware else LOST
            fw.send(
                update_event(
                    task_status(
                        task_id,
                        state,
                        reason=REASON_RECONCILIATION,
                        message="Attempted to kill an unknown task",
                        reliable=False,
                    )
                )
            )
            return
        if task.terminal:
            return
        task.kill_policy = kill_policy if isinstance(kill_policy, dict) else None
        agent = self.agents.get(task.agent_id)
        if agent is None or agent.stream is None:
            task.kill_requested = True
            return
        self._send_kill(agent, task)

    def _send_kill(self, agent: AgentRecord, task: TaskRecord) -> None:
        kill: dict[str, Any] = {
            "framework_id": {"value": task.framework_id},
            "task_id": {"value": task.id},
        }
        if task.kill_policy:
            kill["kill_policy"] = task.kill_policy
        if agent.stream is not None:
            agent.stream.send({"type": "KILL_TASK", "kill_task": kill})

    def acknowledge(self, fw: FrameworkRecord, task_id: str, status_uuid: str) -> None:
        queue = fw.updates.get(task_id)
        if not queue or queue[0].uuid != status_uuid:
            log.debug("ack_ignored", framework_id=fw.id, task_id=task_id, uuid=status_uuid)
            return
        update = queue.popleft()
        if update.from_agent:
            agent = self.agents.get(str(update.status.get("agent_id", {}).get("value", "")))
            if agent is not None and agent.stream is not None:
                agent.stream.send(
                    {
                        "type": "ACKNOWLEDGE",
                        "acknowledge": {
                            "framework_id": {"value": fw.id},
                            "task_id": {"value": task_id},
                            "uuid": status_uuid,
                        },
                    }
                )
        if queue:
            self._send_update(fw, queue[0])
        else:
            del fw.updates[task_id]
            task = fw.tasks.get(task_id)
            if task is not None and task.terminal:
                self._complete_task(fw, task)

    def _complete_task(self, fw: FrameworkRecord, task: TaskRecord) -> None:
        fw.tasks.pop(task.id, None)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.pop((fw.id, task.id), None)
        fw.completed_tasks.append(task)

    def reconcile(self, fw: FrameworkRecord, task_ids: list[str]) -> None:
        if not task_ids:  # implicit: everything the master knows of this framework
            for task in list(fw.tasks.values()) + list(fw.unreachable_tasks.values()):
                self._send_reconciled(fw, task.id, task.state, task.agent_id)
            return
        for task_id in task_ids:
            self._reconcile_one(fw, task_id, defer=True)

    def _reconcile_one(self, fw: FrameworkRecord, task_id: str, defer: bool) -> None:
        task = fw.tasks.get(task_id) or fw.unreachable_tasks.get(task_id)
        if task is None:
            task = next((t for t in fw.completed_tasks if t.id == task_id), None)
        if task is not None:
            self._send_reconciled(fw, task_id, task.state, task.agent_id)
        elif defer and self.clock() < self.started + self.config.agent_reregister_timeout:
            self.deferred_reconciles.append((fw.id, task_id))
        else:
            self._send_reconciled(fw, task_id, UNKNOWN if fw.partition_aware else LOST, None)

    def _send_reconciled(
        self, fw: FrameworkRecord, task_id: str, state: str, agent_id: str | None
    ) -> None:
        fw.send(
            update_event(
                task_status(
                    task_id,
                    state,
                    agent_id=agent_id,
                    reason=REASON_RECONCILIATION,
                    message="Reconciliation: latest task state",
                    reliable=False,
                )
            )
        )

    def message(self, fw: FrameworkRecord, agent_id: str, executor_id: str, data: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is None or agent.stream is None:
            log.info("framework_message_dropped", framework_id=fw.id, agent_id=agent_id)
            return
        agent.stream.send(
            {
                "type": "FRAMEWORK_MESSAGE",
                "framework_message": {
                    "framework_id": {"value": fw.id},
                    "executor_id": {"value": executor_id},
                    "data": data,
                },
            }
        )

    def update_framework(self, fw: FrameworkRecord, update: dict[str, Any]) -> None:
        info = update.get("framework_info")
        if (
            not isinstance(info, dict)
            or id_of(info, "id", "update_framework.framework_info") != fw.id
        ):
            raise InvalidCall("'update_framework.framework_info.id' must be the framework's id")
        roles_error = framework_roles_error(info) or multirole.suppressed_roles_error(
            info, update.get("suppressed_roles") or []
        )
        if roles_error is not None:
            raise InvalidCall(roles_error)
        if multirole.framework_roles(info) != fw.roles:
            raise InvalidCall("mesoslite does not support changing a framework's roles")
        keep: dict[str, Any] = {k: fw.info[k] for k in _IMMUTABLE_FRAMEWORK_FIELDS if k in fw.info}
        fw.info = {**info, **keep}
        wanted = {r for r in fw.roles if r in (update.get("suppressed_roles") or [])}
        self._suppress(fw, sorted(wanted - fw.suppressed_roles), True)
        self._suppress(fw, sorted(fw.suppressed_roles - wanted), False)
        self.subscribers.framework_updated(fw)

    # -- status updates -------------------------------------------------------------------------

    def _apply_status(self, task: TaskRecord, status: dict[str, Any], recover: bool) -> None:
        """The task's latest state; resources come back once, on the first terminal state."""
        was_terminal = task.terminal
        task.state = status["state"]
        entry = {"state": task.state, "timestamp": status.get("timestamp")}
        if "healthy" in status:
            entry["healthy"] = status["healthy"]
        task.statuses.append(entry)
        del task.statuses[:-STATUS_HISTORY_KEPT]
        self.subscribers.task_updated(task, status)
        if task.terminal and not was_terminal:
            self.counters["master/tasks_" + task.state.removeprefix("TASK_").lower()] += 1
            agent = self.agents.get(task.agent_id)
            if agent is not None:
                try:
                    agent.used = agent.used - task.resources
                except ResourceError:
                    agent.recompute_used()
                if recover and agent.in_allocator:
                    self._recover(task.framework_id, self.task_role(task), agent.id, task.resources)

    def _forward(self, fw: FrameworkRecord, status: dict[str, Any], from_agent: bool) -> None:
        """Deliver a status: reliable ones (with a uuid) queue per task until acknowledged."""
        if "uuid" not in status:
            fw.send(update_event(status))
            return
        task_id = status["task_id"]["value"]
        queue = fw.updates.setdefault(task_id, deque())
        if any(u.uuid == status["uuid"] for u in queue):
            return  # a duplicate (an agent re-sent it)
        update = Update(status, from_agent)
        queue.append(update)
        if len(queue) == 1:
            self._send_update(fw, update)

    def _send_update(self, fw: FrameworkRecord, update: Update) -> None:
        if not fw.connected:
            return
        fw.send(update_event(update.status))
        update.attempts += 1
        backoff = self.config.status_update_retry_min * 2 ** (update.attempts - 1)
        update.next_send = self.clock() + min(backoff, self.config.status_update_retry_max)

    # -- offers ---------------------------------------------------------------------------------

    def _remove_offer(self, offer: OfferRecord) -> None:
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

    def _rescind_offers(self, offers: Iterable[OfferRecord], notify: bool = True) -> None:
        for offer in list(offers):
            self._remove_offer(offer)
            agent = self.agents.get(offer.agent_id)
            if agent is not None and agent.in_allocator:
                self._recover(offer.framework_id, offer.role, offer.agent_id, offer.resources)
            fw = self.frameworks.get(offer.framework_id)
            if notify and fw is not None:
                fw.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.id}}})

    def allocate(self) -> int:
        """One allocation cycle: Grants -> Offers, one OFFERS event per framework."""
        now = self.clock()
        grants = self._alloc("allocate", now) or []
        batches: dict[str, list[dict[str, Any]]] = {}
        for grant in grants:
            fid, role = client_parts(grant.framework_id)
            fw = self.frameworks.get(fid)
            agent = self.agents.get(grant.agent_id)
            problem = None
            if fw is None or not fw.connected:
                problem = "framework not connected"
            elif role not in fw.roles:
                problem = f"framework not in role {role}"
            elif agent is None or not agent.connected:
                problem = "agent not connected"
            else:
                try:
                    if not agent.free().contains(grant.resources):
                        problem = f"grant exceeds the agent's free {agent.free()}"
                except ResourceError:
                    problem = "agent accounting over-committed"
            if problem is not None or fw is None or agent is None:
                log.warning(
                    "grant_dropped",
                    framework_id=fid,
                    role=role,
                    agent_id=grant.agent_id,
                    resources=str(grant.resources),
                    why=problem,
                )
                self._recover(fid, role, grant.agent_id, grant.resources)
                continue
            offer = OfferRecord(
                f"{self.id}-O{next(self._offer_seq)}", fw.id, agent.id, grant.resources, now, role
            )
            self.offers[offer.id] = offer
            fw.offers[offer.id] = offer
            agent.offered = agent.offered + offer.resources
            message = offer_message(offer, agent, offer.role)
            unavailability = self.maintenance.unavailability(agent)
            if unavailability is not None:
                message["unavailability"] = unavailability
            batches.setdefault(fw.id, []).append(message)
        for fid, offers in batches.items():
            self.frameworks[fid].send({"type": "OFFERS", "offers": {"offers": offers}})
        maintenance.send_inverse_offers(self)
        return sum(len(o) for o in batches.values())

    # -- agents ---------------------------------------------------------------------------------

    def register_agent(self, call: dict[str, Any]) -> tuple[AgentRecord, EventStream]:
        """REGISTER (first time, or again with its id after a disconnection or a master restart)."""
        reg = parse_registration(call)
        running = reported_executors(call)  # None from an agent that does not report them
        if reg.agent_id in self.gone_agents:
            raise InvalidCall(f"Agent {reg.agent_id} has been marked gone by the operator", 403)
        if self.maintenance.is_down(reg.hostname):
            raise InvalidCall(f"The machine of agent {reg.hostname} is down for maintenance", 403)
        aid, hostname, port, total, attributes = (
            reg.agent_id,
            reg.hostname,
            reg.port,
            reg.total,
            reg.attributes,
        )
        stream = EventStream()
        now_wall = time.time()
        lost_keys: set[tuple[str, str]] = set()
        agent = self.agents.get(aid) if aid else None
        if agent is not None:  # a reconnection: drop the old incarnation's offers and stream
            self._deactivate_agent(agent)
            agent.hostname, agent.port, agent.total, agent.attributes = (
                hostname,
                port,
                total,
                attributes,
            )
            agent.reregistered_time = now_wall
            event = "agent_reregistered"
            self.counters["master/slave_reregistrations"] += 1
        else:
            if aid is None:
                aid = f"{self.id}-S{next(self._agent_seq)}"
                event = "agent_registered"
            else:
                lost_keys = self.removed_agents.pop(aid, set())
                event = "agent_readmitted" if lost_keys else "agent_recovered"
            agent = self.agents[aid] = AgentRecord(aid, hostname, port, total, attributes, now_wall)
            self.counters[
                "master/slave_registrations"
                if event == "agent_registered"
                else "master/slave_reregistrations"
            ] += 1
            self.subscribers.agent_added(agent)
        agent.stream = stream
        agent.ping_seq = agent.pong_seq = agent.missed_pings = 0
        stream.send(
            {
                "type": "REGISTERED",
                "registered": {
                    "agent_id": {"value": aid},
                    "master_info": self.master_info(),
                    "ping_interval_seconds": self.config.agent_ping_timeout,
                },
            }
        )

        self._reconcile_agent_tasks(agent, reg.tasks, lost_keys)
        if running is not None:
            self._reconcile_agent_executors(agent, running)
        agent.recompute_used()
        if not agent.deactivated:
            self.offer_agent(agent)
        log.info(
            event,
            agent_id=aid,
            hostname=hostname,
            resources=str(total),
            tasks=sum(1 for t in agent.tasks.values() if not t.terminal),
        )
        self.trigger_allocation()
        return agent, stream

    def offer_agent(self, agent: AgentRecord) -> None:
        """Hand the agent to the allocator, with what its tasks hold, so that it is offered."""
        allocated: dict[str, Resources] = {}
        for task in agent.tasks.values():
            if not task.terminal:
                client = client_id(task.framework_id, self.task_role(task))
                allocated[client] = allocated.get(client, Resources()) + task.resources
        # A failure here leaves the agent connected but never offered (logged as an error).
        agent.in_allocator = self._alloc_ok("add_agent", agent.id, agent.total, allocated)
        self.trigger_allocation()

    def withhold_agent(self, agent: AgentRecord) -> None:
        """No more offers of the agent: its outstanding ones rescinded, out of the allocator."""
        self._rescind_offers([o for o in self.offers.values() if o.agent_id == agent.id])
        if agent.in_allocator:
            self._alloc("remove_agent", agent.id)
            agent.in_allocator = False

    def _reconcile_agent_tasks(
        self,
        agent: AgentRecord,
        reported: dict[tuple[str, str], dict[str, Any]],
        lost_keys: set[tuple[str, str]],
    ) -> None:
        """Make the master's view of the agent's tasks match what the agent reports."""
        for key, missing in list(agent.tasks.items()):
            if key in reported or missing.terminal:
                continue
            fw = self.frameworks.get(missing.framework_id)
            if fw is None:
                continue
            state = (DROPPED if missing.state == STAGING else GONE) if fw.partition_aware else LOST
            status = task_status(
                missing.id,
                state,
                agent_id=agent.id,
                reason=REASON_AGENT_RESTARTED,
                message="The agent re-registered without this task",
            )
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
                self._send_kill(agent, TaskRecord(fid, agent.id, entry["task"], entry["resources"]))
                continue
            state = entry["state"]
            task: TaskRecord | None = fw.tasks.get(tid)
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
                task = TaskRecord(fid, agent.id, entry["task"], entry["resources"], state)
                fw.tasks[tid] = task
                self.subscribers.task_added(task, fw)
            task.agent_id = agent.id
            agent.tasks[(fid, tid)] = task
            if state not in TERMINAL and isinstance(entry["task"].get("executor"), dict):
                fw.add_executor(agent.id, entry["task"]["executor"])
            if task.state != state:
                task.state = state
                task.statuses.append({"state": state, "timestamp": time.time()})
            for status in entry["updates"]:
                self._forward(fw, status, from_agent=True)
            if readopted:
                self._forward(
                    fw,
                    task_status(
                        tid,
                        state,
                        agent_id=agent.id,
                        source=SOURCE_MASTER,
                        message="The agent of this task re-registered",
                    ),
                    from_agent=False,
                )
            if task.kill_requested and not task.terminal:
                task.kill_requested = False
                self._send_kill(agent, task)
        for fid in sorted(kill_frameworks):
            if agent.stream is not None:
                agent.stream.send(
                    {
                        "type": "SHUTDOWN_FRAMEWORK",
                        "shutdown_framework": {"framework_id": {"value": fid}},
                    }
                )

    def _reconcile_agent_executors(
        self, agent: AgentRecord, running: dict[str, ReportedExecutors]
    ) -> None:
        """What the agent runs replaces what the master knew there; a removed framework's
        executors are shut down (Master::reconcileKnownSlave)."""
        for fid, reported in running.items():
            if fid in self.removed_framework_ids and fid not in self.frameworks:
                if agent.stream is not None:
                    agent.stream.send(
                        {
                            "type": "SHUTDOWN_FRAMEWORK",
                            "shutdown_framework": {"framework_id": {"value": fid}},
                        }
                    )
            elif fid not in self.frameworks:
                self._recover_framework(fid, reported.framework_info)
        for fw in self.frameworks.values():
            fw.set_executors(agent.id, running[fw.id].infos if fw.id in running else [])

    def _recover_framework(self, fid: str, info: dict[str, Any]) -> FrameworkRecord:
        """A framework known only from an agent's report (the master restarted)."""
        info = {**info, "id": {"value": fid}}
        fw = self.frameworks[fid] = FrameworkRecord(fid, info, time.time(), recovered=True)
        timeout = fw.failover_timeout
        # It cannot have been disconnected for longer than this master has been up; give it its
        # whole failover timeout from now, at least the re-registration window.
        fw.failover_deadline = self.clock() + max(timeout, self.config.agent_reregister_timeout)
        log.info("framework_recovered", framework_id=fid, name=info.get("name"))
        self.subscribers.framework_added(fw)
        return fw

    def _ack_to_agent(self, agent: AgentRecord, fid: str, tid: str, status_uuid: str) -> None:
        if agent.stream is not None:
            agent.stream.send(
                {
                    "type": "ACKNOWLEDGE",
                    "acknowledge": {
                        "framework_id": {"value": fid},
                        "task_id": {"value": tid},
                        "uuid": status_uuid,
                    },
                }
            )

    def agent_stream_closed(self, agent: AgentRecord, stream: EventStream) -> None:
        stream.close()
        if agent.stream is not stream or self.agents.get(agent.id) is not agent:
            return
        log.info("agent_disconnected", agent_id=agent.id, hostname=agent.hostname)
        self._deactivate_agent(agent)

    def _deactivate_agent(self, agent: AgentRecord) -> None:
        """No more offers from it: rescind the outstanding ones, take it out of the allocator."""
        if agent.stream is not None:
            agent.stream.close()
            agent.stream = None
        self.withhold_agent(agent)

    def mark_agent_gone(self, agent: AgentRecord, why: str) -> None:
        """The operator says it will never come back (MARK_AGENT_GONE, or drained with
        `mark_gone`): its tasks are killed there and TASK_GONE_BY_OPERATOR here, and it may not
        register again (Mesos' Master::markGone)."""
        self.gone_agents.add(agent.id)
        self.stop_tasks_on(agent)
        self.remove_agent(agent, why, gone=True)

    def stop_tasks_on(self, agent: AgentRecord) -> None:
        """Have the agent kill every task it runs (the master is about to write them off)."""
        if agent.stream is not None:
            for fid in sorted({fid for (fid, _), t in agent.tasks.items() if not t.terminal}):
                agent.stream.send(
                    {
                        "type": "SHUTDOWN_FRAMEWORK",
                        "shutdown_framework": {"framework_id": {"value": fid}},
                    }
                )

    def remove_agent(self, agent: AgentRecord, why: str, gone: bool = False) -> None:
        """The agent is gone: its tasks are LOST (UNREACHABLE to partition-aware frameworks;
        GONE_BY_OPERATOR if the operator said so)."""
        log.warning("agent_removed", agent_id=agent.id, hostname=agent.hostname, reason=why)
        self.counters["master/slave_removals"] += 1
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
            state = GONE_BY_OPERATOR if gone else UNREACHABLE if fw.partition_aware else LOST
            status = task_status(
                tid,
                state,
                agent_id=agent.id,
                reason=REASON_AGENT_REMOVED_BY_OPERATOR if gone else REASON_AGENT_REMOVED,
                message=f"Agent {agent.hostname} ({agent.id}) removed: {why}",
            )
            self._apply_status(task, status, recover=False)
            fw.tasks.pop(tid, None)
            if fw.partition_aware and not gone:
                fw.unreachable_tasks[tid] = task
            else:
                fw.completed_tasks.append(task)
                lost.add((fid, tid))
            self._forward(fw, status, from_agent=False)
        del self.agents[agent.id]
        if not gone:
            self.removed_agents[agent.id] = lost
        self.subscribers.agent_removed(agent.id)
        for fw in self.frameworks.values():
            fw.executors.pop(agent.id, None)
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
            for fid, status in parse_status_updates(call):
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
                fw.send(
                    {
                        "type": "MESSAGE",
                        "message": {
                            "agent_id": {"value": aid},
                            "executor_id": {"value": executor_id},
                            "data": msg["data"],
                        },
                    }
                )
        elif kind == "EXECUTOR_EXITED":
            executors.exited(self, agent, call)
        elif kind == "UNREGISTER":
            self.remove_agent(agent, "the agent shut down")
        else:
            raise InvalidCall(f"Unknown agent call type {kind!r}")

    def agent_status_update(self, agent: AgentRecord, fid: str, status: dict[str, Any]) -> None:
        tid = status["task_id"]["value"]
        fw = self.frameworks.get(fid)
        task = fw.tasks.get(tid) if fw is not None else None
        if fw is None or task is None or task.agent_id != agent.id:
            # Its framework was removed or the task written off: nobody to tell. Acknowledge it
            # for the framework, or the agent would keep it forever.
            log.info(
                "update_for_unknown_task",
                agent_id=agent.id,
                framework_id=fid,
                task_id=tid,
                state=status["state"],
            )
            if "uuid" in status:
                self._ack_to_agent(agent, fid, tid, status["uuid"])
            return
        if "uuid" in status and any(u.uuid == status["uuid"] for u in fw.updates.get(tid, ())):
            return  # a duplicate
        drain = agent.drain or {}
        if drain.get("config", {}).get("mark_gone") and status["state"] in TERMINAL:
            # Draining to be marked gone: the end of a task is TASK_GONE_BY_OPERATOR, as
            # Mesos' agent rewrites it (DrainConfig.mark_gone).
            status = {**status, "state": GONE_BY_OPERATOR}
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
            self.subscribers.heartbeat()

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
                )
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
            if (
                fw.failover_deadline is not None
                and not fw.connected
                and now >= fw.failover_deadline
            ):
                self.remove_framework(fw, "failover timeout")
                continue
            if fw.connected:
                for queue in fw.updates.values():
                    if queue[0].attempts and now >= queue[0].next_send:
                        log.debug(
                            "status_update_resent",
                            framework_id=fw.id,
                            task_id=queue[0].status["task_id"]["value"],
                        )
                        self._send_update(fw, queue[0])
        if self.config.offer_timeout is not None:
            expired = [
                o for o in self.offers.values() if now - o.created >= self.config.offer_timeout
            ]
            self._rescind_offers(expired)
        for agent in [a for a in self.agents.values() if a.drain is not None]:
            maintenance.check_drained(self, agent)
        if self.deferred_reconciles and now >= self.started + self.config.agent_reregister_timeout:
            deferred, self.deferred_reconciles = self.deferred_reconciles, []
            for fid, tid in deferred:
                fw_or_none = self.frameworks.get(fid)
                if fw_or_none is not None:
                    self._reconcile_one(fw_or_none, tid, defer=False)

    # -- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        now_wall = time.time()
        flags = {k: str(v) for k, v in sorted(flag_values(self.config).items())}
        state: dict[str, Any] = {
            "version": MESOS_VERSION,
            "id": self.id,
            "pid": self.pid,
            "hostname": self.config.advertised_host,
            "leader": self.pid,
            "leader_info": self.master_info(),
            "start_time": self.start_time,
            "build_user": "mesoslite",
            "activated_slaves": sum(
                1 for a in self.agents.values() if a.connected and not a.deactivated
            ),
            "deactivated_slaves": sum(
                1 for a in self.agents.values() if not a.connected or a.deactivated
            ),
            "unreachable_slaves": len(self.removed_agents),
            "flags": flags,
            "slaves": [agent_json(a) for a in self.agents.values()],
            "frameworks": [framework_json(f, now_wall) for f in self.frameworks.values()],
            "completed_frameworks": [
                framework_json(f, now_wall) for f in self.completed_frameworks
            ],
            "unregistered_frameworks": [],
            "orphan_tasks": [],
        }
        if self.elected_time is not None:
            state["elected_time"] = self.elected_time
        return state


def _principal_mismatch(principal: str, claimed: str) -> str:
    return (
        f"Authenticated principal '{principal}' does not match principal '{claimed}'"
        " set in `FrameworkInfo`"
    )


if __name__ == "__main__":  # `python -m mesoslite.master`, as adapters/cli/up.py starts it
    from mesoslite.master_main import main

    raise SystemExit(main())

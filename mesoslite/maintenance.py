"""Maintenance, as Mesos' operator calls define it (master.proto Call.DrainAgent,
DeactivateAgent, ReactivateAgent, UpdateMaintenanceSchedule; src/master/http.cpp,
src/master/maintenance.cpp):

- DEACTIVATE_AGENT: no more offers of the agent (outstanding ones are rescinded); its tasks go
  on. REACTIVATE_AGENT undoes it (400 "Agent is not deactivated" otherwise, and "Agent is still
  in the DRAINING state" while it drains).
- DRAIN_AGENT: deactivates it and kills every task on it, each with its own kill policy's grace
  period but at most `max_grace_period` (a task without a kill policy gets that bound). The
  agent's DrainInfo is DRAINING until no task is left on it (all terminal and acknowledged),
  then DRAINED; with `mark_gone` the tasks end as TASK_GONE_BY_OPERATOR and the drained agent is
  marked gone. An unknown agent is 400 "Unknown agent".
- UPDATE_MAINTENANCE_SCHEDULE: windows of machines (`{hostname, ip}`) and their
  `unavailability`. A machine in the schedule is DRAINING: offers of its agents carry the
  `unavailability`, and each framework with tasks there gets one inverse offer per agent
  (INVERSE_OFFERS event); its ACCEPT_INVERSE_OFFERS or DECLINE_INVERSE_OFFERS is what
  GET_MAINTENANCE_STATUS reports for the machine. A framework that answered is not asked again
  until the schedule changes that machine's window; a new schedule rescinds the outstanding
  inverse offers (RESCIND_INVERSE_OFFER). A machine id names an agent when each field it gives
  equals the agent's (hostname case-insensitively; mesoslite agents' ip is their hostname when
  that is an address). Validation and messages are Mesos': no machines, neither hostname nor
  ip, an ip that is not IPv4, a machine twice, a negative duration, a DOWN machine left out:
  400, nothing changed.
- START_MAINTENANCE: scheduled (DRAINING) machines go DOWN: their agents are told to kill
  every task and removed (tasks TASK_LOST, or UNREACHABLE to partition-aware frameworks), and
  an agent of a DOWN machine is refused (403) when it registers. STOP_MAINTENANCE brings DOWN
  machines UP: out of the schedule, their agents welcome again. Mesos' messages for a machine
  not scheduled, not DRAINING or not DOWN (400).

None of this survives a master restart (mesoslite persists nothing).
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from mesoslite.protocol import InvalidCall, id_of, sub_message
from mesoslite.state import AgentRecord, FrameworkRecord

if TYPE_CHECKING:
    from mesoslite.master import MesosliteMaster

log = structlog.get_logger()

DRAINING = "DRAINING"
DRAINED = "DRAINED"
Machine = tuple[str, str]  # (hostname, ip) as given in a MachineID, "" for absent


def machine_id(machine: Machine) -> dict[str, str]:
    hostname, ip = machine
    out = {}
    if hostname:
        out["hostname"] = hostname
    if ip:
        out["ip"] = ip
    return out


def _ip_of(hostname: str) -> str:
    try:
        return str(ipaddress.IPv4Address(hostname))
    except ValueError:
        return ""


def names(machine: Machine, hostname: str) -> bool:
    """Whether a MachineID names the agent at `hostname`."""
    name, ip = machine
    if name and name.lower() != hostname.lower():
        return False
    return not ip or ip == _ip_of(hostname)


def _shown(machine: Machine) -> str:
    return orjson.dumps(machine_id(machine)).decode()


def parse_duration(value: Any, where: str) -> int:
    """A google.protobuf.Duration `{"seconds", "nanos"}` (or a DurationInfo `{"nanoseconds"}`)
    in nanoseconds, >= 0."""
    if not isinstance(value, dict):
        raise InvalidCall(f"'{where}' must be a Duration object")
    try:
        if "nanoseconds" in value:
            ns = int(value["nanoseconds"])
        else:
            ns = int(value.get("seconds", 0)) * 1_000_000_000 + int(value.get("nanos", 0))
    except (TypeError, ValueError):
        raise InvalidCall(f"'{where}' must hold integer seconds and nanos") from None
    if ns < 0:
        raise InvalidCall(f"'{where}' must not be negative")
    return ns


class Maintenance:
    """The schedule and the frameworks' answers to its inverse offers."""

    def __init__(self) -> None:
        self.windows: list[dict[str, Any]] = []  # as given, checked
        self.answers: dict[Machine, dict[str, dict[str, Any]]] = {}  # fid -> InverseOfferStatus
        self.down: set[Machine] = set()  # START_MAINTENANCE'd
        self._seq = itertools.count(1)

    def machines(self) -> dict[Machine, dict[str, Any]]:
        """Every scheduled machine and its window's unavailability."""
        out: dict[Machine, dict[str, Any]] = {}
        for window in self.windows:
            for mid in window["machine_ids"]:
                out[(mid.get("hostname", ""), mid.get("ip", ""))] = window["unavailability"]
        return out

    def machine_of(self, agent: AgentRecord) -> Machine | None:
        return next((m for m in self.machines() if names(m, agent.hostname)), None)

    def is_down(self, hostname: str) -> bool:
        return any(names(m, hostname) for m in self.down)

    def unavailability(self, agent: AgentRecord) -> dict[str, Any] | None:
        machine = self.machine_of(agent)
        return None if machine is None else self.machines()[machine]

    def next_id(self, master_id: str) -> str:
        return f"{master_id}-I{next(self._seq)}"


def parse_schedule(call: dict[str, Any]) -> list[dict[str, Any]]:
    schedule = sub_message(call, "update_maintenance_schedule").get("schedule")
    if not isinstance(schedule, dict):
        raise InvalidCall("Expecting 'update_maintenance_schedule.schedule' to be present")
    windows = schedule.get("windows") or []
    if not isinstance(windows, list):
        raise InvalidCall("'schedule.windows' must be a list")
    seen: set[Machine] = set()
    checked = []
    for i, window in enumerate(windows):
        where = f"schedule.windows[{i}]"
        ids = window.get("machine_ids") if isinstance(window, dict) else None
        if not isinstance(ids, list) or not ids:
            raise InvalidCall("List of machines in the maintenance window is empty")
        unavailability = window.get("unavailability")
        if not isinstance(unavailability, dict) or not isinstance(
            unavailability.get("start"), dict
        ):
            raise InvalidCall(f"Expecting '{where}.unavailability.start' to be present")
        for field in ("start", "duration"):
            if field not in unavailability:
                continue
            value = unavailability[field]
            nanos = value.get("nanoseconds") if isinstance(value, dict) else None
            if not isinstance(nanos, int) or isinstance(nanos, bool):
                raise InvalidCall(
                    f"'{where}.unavailability.{field}.nanoseconds' must be an integer"
                )
            if field == "duration" and nanos < 0:
                raise InvalidCall("Unavailability 'duration' is negative")
        machines = _machines(ids, f"{where}.machine_ids", seen)
        checked.append(
            {"machine_ids": [machine_id(m) for m in machines], "unavailability": unavailability}
        )
    return checked


def _machines(ids: Any, where: str, seen: set[Machine] | None = None) -> list[Machine]:
    """MachineIDs checked as Mesos' maintenance::validation::machines does."""
    if not isinstance(ids, list) or not ids:
        raise InvalidCall("List of machines is empty")
    seen = set() if seen is None else seen
    out = []
    for mid in ids:
        hostname = mid.get("hostname", "") if isinstance(mid, dict) else None
        ip = mid.get("ip", "") if isinstance(mid, dict) else None
        if not isinstance(hostname, str) or not isinstance(ip, str):
            raise InvalidCall(f"'{where}[]' must be {{hostname, ip}} strings")
        if not hostname and not ip:
            raise InvalidCall("Both 'hostname' and 'ip' for a machine are empty")
        if ip:
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                raise InvalidCall(f"Failed to parse IP address '{ip}'") from None
        machine = (hostname.lower(), ip)
        if machine in seen:
            raise InvalidCall(f"Machine '{_shown(machine)}' appears more than once in the schedule")
        seen.add(machine)
        out.append(machine)
    return out


def start(master: MesosliteMaster, call: dict[str, Any]) -> None:
    """START_MAINTENANCE: the machines go DOWN, their agents' tasks are stopped and written
    off, the agents removed (Mesos' Master::Http::_startMaintenance)."""
    plan = master.maintenance
    ids = sub_message(call, "start_maintenance").get("machines")
    machines = _machines(ids, "start_maintenance.machines")
    for machine in machines:
        if machine not in plan.machines():
            raise InvalidCall(f"Machine '{_shown(machine)}' is not part of a maintenance schedule")
        if machine in plan.down:
            raise InvalidCall(
                f"Machine '{_shown(machine)}' is not in DRAINING mode and cannot be brought down"
            )
    for agent in list(master.agents.values()):
        if any(names(m, agent.hostname) for m in machines):
            master.stop_tasks_on(agent)
            master.remove_agent(agent, "Operator initiated 'Machine DOWN'")
            for fw in master.frameworks.values():
                for oid, offer in list(fw.inverse_offers.items()):
                    if offer["agent_id"]["value"] == agent.id:
                        del fw.inverse_offers[oid]
    plan.down.update(machines)
    log.info("maintenance_started", machines=[machine_id(m) for m in machines])


def stop(master: MesosliteMaster, call: dict[str, Any]) -> None:
    """STOP_MAINTENANCE: DOWN machines come back UP and leave the schedule."""
    plan = master.maintenance
    ids = sub_message(call, "stop_maintenance").get("machines")
    machines = _machines(ids, "stop_maintenance.machines")
    for machine in machines:
        if machine not in plan.machines():
            raise InvalidCall(f"Machine '{_shown(machine)}' is not part of a maintenance schedule")
        if machine not in plan.down:
            raise InvalidCall(
                f"Machine '{_shown(machine)}' is not in DOWN mode and cannot be brought up"
            )
    up = set(machines)
    plan.down -= up
    windows = []
    for window in plan.windows:
        left = [
            mid
            for mid in window["machine_ids"]
            if (mid.get("hostname", ""), mid.get("ip", "")) not in up
        ]
        if left:
            windows.append({**window, "machine_ids": left})
    plan.windows = windows
    for machine in up:
        plan.answers.pop(machine, None)
    log.info("maintenance_stopped", machines=[machine_id(m) for m in machines])


def update_schedule(master: MesosliteMaster, windows: list[dict[str, Any]]) -> None:
    """Apply a checked schedule: outstanding inverse offers rescinded, the answers of machines
    whose window is unchanged kept, inverse offers sent again at the next allocation."""
    plan = master.maintenance
    scheduled = {
        (m.get("hostname", ""), m.get("ip", "")) for w in windows for m in w["machine_ids"]
    }
    left_out = sorted(plan.down - scheduled)
    if left_out:
        raise InvalidCall(
            f"Machine '{_shown(left_out[0])}' is deactivated and cannot be removed from the"
            " schedule"
        )
    before = plan.machines()
    plan.windows = windows
    after = plan.machines()
    for fw in master.frameworks.values():
        for oid in list(fw.inverse_offers):
            del fw.inverse_offers[oid]
            fw.send(
                {
                    "type": "RESCIND_INVERSE_OFFER",
                    "rescind_inverse_offer": {"inverse_offer_id": {"value": oid}},
                }
            )
    plan.answers = {
        m: a for m, a in plan.answers.items() if m in after and after[m] == before.get(m)
    }
    log.info("maintenance_schedule_updated", machines=[machine_id(m) for m in after])
    master.trigger_allocation()


def send_inverse_offers(master: MesosliteMaster) -> None:
    """Ask each framework with tasks on a scheduled machine's agent, once, whether it can give
    that agent back (Mesos' allocator makes inverse offers likewise)."""
    plan = master.maintenance
    if not plan.windows:
        return
    batches: dict[str, list[dict[str, Any]]] = {}
    for agent in master.agents.values():
        machine = plan.machine_of(agent)
        if machine is None:
            continue
        answered = plan.answers.get(machine, {})
        holders = sorted({t.framework_id for t in agent.tasks.values() if not t.terminal})
        for fid in holders:
            fw = master.frameworks.get(fid)
            if fw is None or not fw.connected or fid in answered:
                continue
            if any(o["agent_id"]["value"] == agent.id for o in fw.inverse_offers.values()):
                continue
            oid = plan.next_id(master.id)
            offer = {
                "id": {"value": oid},
                "framework_id": {"value": fid},
                "agent_id": {"value": agent.id},
                "url": {
                    "scheme": "http",
                    "path": f"/slave({agent.id})",
                    "address": {"hostname": agent.hostname, "port": agent.port},
                },
                "unavailability": plan.machines()[machine],
                "resources": [],
            }
            fw.inverse_offers[oid] = offer
            batches.setdefault(fid, []).append(offer)
    for fid, offers in batches.items():
        master.frameworks[fid].send(
            {"type": "INVERSE_OFFERS", "inverse_offers": {"inverse_offers": offers}}
        )
        log.info("inverse_offers_sent", framework_id=fid, count=len(offers))


def answer_inverse_offers(
    master: MesosliteMaster, fw: FrameworkRecord, call: dict[str, Any], accepted: bool
) -> None:
    """ACCEPT_INVERSE_OFFERS / DECLINE_INVERSE_OFFERS from a framework; unknown ids are ignored,
    as Mesos does."""
    field = "accept_inverse_offers" if accepted else "decline_inverse_offers"
    ids = sub_message(call, field).get("inverse_offer_ids") or []
    if not isinstance(ids, list):
        raise InvalidCall(f"'{field}.inverse_offer_ids' must be a list")
    checked = [id_of({"id": i}, "id", f"{field}.inverse_offer_ids[]") for i in ids]
    for oid in checked:
        offer = fw.inverse_offers.pop(oid, None)
        agent = master.agents.get(offer["agent_id"]["value"]) if offer else None
        machine = master.maintenance.machine_of(agent) if agent else None
        if machine is None:
            log.info("inverse_offer_unknown", framework_id=fw.id, inverse_offer_id=oid)
            continue
        master.maintenance.answers.setdefault(machine, {})[fw.id] = {
            "status": "ACCEPT" if accepted else "DECLINE",
            "framework_id": {"value": fw.id},
            "timestamp": {"nanoseconds": time.time_ns()},
        }


def cluster_status(master: MesosliteMaster) -> dict[str, Any]:
    plan = master.maintenance
    return {
        "draining_machines": [
            {"id": machine_id(m), "statuses": list(plan.answers.get(m, {}).values())}
            for m in plan.machines()
            if m not in plan.down
        ],
        "down_machines": [machine_id(m) for m in sorted(plan.down)],
    }


def _agent(master: MesosliteMaster, call: dict[str, Any], field: str) -> AgentRecord:
    aid = id_of(sub_message(call, field), "agent_id", field)
    agent = master.agents.get(aid)
    if agent is None:
        raise InvalidCall("Unknown agent")
    return agent


def drain(master: MesosliteMaster, call: dict[str, Any]) -> None:
    sub = sub_message(call, "drain_agent")
    agent = _agent(master, call, "drain_agent")
    max_grace = None
    if "max_grace_period" in sub:
        max_grace = parse_duration(sub["max_grace_period"], "drain_agent.max_grace_period")
    mark_gone = sub.get("mark_gone", False)
    if not isinstance(mark_gone, bool):
        raise InvalidCall("'drain_agent.mark_gone' must be a boolean")
    config: dict[str, Any] = {"mark_gone": mark_gone}
    if max_grace is not None:
        config["max_grace_period"] = {"nanoseconds": max_grace}
    agent.drain = {"state": DRAINING, "config": config}
    deactivate(master, agent)
    log.info("agent_draining", agent_id=agent.id, max_grace_ns=max_grace, mark_gone=mark_gone)
    for (fid, tid), task in list(agent.tasks.items()):
        fw = master.frameworks.get(fid)
        if fw is None or task.terminal:
            continue
        policy = task.kill_policy or task.info.get("kill_policy")
        grace = (policy or {}).get("grace_period", {}).get("nanoseconds")
        if max_grace is not None and (not isinstance(grace, int) or grace > max_grace):
            policy = {"grace_period": {"nanoseconds": max_grace}}
        master.kill(fw, tid, policy)
    check_drained(master, agent)


def check_drained(master: MesosliteMaster, agent: AgentRecord) -> None:
    """DRAINING -> DRAINED once no task is left on the agent; then gone if asked."""
    if agent.drain is None or agent.drain["state"] != DRAINING or agent.tasks:
        return
    agent.drain = {**agent.drain, "state": DRAINED}
    log.info("agent_drained", agent_id=agent.id)
    if agent.drain["config"].get("mark_gone"):
        master.mark_agent_gone(agent, "drained and marked gone by the operator")


def deactivate(master: MesosliteMaster, agent: AgentRecord) -> None:
    if not agent.deactivated:
        agent.deactivated = True
        master.withhold_agent(agent)
        log.info("agent_deactivated", agent_id=agent.id)


def reactivate(master: MesosliteMaster, agent: AgentRecord) -> None:
    if not agent.deactivated:
        raise InvalidCall("Agent is not deactivated")
    if agent.drain is not None and agent.drain["state"] == DRAINING:
        raise InvalidCall("Agent is still in the DRAINING state")
    agent.deactivated = False
    agent.drain = None
    if agent.connected:
        master.offer_agent(agent)
    log.info("agent_reactivated", agent_id=agent.id)


def call_response(master: MesosliteMaster, call: dict[str, Any]) -> dict[str, Any] | None:
    """The maintenance calls of the operator API; any other type is a 400."""
    kind = call.get("type")
    if kind == "DRAIN_AGENT":
        drain(master, call)
    elif kind == "DEACTIVATE_AGENT":
        deactivate(master, _agent(master, call, "deactivate_agent"))
    elif kind == "REACTIVATE_AGENT":
        reactivate(master, _agent(master, call, "reactivate_agent"))
    elif kind == "START_MAINTENANCE":
        start(master, call)
    elif kind == "STOP_MAINTENANCE":
        stop(master, call)
    elif kind == "UPDATE_MAINTENANCE_SCHEDULE":
        update_schedule(master, parse_schedule(call))
    elif kind == "GET_MAINTENANCE_SCHEDULE":
        schedule = {"schedule": {"windows": master.maintenance.windows}}
        return {"type": kind, "get_maintenance_schedule": schedule}
    elif kind == "GET_MAINTENANCE_STATUS":
        return {"type": kind, "get_maintenance_status": {"status": cluster_status(master)}}
    else:
        raise InvalidCall(f"Failed to convert JSON into Call protobuf: unknown call type {kind!r}")
    return None

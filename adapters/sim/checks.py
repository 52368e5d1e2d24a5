"""Invariant checkers of the simulation (docs/ARCHITECTURE.md, "Invariants the simulation checks").

Each returns (kind, message) pairs, empty when all holds. `check_core` reads the control
plane's view, `check_ground_truth` the simulated agents', `check_outcome` one call's output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.sim.agents import SimResourceManager
from core.autoscaling import AUTOSCALER_USER, stage_autoscalers
from core.control import ControlPlane, Outcome
from core.effects import KillTask, LaunchTask
from core.events import JobStateChanged, StageScaled, WorkerStateChanged
from core.model import CompletedReason, JobConstraint
from core.scheduling import Offer


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    message: str
    at: float
    step: int


Found = list[tuple[str, str]]


def check_core(cp: ControlPlane) -> Found:
    found: Found = []
    live_slots: set[tuple[str, int, int]] = set()
    unique_hosts: Counter[tuple[str, int, str]] = Counter()
    for job in cp.active_jobs():
        for w in job.current_workers():
            if w.terminal:
                continue
            key = (w.job_id, w.stage, w.index)
            if key in live_slots:
                found.append(("slot", f"two live workers in {key}"))
            live_slots.add(key)
            stage = job.definition.scheduling_info.stage(w.stage)
            if w.hostname and JobConstraint.UniqueHost in stage.hard_constraints:
                unique_hosts[(w.job_id, w.stage, w.hostname)] += 1
        started = sum(1 for ws in job.stages.values() for w in ws if w.state.value == "Started")
        if started != job.started_workers:
            found.append(
                ("started", f"{job.job_id} counts {job.started_workers} Started, has {started}")
            )
    found += [
        ("constraint", f"UniqueHost broken: {k} has {n} workers")
        for k, n in unique_hosts.items()
        if n > 1
    ]
    return found


def check_ground_truth(rm: SimResourceManager) -> Found:
    """On every agent, the tasks really running never exceed its resources."""
    found: Found = []
    for agent in rm.agents.values():
        if not agent.up:
            continue
        cpus = sum(t.cpus for t in agent.tasks.values())
        mem = sum(t.mem for t in agent.tasks.values())
        ports = [p for t in agent.tasks.values() for p in t.ports]
        if cpus > agent.cpus + 1e-9 or mem > agent.mem + 1e-9:
            found.append(("resources", f"{agent.agent_id} over-committed: cpus {cpus}, mem {mem}"))
        if len(ports) != len(set(ports)):
            found.append(("ports", f"{agent.agent_id} has a port assigned twice"))
        if ports and not agent.ports[0] <= min(ports) <= max(ports) <= agent.ports[1]:
            found.append(("ports", f"{agent.agent_id} runs a task on a port it does not have"))
    return found


def check_outcome(cp: ControlPlane, out: Outcome, offers: Sequence[Offer] | None) -> Found:
    found: Found = []
    launches = [e for e in out.effects if isinstance(e, LaunchTask)]
    for launch in launches:
        if cp.jobs[launch.request.job_id].terminal:
            found.append(("launch", f"{launch.request.worker_id} launched for a terminal job"))
    if launches:
        by_offer = {o.offer_id: o for o in offers or []}
        per_agent: dict[str, list[LaunchTask]] = {}
        for launch in launches:
            per_agent.setdefault(launch.assignment.agent_id, []).append(launch)
        for agent_id, group in per_agent.items():
            offered = [by_offer[o] for o in group[0].assignment.offer_ids if o in by_offer]
            cpus = sum(o.cpus for o in offered)
            mem = sum(o.mem for o in offered)
            ports = [p for lt in group for p in lt.assignment.ports]
            free = {p for o in offered for b, e in o.ports for p in range(b, e + 1)}
            if (
                sum(lt.assignment.cpus for lt in group) > cpus + 1e-9
                or sum(lt.assignment.mem for lt in group) > mem + 1e-9
            ):
                found.append(("resources", f"assignments on {agent_id} exceed its offers"))
            if len(ports) != len(set(ports)) or not set(ports) <= free:
                found.append(("ports", f"assignments on {agent_id} reuse or invent ports"))
    killed = {e.worker_id for e in out.effects if isinstance(e, KillTask)}
    ended = {
        e.job_id for e in out.events if isinstance(e, JobStateChanged) and e.reason is not None
    }
    for jid in sorted(ended):
        alive = [w.worker_id for w in cp.jobs[jid].current_workers() if not w.terminal]
        if alive:
            found.append(("kill", f"{jid} ended with live workers {alive}"))
    for e in out.events:
        if (
            isinstance(e, WorkerStateChanged)
            and e.reason is CompletedReason.Killed
            and cp.workers[e.worker_id].job_id in ended
            and e.worker_id not in killed
        ):
            found.append(("kill", f"{e.worker_id} of an ended job got no kill"))
    return found


def check_autoscaling(cp: ControlPlane, out: Outcome, flapping: set[str]) -> Found:
    """Each autoscaler scaling (issue 13): within [min, max], not inside the cooldown after
    the stage's previous scaling (or the job's start), and never a scale-down of a stage whose
    cluster's load is flapping (adapters.sim.load.Flapping)."""
    found: Found = []
    for e in out.events:
        if not isinstance(e, StageScaled) or e.user != AUTOSCALER_USER:
            continue
        job = cp.jobs[e.job_id]
        scaler = stage_autoscalers(job.definition)[e.stage]
        where = f"{e.job_id} stage {e.stage}"
        if not scaler.min <= e.workers <= scaler.max:
            found.append(
                (
                    "autoscale",
                    f"{where} scaled to {e.workers}, outside [{scaler.min}, {scaler.max}]",
                )
            )
        history = list(job.scalings[e.stage])
        before = history[-2].at if len(history) > 1 else None
        if before is None and scaler.initial_cooldown:
            before = job.started_at
        if before is not None and e.at - before < scaler.cooldown_secs:
            found.append(
                (
                    "autoscale",
                    f"{where} scaled {e.at - before:.1f}s after the last scaling, inside its {scaler.cooldown_secs:g}s cooldown",
                )
            )
        if job.cluster in flapping and e.workers < history[-1].from_workers:
            found.append(("flapping", f"{where} scaled down under a flapping load: {e.reason}"))
    return found

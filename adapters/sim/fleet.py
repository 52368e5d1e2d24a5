"""Fleet scale: the real master against 10,000 simulated agents and 100,000 workers.

We cannot start that many processes, so, as FoundationDB proves its cluster at scale, the real
`service.master.MasterService` (with the real core, matcher and file store, `EventLog` in a
temporary folder) runs against a simulated fleet on a virtual clock, and we measure what the
master spends per simulated second. The fleet reuses the seeded simulation's parts
(adapters/sim/agents.py, clock.py, checks.py): agents offer their free resources every
allocation interval, workers heartbeat every 20 s, users submit, kill and scale jobs, workers
fail at a steady rate, agents are lost and come back under new ids.

What is measured: `time.process_time` around every call into the master (offers, status
updates, heartbeats, ticks, commands), less the time spent inside the simulated resource
manager and the checkers, which the master calls; the time of each offer round (the
scheduling round: match, persist, launch); events appended per simulated second; the peak
RSS of the process (an upper bound: the simulated fleet lives in it too). The invariants of
the seeded runs (checks.py) hold throughout: `check_outcome` after every change of the core,
`check_core` and `check_ground_truth` every `check_every` simulated seconds (each is a pass
over every worker). At the end the store is compacted into a snapshot and reopened by a new
master, timed (`recover_s`), and its state must equal the live one.
"""

from __future__ import annotations

import random
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

from adapters.sim.agents import SimAgent, SimResourceManager, SimTask
from adapters.sim.checks import Violation, check_core, check_ground_truth, check_outcome
from adapters.sim.clock import VirtualClock
from adapters.store.log import EventLog
from core.control import ControlPlane, Outcome
from core.errors import CommandRejected
from core.model import (
    DurationType,
    JobClusterConfig,
    JobClusterDefinition,
    JobConstraint,
    JobRequest,
    JobSla,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.ports import ResourceManagerEvents, TaskLaunch, TaskStatus
from core.scheduling import Offer
from service.master import Command, MasterService

PORTS = (31000, 31099)  # every agent's port range: 100 ports, room for 20 workers of 5


@dataclass(frozen=True, slots=True)
class FleetConfig:
    agents: int = 10_000
    jobs: int = 1_000
    workers: int = 100_000  # in all, spread evenly over the jobs (two stages each)
    virtual_seconds: float = 600.0
    seed: int = 0
    clusters: int = 100
    ramp_seconds: float = 120.0  # the initial jobs are submitted over this window
    agent_cpus: float = 8.0
    agent_mem: float = 32_768.0
    worker_cpus: float = 0.5
    worker_mem: float = 1_024.0
    heartbeat_secs: float = 20.0  # the master's default interval
    worker_failures_per_hour: float = 0.05  # per worker: 100,000 workers, ~1.4 failures/s
    agent_loss_every: float = 60.0  # mean simulated seconds between agents lost
    user_action_every: float = 10.0  # mean seconds between a kill (and a new job), a scale
    check_every: float = 60.0  # the full-pass checkers
    status_loss: float = 0.01
    status_dup: float = 0.01

    @classmethod
    def parse(cls, text: str, **overrides: float) -> FleetConfig:
        """`agents=10000,jobs=1000,workers=100000` (any field, as `name=value`)."""
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, float] = dict(overrides)
        for term in filter(None, text.split(",")):
            name, sep, raw = term.partition("=")
            if not sep or name not in kinds:
                raise ValueError(f"expected name=value with a name in {sorted(kinds)}: {term!r}")
            values[name] = int(raw) if kinds[name] == "int" else float(raw)
        return cls(**values)  # type: ignore[arg-type]


@dataclass(slots=True)
class FleetReport:
    config: FleetConfig
    wall_s: float = 0.0
    master_cpu_s: float = 0.0
    steady_cpu_s: float = 0.0  # from the end of the ramp on
    events: int = 0
    heartbeats: int = 0
    rounds_ms: list[float] = field(default_factory=list)
    steady_rounds_ms: list[float] = field(default_factory=list)
    running_workers: int = 0
    active_jobs: int = 0
    peak_rss_mb: float = 0.0
    recover_s: float = 0.0
    recovered_workers: int = 0
    checks: int = 0
    violations: list[Violation] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        c = self.config
        steady_s = c.virtual_seconds - c.ramp_seconds
        return {
            "agents": c.agents,
            "jobs": self.active_jobs,
            "workers": self.running_workers,
            "virtual_seconds": c.virtual_seconds,
            "wall_s": round(self.wall_s, 1),
            "master_cpu_s": round(self.master_cpu_s, 2),
            "master_cpu_s_per_sim_s": round(self.master_cpu_s / c.virtual_seconds, 4),
            "steady_master_cpu_s_per_sim_s": (
                round(self.steady_cpu_s / steady_s, 4) if steady_s > 0 else None
            ),
            "events_appended": self.events,
            "events_per_sim_s": round(self.events / c.virtual_seconds, 1),
            "heartbeats_per_sim_s": round(self.heartbeats / c.virtual_seconds, 1),
            "sched_rounds": len(self.rounds_ms),
            "sched_round_p50_ms": _pct(self.rounds_ms, 50),
            "sched_round_p99_ms": _pct(self.rounds_ms, 99),
            "steady_sched_round_p50_ms": _pct(self.steady_rounds_ms, 50),
            "steady_sched_round_p99_ms": _pct(self.steady_rounds_ms, 99),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "recover_s": round(self.recover_s, 3),
            "recovered_workers": self.recovered_workers,
            "full_checks": self.checks,
            "violations": [f"{v.kind} at t={v.at:.1f}: {v.message}" for v in self.violations],
        }


def _pct(values: Sequence[float], p: int) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, len(ordered) * p // 100)], 3)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Meter:
    """CPU time inside the master, less what the simulation spends in calls the master makes
    (the simulated resource manager, the checkers)."""

    def __init__(self) -> None:
        self.master = 0.0
        self.last = 0.0  # the last master call's
        self._depth = 0
        self._nested = 0.0  # simulation time inside the current master call

    @contextmanager
    def in_master(self) -> Iterator[None]:
        if self._depth:
            yield
            return
        self._depth, self._nested = 1, 0.0
        start = time.process_time()
        try:
            yield
        finally:
            self.last = time.process_time() - start - self._nested
            self.master += self.last
            self._depth = 0

    @contextmanager
    def in_sim(self) -> Iterator[None]:
        if not self._depth:
            yield
            return
        start = time.process_time()
        try:
            yield
        finally:
            self._nested += time.process_time() - start


class TimedEvents:
    """The master as the resource manager calls it, each call metered; offer rounds timed."""

    def __init__(self, master: ResourceManagerEvents, fleet: Fleet) -> None:
        self.master, self.fleet = master, fleet

    def registered(self, framework_id: str) -> None:
        with self.fleet.meter.in_master():
            self.master.registered(framework_id)

    def offers(self, offers: Sequence[Offer]) -> None:
        with self.fleet.meter.in_master():
            self.master.offers(offers)
        self.fleet.round_done(self.fleet.meter.last)

    def rescinded(self, offer_id: str) -> None:
        with self.fleet.meter.in_master():
            self.master.rescinded(offer_id)

    def task_status(self, status: TaskStatus) -> None:
        with self.fleet.meter.in_master():
            self.master.task_status(status)


class FleetResourceManager(SimResourceManager):
    """The seeded simulation's resource manager, its calls from the master metered as
    simulation time, with lookups by agent id where the small one scans every agent."""

    def __init__(self, fleet: Fleet, agents: Sequence[SimAgent]) -> None:
        c = fleet.config
        super().__init__(
            fleet.rng,
            fleet.clock.after,
            lambda: fleet.clock.now,
            agents,
            c.status_loss,
            c.status_dup,
            fleet.task_running,
        )
        self.meter = fleet.meter
        self.fleet = fleet

    def start(self, events: ResourceManagerEvents) -> None:
        super().start(TimedEvents(events, self.fleet))

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        with self.meter.in_sim():
            super().launch(tasks)

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None:
        with self.meter.in_sim():
            super().decline(offer_ids, refuse_seconds)

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        """As Mesos, to the agent named; only a kill naming no agent (or the wrong one) looks
        at every agent."""
        with self.meter.in_sim():
            agent = self.agents.get(agent_id)
            task = agent.tasks.get(task_id) if agent is not None else None
            if agent is None or task is None:
                super().kill(task_id, agent_id)
            elif agent.partitioned:
                agent.pending_kills.append(task_id)
            elif agent.up:
                self.schedule(
                    self.rng.uniform(0.1, 3.0), partial(self._end, agent, task, "TASK_KILLED")
                )

    def revive(self) -> None:
        with self.meter.in_sim():
            super().revive()

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        with self.meter.in_sim():
            super().reconcile(tasks)

    def acknowledge(self, status: TaskStatus) -> None:
        with self.meter.in_sim():
            super().acknowledge(status)


class Fleet:
    """One fleet run; see the module docstring. `run()` returns the report."""

    def __init__(self, config: FleetConfig | None = None, folder: Path | None = None) -> None:
        self.config = c = config or FleetConfig()
        self.rng = random.Random(c.seed)
        self.clock = VirtualClock()
        self.meter = Meter()
        self.report = FleetReport(c)
        self._own_folder = folder is None
        shm = Path("/dev/shm")  # tmpfs where there is one: fsync costs no disk wait
        self.folder = folder or Path(
            tempfile.mkdtemp(prefix="mantis-fleet-", dir=shm if shm.is_dir() else None)
        )
        self._generation = [0] * c.agents
        self.rm = FleetResourceManager(self, [self._new_agent(i) for i in range(c.agents)])
        self.store = EventLog(self.folder / "store")
        self.master = MasterService(
            self.store, self.rm, lambda: self.clock.now, group_commit=False, audit=self._audit
        )
        per_job = max(c.workers // c.jobs, 2)
        self._stage_sizes = (per_job // 2, per_job - per_job // 2)
        self._steady = False
        self._ramp_cpu = 0.0

    @property
    def now(self) -> float:
        return self.clock.now

    @property
    def plane(self) -> ControlPlane:
        return self.master.plane

    def violation(self, kind: str, message: str) -> None:
        self.report.violations.append(Violation(kind, message, self.now, self.clock.steps))

    # the run --------------------------------------------------------------------------

    def run(self) -> FleetReport:
        c, r = self.config, self.report
        started = time.perf_counter()
        try:
            with self.meter.in_master():
                self.master.start()
            for i in range(c.clusters):
                self._command(partial(_create_cluster, i, self._stage_sizes, c))
            for n in range(c.jobs):
                self.clock.after(c.ramp_seconds * n / c.jobs, self._submit)
            self.clock.after(0.0, self._tick)
            self.clock.after(c.ramp_seconds, self._end_of_ramp)
            self.clock.after(c.check_every, self._full_check)
            self.clock.after(self._expo(c.agent_loss_every), self._lose_agent)
            self.clock.after(self._expo(c.user_action_every), self._user_action)
            self.clock.after(1.0, self._fail_workers)
            while not r.violations and self.clock.step(c.virtual_seconds):
                pass
            self.clock.now = max(self.clock.now, c.virtual_seconds)
            if self._steady:
                r.steady_cpu_s = self.meter.master - self._ramp_cpu
            self._full_check()
            r.running_workers = sum(1 for w in self.plane.workers.values() if w.running)
            r.active_jobs = len(self.plane.active_jobs())
            r.peak_rss_mb = peak_rss_mb()
            self._recover()
        finally:
            r.wall_s = time.perf_counter() - started
            r.master_cpu_s = self.meter.master
            self.close()
        return r

    def close(self) -> None:
        self.store.close()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _expo(self, mean: float) -> float:
        return self.rng.expovariate(1 / mean)

    def _end_of_ramp(self) -> None:
        self._steady = True
        self._ramp_cpu = self.meter.master

    def round_done(self, cpu_s: float) -> None:
        self.report.rounds_ms.append(cpu_s * 1000)
        if self._steady:
            self.report.steady_rounds_ms.append(cpu_s * 1000)

    def _command(self, command: Command) -> None:
        with self.meter.in_master(), suppress(CommandRejected):
            self.master.run(command)

    def _tick(self) -> None:
        with self.meter.in_master():
            self.master.tick()
        self.clock.after(1.0, self._tick)

    # workers ---------------------------------------------------------------------------

    def task_running(self, task: SimTask) -> None:
        self.clock.after(self.rng.uniform(0.1, 2.0), partial(self._heartbeat, task))

    def _heartbeat(self, task: SimTask) -> None:
        agent = self.rm.agents[task.agent_id]
        if agent.tasks.get(task.task_id) is not task or not agent.up:
            return  # the process is gone
        self.report.heartbeats += 1
        with self.meter.in_master():
            self.master.run(partial(_heartbeat, task.task_id))
        self.clock.after(self.config.heartbeat_secs, partial(self._heartbeat, task))

    def _fail_workers(self) -> None:
        """Each second, failures of a Poisson count over the running tasks."""
        c = self.config
        up = [a for a in self.rm.agents.values() if a.up and a.tasks]
        running = sum(len(a.tasks) for a in up)
        for _ in range(_poisson(self.rng, running * c.worker_failures_per_hour / 3600)):
            agent = self.rng.choice(up)
            if agent.tasks:
                task = self.rng.choice(list(agent.tasks.values()))
                self.rm._end(agent, task, "TASK_FAILED")
        self.clock.after(1.0, self._fail_workers)

    # agents ----------------------------------------------------------------------------

    def _new_agent(self, i: int) -> SimAgent:
        c = self.config
        gen = self._generation[i]
        self._generation[i] = gen + 1
        return SimAgent(
            f"agent-{i}-{gen}", f"host-{i}", "abc"[i % 3], c.agent_cpus, c.agent_mem, PORTS
        )

    def _lose_agent(self) -> None:
        up = [a for a in self.rm.agents.values() if a.up]
        if up:
            agent = self.rng.choice(up)
            self.rm.crash_agent(agent)
            self.clock.after(self.rng.uniform(30, 300), partial(self._agent_returns, agent))
        self.clock.after(self._expo(self.config.agent_loss_every), self._lose_agent)

    def _agent_returns(self, old: SimAgent) -> None:
        del self.rm.agents[old.agent_id]
        agent = self._new_agent(int(old.hostname.split("-")[1]))
        self.rm.agents[agent.agent_id] = agent

    # users -----------------------------------------------------------------------------

    def _submit(self) -> None:
        name = f"fleet{self.rng.randrange(self.config.clusters)}"
        self._command(partial(_submit, name))

    def _user_action(self) -> None:
        jobs = [j for j in self.plane.active_jobs()]
        if jobs:
            job = self.rng.choice(jobs)
            if self.rng.random() < 0.5:
                self._command(partial(_kill, job.job_id))
                self._submit()  # keep the fleet at its size
            else:
                stage = self.rng.choice(sorted(job.stages))
                size = len(job.stages[stage])
                n = max(1, size + self.rng.choice([-2, -1, 1, 2]))
                self._command(partial(_scale, job.job_id, stage, n))
        self.clock.after(self._expo(self.config.user_action_every), self._user_action)

    # checks ----------------------------------------------------------------------------

    def _audit(self, out: Outcome) -> None:
        """Called by the master once an outcome is durable: count and check it."""
        self.report.events += len(out.events)
        if out.events:
            with self.meter.in_sim():
                for kind, message in check_outcome(self.plane, out, self.rm.last_offers):
                    self.violation(kind, message)

    def _full_check(self) -> None:
        self.report.checks += 1
        for kind, message in check_core(self.plane) + check_ground_truth(self.rm):
            self.violation(kind, message)
        if self.now < self.config.virtual_seconds:
            self.clock.after(self.config.check_every, self._full_check)

    def _recover(self) -> None:
        """The log (snapshots archive terminal jobs) replays to the live jobs; then snapshot
        the store and time a new master opening it until it serves the same live jobs."""
        live = _active_state(self.plane)
        if _active_state(ControlPlane.replay(self.store.load())) != live:
            self.violation("replay", "replaying the log differs from the live state")
        self.store.compact()
        self.store.close()
        started = time.perf_counter()
        store = EventLog(self.folder / "store")
        try:
            master = MasterService(
                store, IdleResourceManager(), lambda: self.clock.now, group_commit=False
            )
            master.start()
            self.report.recover_s = time.perf_counter() - started
            self.report.recovered_workers = sum(
                1 for w in master.plane.workers.values() if w.running
            )
            if _active_state(master.plane) != live:
                self.violation("recovery", "the recovered live jobs differ from the live ones")
        finally:
            store.close()


class IdleResourceManager:
    """A resource manager that is never heard from: recovery alone is timed."""

    def start(self, events: ResourceManagerEvents) -> None:
        pass

    def stop(self) -> None:
        pass

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        pass

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        pass

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None:
        pass

    def revive(self) -> None:
        pass

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        pass

    def acknowledge(self, status: TaskStatus) -> None:
        pass


def _active_state(plane: ControlPlane) -> list[tuple[object, ...]]:
    return [
        (job.durable(), [w.durable() for w in job.current_workers()]) for job in plane.active_jobs()
    ]


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: the number of events in one unit of a Poisson process of rate `mean`."""
    if mean <= 0:
        return 0
    if mean > 30:  # the normal approximation, where exp(-mean) underflows the product
        return max(0, round(rng.gauss(mean, mean**0.5)))
    limit, n, p = pow(2.718281828459045, -mean), 0, rng.random()
    while p > limit:
        n += 1
        p *= rng.random()
    return n


def _create_cluster(
    i: int, sizes: tuple[int, int], c: FleetConfig, plane: ControlPlane, now: float
) -> Outcome:
    machine = MachineDefinition(c.worker_cpus, c.worker_mem)
    spread = (JobConstraint.ZoneBalance,) if i % 10 == 0 else ()
    unique = (JobConstraint.UniqueHost,) if i % 10 == 1 else ()
    stages = tuple(
        StageSchedulingInfo(n, machine, unique, spread, scalable=True) for n in sizes if n
    )
    definition = JobClusterDefinition(
        f"fleet{i}",
        (JobClusterConfig(f"fleet{i}.zip", "1", now, SchedulingInfo(stages)),),
        job_sla=JobSla(duration_type=DurationType.Perpetual),
    )
    return plane.create_cluster(definition, now)


def _submit(name: str, plane: ControlPlane, now: float) -> Outcome:
    return plane.submit_job(name, JobRequest(), "fleet", now)


def _kill(jid: str, plane: ControlPlane, now: float) -> Outcome:
    return plane.kill_job(jid, "fleet", "user kill", now)


def _scale(jid: str, stage: int, n: int, plane: ControlPlane, now: float) -> Outcome:
    return plane.scale_stage(jid, stage, n, "fleet", "user scale", now)


def _heartbeat(wid: str, plane: ControlPlane, now: float) -> Outcome:
    return plane.heartbeat(wid, now)


def run_fleet(config: FleetConfig) -> FleetReport:
    return Fleet(config).run()


__all__ = ["Fleet", "FleetConfig", "FleetReport", "run_fleet", "peak_rss_mb"]

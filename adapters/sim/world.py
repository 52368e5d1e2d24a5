"""A deterministic simulation of a whole cluster: the real master service against simulated agents.

`World(seed)` owns one `random.Random(seed)` and a virtual clock with an event heap of
(t, seq, action); every latency and fault comes from that generator, so a seed replays a run
exactly (docs/ARCHITECTURE.md). The master is the real `service.master.MasterService` on a
`SimStore`. Faults: tasks fail or hang, agents crash, return or are partitioned, status
updates are lost or doubled, the master crashes (and recovers from its store), its disk fills
up, and its leadership is lost to a newly elected master while it goes on acting for a while
(the store's epoch fence must stop it). Checkers run after every change of the core; once
faults stop, every perpetual job must be fully Started (liveness), and once quiet no agent may
run a task the master has not placed there.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from adapters.sim.agents import SimAgent, SimResourceManager, SimTask
from adapters.sim.checks import (
    Violation,
    check_autoscaling,
    check_core,
    check_ground_truth,
    check_outcome,
)
from adapters.sim.clock import VirtualClock
from adapters.sim.load import LoadCurve, payloads, random_curve
from adapters.sim.store import SimStore
from core.control import ControlPlane, Outcome
from core.errors import CommandRejected
from core.job import JobState
from core.model import (
    ClusterSla,
    DurationType,
    JobClusterConfig,
    JobClusterDefinition,
    JobConstraint,
    JobRequest,
    JobSla,
    MachineDefinition,
    ScalingStrategy,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
)
from core.ports import TaskLaunch, TaskStatus
from core.scheduling import Offer
from core.worker import WorkerState
from service.master import Command, MasterService, NotPersisted


@dataclass(frozen=True, slots=True)
class SimConfig:
    agents: int = 5
    agent_cpus: float = 8.0
    agent_mem: float = 16_384.0
    clusters: int = 3
    fault_until: float = 600.0  # virtual seconds with faults; then they stop
    settle: float = 1_200.0  # liveness bound after the last fault
    fault_every: float = 30.0  # mean seconds between faults
    round_every: float = 1.0  # the master's timer ticks
    status_loss: float = 0.05
    status_dup: float = 0.05
    heartbeat_loss: float = 0.02
    quiesce: float = 120.0  # virtual seconds run after liveness, before looking for strays
    autoscaled: int = 1  # clusters whose stage 1 autoscales under a load curve (adapters.sim.load)
    worker_rps: float = 100.0  # events/s one simulated worker processes; it drops the rest


@dataclass(slots=True)
class RunResult:
    seed: int
    steps: int
    events: int
    now: float
    digest: str
    violations: list[Violation] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


class SimMaster:
    """The real `MasterService` on the simulated store and resource manager; it crashes and
    comes back as a new service that recovers from its store, like a master process. When
    the leader is cut off from the election, a new leader is elected in a new epoch while the
    deposed one, not yet aware, goes on acting for a while: the store's fence must refuse its
    writes, and it must launch and kill nothing (checked)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.store = SimStore()
        self.up = True
        self.service = self._new_service()
        self.deposed: MasterService | None = None

    def _new_service(self) -> MasterService:
        w = self.world
        return MasterService(
            self.store.fenced(self.store.epoch),
            w.rm,
            lambda: w.now,
            group_commit=False,
            audit=lambda out: w.check_core(out, w.rm.last_offers),
        )

    @property
    def cp(self) -> ControlPlane:
        return self.service.plane

    def command(self, name: str, command: Command) -> None:
        if not self.up:
            return
        try:
            self.service.run(command)
        except CommandRejected as e:
            self.world.note(f"{name} rejected: {e.message}")
            return
        except NotPersisted as e:
            self.world.note(f"{name} not persisted: {e}")
            return
        self.world.note(name)

    def observe(self, command: Command) -> None:
        if self.up:  # not persisted: the plane is the store's again, the input lost with the write
            with contextlib.suppress(NotPersisted):
                self.service.run(command)

    def crash(self) -> None:
        self.up = False
        self.world.rm.master_reachable = False

    def recover(self) -> None:
        old = self.service.plane
        try:
            self.service = self._new_service()
        except Exception as e:
            self.world.violation("replay", f"the persisted events do not replay: {e!r}")
            return
        if self.service.plane.snapshot() != old.snapshot():
            self.world.violation(
                "replay", "replaying the persisted events differs from the live state"
            )
        self.up = True
        self.world.rm.master_reachable = True
        self.service.start()
        self.world.rm.redeliver()

    def depose(self) -> MasterService:
        """A new leader in a new epoch; the old one keeps acting until `forget_deposed`.
        Its resource manager is a recorder: whatever it would send is a finding."""
        old = self.service
        self.store.epoch += 1
        old.rm = DeposedResourceManager(self.world, self.store.epoch - 1)
        self.deposed = old
        self.service = self._new_service()
        self.service.start()
        self.world.rm.redeliver()
        return old

    def deposed_acts(self, name: str, command: Command) -> None:
        """An input the deposed leader still gets (a request, its timer): it must not stick."""
        old = self.deposed
        if old is None:
            return
        before = len(self.store.events)
        with contextlib.suppress(CommandRejected, NotPersisted):
            old.run(command)
        if len(self.store.events) != before:
            self.world.violation("fencing", f"the deposed leader committed {name}")

    def forget_deposed(self) -> None:
        self.deposed = None


class DeposedResourceManager:
    """What a deposed leader may still call: asking for offers or task states is harmless;
    launching or killing would act on a state the new leader does not have."""

    def __init__(self, world: World, epoch: int) -> None:
        self.world, self.epoch = world, epoch

    def start(self, events: object) -> None:
        pass

    def stop(self) -> None:
        pass

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        ids = [t.task.request.worker_id for t in tasks]
        self.world.violation("fencing", f"the deposed leader (epoch {self.epoch}) launched {ids}")

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        self.world.violation("fencing", f"the deposed leader (epoch {self.epoch}) killed {task_id}")

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None:
        pass

    def revive(self) -> None:
        pass

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        pass

    def acknowledge(self, status: TaskStatus) -> None:
        pass


class World:
    """One simulated cluster run; see the module docstring."""

    def __init__(self, seed: int | random.Random, config: SimConfig | None = None) -> None:
        """`seed` or a ready generator (e.g. Hypothesis' `st.randoms()`, which then shrinks runs)."""
        self.seed = seed if isinstance(seed, int) else -1
        self.config = c = config or SimConfig()
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.clock = VirtualClock()
        self.trace: deque[str] = deque(maxlen=60)
        self.violations: list[Violation] = []
        self._generation = dict.fromkeys(range(c.agents), 0)
        # Load curves by cluster, from their own generator so the faults' draws stay the same.
        self.loads: dict[str, LoadCurve] = {}
        self._load_rng = random.Random(f"load-{self.seed}")
        agents = [self._new_agent(i) for i in range(c.agents)]
        self.rm = SimResourceManager(
            self.rng,
            self.after,
            lambda: self.now,
            agents,
            c.status_loss,
            c.status_dup,
            self._task_running,
        )
        self.master = SimMaster(self)
        self.master.service.start()

    # scheduling -------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    @property
    def steps(self) -> int:
        return self.clock.steps

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.clock.after(delay, action)

    def note(self, text: str) -> None:
        self.trace.append(f"t={self.now:9.2f} {text}")

    def violation(self, kind: str, message: str) -> None:
        self.violations.append(Violation(kind, message, self.now, self.steps))

    # the run ----------------------------------------------------------------------------

    def run(self, max_steps: int = 1_000_000) -> RunResult:
        c = self.config
        for i in range(c.clusters):
            self._create_cluster(i)
        for _ in range(self.rng.randint(2, 2 * c.clusters)):
            self.after(self.rng.uniform(0, 120), self._submit)
        self.after(0.0, self._round)
        self.after(self.rng.expovariate(1 / c.fault_every), self._fault)
        end = c.fault_until + c.settle
        try:
            while self.steps < max_steps and not self.violations and self.clock.step(end):
                self._check()
                if self.now >= c.fault_until and self.master.up and self._all_started():
                    break
            if not self.violations and self.steps < max_steps and not self._all_started():
                self.violation(
                    "liveness",
                    f"jobs not fully Started {c.settle:.0f}s after faults stopped: "
                    f"{self._unstarted()}",
                )
            if not self.violations and self.steps < max_steps:
                agents = self.rm.agents.values()
                self.clock.run_until(
                    self.now + 400.0, lambda: not any(a.partitioned for a in agents)
                )
                self.clock.run_until(self.now + c.quiesce, lambda: bool(self.violations))
                self._check_no_strays()
        except Exception as e:  # a crash of the master is a finding, with its seed
            self.violation("exception", repr(e))
        log = self.master.store.events
        if not self.violations and self.master.up:
            try:
                same = ControlPlane.replay(log).snapshot() == self.master.cp.snapshot()
            except Exception as e:
                same = False
                self.violation("replay", f"the final log does not replay: {e!r}")
            if not same and not self.violations:
                self.violation("replay", "replay of the final log differs from the live state")
        digest = hashlib.sha256("\n".join(map(repr, log)).encode()).hexdigest()[:16]
        return RunResult(
            self.seed,
            self.steps,
            len(log),
            self.now,
            digest,
            list(self.violations),
            list(self.trace),
        )

    def _round(self) -> None:
        if self.master.up:
            self.master.service.tick()
        self.after(self.config.round_every, self._round)

    # the workers' processes -------------------------------------------------------------

    def _task_running(self, task: SimTask) -> None:
        self.after(self.rng.uniform(0.1, 2.0), lambda: self._heartbeat(task))

    def _heartbeat(self, task: SimTask) -> None:
        agent = self.rm.agents[task.agent_id]
        if agent.tasks.get(task.task_id) is not task or not agent.up or task.hung:
            return  # the process is gone, or hangs
        if (
            self.master.up
            and not agent.partitioned
            and self.rng.random() >= self.config.heartbeat_loss
        ):
            load = self._load(task.task_id)
            self.master.observe(lambda p, now: p.heartbeat(task.task_id, now, load))
        worker = self.master.cp.workers.get(task.task_id)
        interval = self.master.cp.jobs[worker.job_id].heartbeat_interval_secs if worker else 20.0
        self.after(interval, lambda: self._heartbeat(task))

    def _load(self, wid: str) -> dict[str, str]:
        """What the worker reports: its share of its cluster's load curve (stage 1 only).
        Loads stop with the faults, so that the autoscaler too lets the world become quiet."""
        cp = self.master.cp
        w = cp.workers.get(wid)
        curve = self.loads.get(cp.jobs[w.job_id].cluster) if w else None
        if w is None or curve is None or w.stage != 1 or self.now >= self.config.fault_until:
            return {}
        job = cp.jobs[w.job_id]
        machine = job.definition.scheduling_info.stage(1).machine_definition
        size = len(job.stages[1])
        rate = self.config.worker_rps
        return payloads(curve.rps(self.now), size, rate, machine, job.heartbeat_interval_secs)

    # users ------------------------------------------------------------------------------

    def _create_cluster(self, i: int) -> None:
        rng = self.rng
        stages = tuple(
            StageSchedulingInfo(
                rng.randint(1, 3),
                MachineDefinition(rng.choice([0.5, 1.0, 2.0]), rng.choice([256, 1024])),
                hard_constraints=(JobConstraint.UniqueHost,) if rng.random() < 0.3 else (),
                soft_constraints=(JobConstraint.ZoneBalance,) if rng.random() < 0.3 else (),
                scalable=True,
            )
            for _ in range(rng.randint(1, 2))
        )
        if 1 <= i <= self.config.autoscaled:  # not cluster0, whose SLA submits jobs itself
            stages = (replace(stages[0], scaling_policy=self._scaling_policy(f"cluster{i}")),)
            stages += stages[1:]
        sla = ClusterSla(min=1, max=2) if i == 0 else ClusterSla()
        duration = DurationType.Transient if rng.random() < 0.2 else DurationType.Perpetual
        definition = JobClusterDefinition(
            f"cluster{i}",
            (JobClusterConfig(f"c{i}.zip", "1", self.now, SchedulingInfo(stages)),),
            sla=sla,
            job_sla=JobSla(duration_type=duration),
        )
        self.master.command(f"create cluster{i}", lambda p, now: p.create_cluster(definition, now))

    def _scaling_policy(self, cluster: str) -> StageScalingPolicy:
        """RPS and DataDrop rules (3 of 5) under a random load curve; at most 4 workers."""
        rng, rate = self._load_rng, self.config.worker_rps
        self.loads[cluster] = random_curve(rng, rate, 20.0, self.config.fault_until)
        rules = (
            ScalingStrategy("RPS", rate * 0.3, rate * 0.8, 3, 5),
            ScalingStrategy("DataDrop", 1.0, 5.0, 3, 5),
        )
        return StageScalingPolicy(1, 1, 4, 1, 1, rng.choice([0, 30, 120]), rules)

    def _room(self) -> float:
        """CPUs that users may still ask for: half the cluster, so liveness can hold."""
        cp = self.master.cp
        used = sum(
            j.definition.scheduling_info.stage(w.stage).machine_definition.cpu_cores
            for j in cp.active_jobs()
            for w in j.current_workers()
        )
        return self.config.agents * self.config.agent_cpus / 2 - used

    def _submit(self) -> None:
        name = f"cluster{self.rng.randrange(self.config.clusters)}"
        cluster = self.master.cp.clusters.get(name)
        if cluster is not None:
            stages = cluster.definition.latest.scheduling_info.stages
            if (
                sum(s.number_of_instances * s.machine_definition.cpu_cores for s in stages)
                > self._room()
            ):
                self.note(f"submit {name} skipped: not enough room")
                return
        self.master.command(
            f"submit {name}", lambda p, now: p.submit_job(name, JobRequest(), "sim", now)
        )

    def _user_action(self) -> None:
        cp = self.master.cp
        jobs = [j.job_id for j in cp.active_jobs()]
        kind = self.rng.choice(["submit", "kill", "scale", "resubmit"])
        if kind == "submit" or not jobs:
            self._submit()
            return
        jid = self.rng.choice(jobs)
        if kind == "kill":
            self.master.command(
                f"kill {jid}", lambda p, now: p.kill_job(jid, "sim", "user kill", now)
            )
        elif kind == "scale":
            stage = self.rng.randint(1, 2)
            n = self.rng.randint(1, 4)
            job = cp.jobs[jid]
            if stage in job.stages:
                cpu = job.definition.scheduling_info.stage(stage).machine_definition.cpu_cores
                if (n - len(job.stages[stage])) * cpu > self._room():
                    return
            self.master.command(
                f"scale {jid} stage {stage} to {n}",
                lambda p, now: p.scale_stage(jid, stage, n, "sim", "test", now),
            )
        else:
            number = self.rng.randint(1, 10)
            self.master.command(
                f"resubmit {jid} worker {number}",
                lambda p, now: p.resubmit_worker(jid, number, "sim", "test", now),
            )

    # faults -----------------------------------------------------------------------------

    def _fault(self) -> None:
        if self.now >= self.config.fault_until:
            return
        rng = self.rng
        kind = rng.choices(
            [
                "task_fail",
                "hang",
                "agent_crash",
                "partition",
                "master_crash",
                "user",
                "disk_full",
                "leader_cut_off",
            ],
            weights=[4, 2, 1, 1, 1, 4, 1, 1],
        )[0]
        up = [a for a in self.rm.agents.values() if a.up]
        tasks = [t for a in up for t in a.tasks.values()]
        if kind == "task_fail" and tasks:
            task = rng.choice(tasks)
            self.note(f"fault: task {task.task_id} fails")
            self.rm.fail_task(task.task_id)
        elif kind == "hang" and tasks:
            task = rng.choice(tasks)
            self.note(f"fault: task {task.task_id} hangs")
            task.hung = True
        elif kind == "agent_crash" and len(up) > 1:
            agent = rng.choice(up)
            self.note(f"fault: agent {agent.agent_id} crashes")
            self.rm.crash_agent(agent)
            back = min(rng.uniform(30, 300), max(self.config.fault_until - self.now, 1.0))
            self.after(back, partial(self._agent_returns, agent))
        elif kind == "partition" and up:
            agent = rng.choice(up)
            self.note(f"fault: agent {agent.agent_id} partitioned")
            agent.partitioned = True
            self.after(rng.uniform(10, 200), partial(self._heal, agent))
        elif kind == "master_crash" and self.master.up:
            self.note("fault: master crashes")
            self.master.crash()
            self.after(rng.uniform(5, 60), self._master_returns)
        elif kind == "user":
            self._user_action()
        elif kind == "leader_cut_off" and self.master.up and self.master.deposed is None:
            self.note("fault: the leader is cut off from the election; a new one leads")
            self.master.depose()
            for _ in range(rng.randint(1, 4)):  # what reaches it before it notices
                self.after(rng.uniform(0, 8), self._deposed_input)
            self.after(8.5, self.master.forget_deposed)
        elif kind == "disk_full" and not self.master.store.full:
            self.note("fault: the master's disk is full")
            self.master.store.full = True
            self.after(rng.uniform(2, 30), self._disk_freed)
        self.after(rng.expovariate(1 / self.config.fault_every), self._fault)

    def _new_agent(self, i: int) -> SimAgent:
        c = self.config
        gen = self._generation[i]
        self._generation[i] = gen + 1
        # A restarted agent registers under a new agent id, as a Mesos agent without recovery does.
        return SimAgent(
            f"agent-{i}-{gen}",
            f"host-{i}",
            "abc"[i % 3],
            c.agent_cpus,
            c.agent_mem,
            (31000 + 100 * i, 31000 + 100 * i + 99),
        )

    def _agent_returns(self, old: SimAgent) -> None:
        index = int(old.hostname.split("-")[1])
        agent = self._new_agent(index)
        self.rm.agents[agent.agent_id] = agent
        self.note(f"agent {agent.agent_id} registers (was {old.agent_id})")

    def _heal(self, agent: SimAgent) -> None:
        self.note(f"agent {agent.agent_id} partition healed")
        self.rm.heal(agent)

    def _deposed_input(self) -> None:
        master, rng = self.master, self.rng
        old = master.deposed
        if old is None:
            return
        jobs = sorted(old.plane.jobs)
        name = f"cluster{rng.randrange(self.config.clusters)}"
        if jobs and rng.random() < 0.5:
            jid = rng.choice(jobs)
            master.deposed_acts(f"kill {jid}", lambda p, now: p.kill_job(jid, "sim", "stale", now))
        elif rng.random() < 0.5:
            master.deposed_acts(
                f"submit {name}", lambda p, now: p.submit_job(name, JobRequest(), "sim", now)
            )
        else:
            master.deposed_acts("tick", lambda p, now: p.tick(now + 1_000))

    def _disk_freed(self) -> None:
        self.note("the master's disk has space again")
        self.master.store.full = False

    def _master_returns(self) -> None:
        self.note("master recovers by replaying its events")
        self.master.recover()

    # checks -----------------------------------------------------------------------------

    def _check(self) -> None:
        if not self.rm.changed:
            return
        self.rm.changed = False
        for kind, message in check_ground_truth(self.rm):
            self.violation(kind, message)

    def check_core(self, out: Outcome, offers: Sequence[Offer] | None) -> None:
        """After every change of the core: its invariants, and those of what it just did."""
        if not out.events:
            return
        cp = self.master.cp
        flapping = {name for name, curve in self.loads.items() if curve.name == "flapping"}
        found = (
            check_core(cp) + check_outcome(cp, out, offers) + check_autoscaling(cp, out, flapping)
        )
        for kind, message in found:
            self.violation(kind, message)

    def _check_no_strays(self) -> None:
        """Once quiet, every task an agent runs is a live worker the master placed there."""
        cp = self.master.cp
        seen: set[str] = set()
        for agent in self.rm.agents.values():
            if not agent.up:
                continue
            for task_id in agent.tasks:
                w = cp.workers.get(task_id)
                if task_id in seen:
                    self.violation("stray", f"task {task_id} runs on two agents")
                elif w is None or w.terminal or w.agent_id != agent.agent_id:
                    where = (
                        "unknown" if w is None else f"{w.state.value} on {w.agent_id or 'no agent'}"
                    )
                    self.violation(
                        "stray", f"{agent.agent_id} runs {task_id}, which the master has as {where}"
                    )
                seen.add(task_id)

    def _unstarted(self) -> list[str]:
        cp = self.master.cp
        return [
            j.job_id
            for j in cp.active_jobs()
            if j.definition.job_sla.duration_type is DurationType.Perpetual
            and not (j.state is JobState.Launched and j.all_started())
        ]

    def _all_started(self) -> bool:
        return not self._unstarted() and all(
            w.state is WorkerState.Started
            for j in self.master.cp.active_jobs()
            for w in j.current_workers()
            if j.definition.job_sla.duration_type is DurationType.Perpetual
        )

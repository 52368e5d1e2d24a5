"""Stateful property test of the ControlPlane: random commands, observations, bad input, time.

After every step: the docs/ARCHITECTURE.md invariants that concern the core hold, replaying the
persisted events rebuilds exactly the live state, and a rejected command changed nothing.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from core.control import ControlPlane, Outcome
from core.effects import DeclineOffers, KillTask, LaunchRequest, LaunchTask
from core.errors import CommandRejected, InvalidRequest
from core.events import JobAccepted, WorkerAccepted
from core.job import JobState
from core.model import (
    ClusterSla,
    CompletedReason,
    CronPolicy,
    JobClusterConfig,
    JobClusterDefinition,
    JobConstraint,
    JobRequest,
    JobSla,
    Label,
    MachineDefinition,
    ParameterValue,
    SchedulingInfo,
    StageSchedulingInfo,
    parse_worker_id,
)
from core.ports import TASK_STATES, TaskStatus
from core.scheduling import Offer
from core.worker import WorkerState

NAMES = st.sampled_from(["alpha", "beta", "gamma"])
USERS = st.sampled_from(["alice", "bob"])
STEPS = st.sampled_from([0.5, 3.0, 20.0, 61.0, 95.0, 301.0, 3600.0])


@st.composite
def scheduling_infos(draw: st.DrawFn) -> SchedulingInfo:
    stages = draw(st.integers(1, 3))
    return SchedulingInfo(
        tuple(
            StageSchedulingInfo(
                draw(st.integers(1, 3)),
                MachineDefinition(1, 256),
                scalable=draw(st.booleans()),
                hard_constraints=draw(st.sampled_from([(), (JobConstraint.UniqueHost,)])),
            )
            for _ in range(stages)
        )
    )


@st.composite
def slas(draw: st.DrawFn) -> ClusterSla:
    kind = draw(st.sampled_from(["none", "minmax", "cron"]))
    if kind == "minmax":
        low = draw(st.integers(0, 2))
        return ClusterSla(min=low, max=draw(st.integers(low, 3)))
    if kind == "cron":
        return ClusterSla(
            cron_spec="0 */2 * * * ?", cron_policy=draw(st.sampled_from(list(CronPolicy)))
        )
    return ClusterSla()


class ControlPlaneMachine(RuleBasedStateMachine):
    clusters = Bundle("clusters")
    jobs = Bundle("jobs")

    @initialize()
    def start(self) -> None:
        self.cp = ControlPlane()
        self.replayed = ControlPlane()  # folds the same log step by step: a replay, incrementally
        self.events: list[object] = []
        self.now = 1_000_000.0
        self.max_number: dict[str, int] = {}
        self.dead_jobs: set[str] = set()

    # ---------------------------------------------------------------- helpers

    def call(self, command, *args, **kwargs) -> Outcome | None:
        before = self.cp.snapshot()
        try:
            out = command(*args, **kwargs)
        except CommandRejected as e:
            assert e.message
            assert self.cp.snapshot() == before, f"rejected {command.__name__} changed state"
            return None
        self.record(out)
        return out

    def record(self, out: Outcome) -> None:
        for e in out.events:
            if isinstance(e, WorkerAccepted):
                assert e.number > self.max_number.get(e.job_id, 0), "worker numbers must grow"
                self.max_number[e.job_id] = e.number
                assert e.job_id not in self.dead_jobs, "worker accepted for a terminal job"
            if isinstance(e, JobAccepted):
                assert e.job_id not in self.cp.jobs or self.cp.jobs[e.job_id].submitted_at == e.at
        for effect in out.effects:
            if isinstance(effect, LaunchRequest):
                job = self.cp.jobs[effect.job_id]
                assert not job.terminal, "launch requested for a terminal job"
                assert self.cp.workers[effect.worker_id].state is WorkerState.Accepted
        killed = {e.worker_id for e in out.effects if isinstance(e, KillTask)}
        for jid, job in self.cp.jobs.items():
            if job.terminal and jid not in self.dead_jobs:
                # The job ended in this step: every worker that was alive got a kill.
                alive_before = [
                    w
                    for w in job.current_workers()
                    if w.completed_at == job.ended_at and w.reason is CompletedReason.Killed
                ]
                assert all(w.worker_id in killed for w in alive_before)
                self.dead_jobs.add(jid)
        self.events.extend(out.events)
        self.replayed.apply_persisted(out.events)

    def workers(self, states: set[WorkerState] | None = None) -> list[str]:
        return sorted(
            w.worker_id for w in self.cp.workers.values() if states is None or w.state in states
        )

    # ---------------------------------------------------------------- cluster commands

    @rule(
        target=clusters,
        name=NAMES,
        info=scheduling_infos(),
        sla=slas(),
        timeout=st.sampled_from(["", "30", "0", "abc"]),
    )
    def create_cluster(self, name, info, sla, timeout) -> str:
        params = (ParameterValue("mantis.job.worker.timeout.secs", timeout),) if timeout else ()
        definition = JobClusterDefinition(
            name,
            (JobClusterConfig(f"{name}.zip", "v1", self.now, info),),
            sla=sla,
            parameters=params,
        )
        self.call(self.cp.create_cluster, definition, self.now)
        return name

    @rule(
        name=clusters,
        version=st.sampled_from(["v1", "v2", "v3", "v4", "v5"]),
        skip=st.booleans(),
        user=USERS,
    )
    def update_artifact(self, name, version, skip, user) -> None:
        self.call(
            self.cp.update_artifact,
            name,
            f"{name}-{version}.zip",
            version,
            user,
            self.now,
            skip_submit=skip,
        )

    @rule(name=clusters, sla=slas(), force=st.booleans())
    def update_sla(self, name, sla, force) -> None:
        self.call(self.cp.update_sla, name, sla, "alice", self.now, force_enable=force)

    @rule(name=clusters, value=st.sampled_from(["a", "b"]))
    def update_labels(self, name, value) -> None:
        self.call(self.cp.update_labels, name, (Label("team", value),), "alice", self.now)

    @rule(name=clusters, enable=st.booleans())
    def enable_or_disable(self, name, enable) -> None:
        command = self.cp.enable_cluster if enable else self.cp.disable_cluster
        self.call(command, name, "alice", self.now)

    @rule(name=clusters)
    def delete_cluster(self, name) -> None:
        self.call(self.cp.delete_cluster, name, "alice", self.now)

    # ---------------------------------------------------------------- job commands

    @rule(
        target=jobs,
        name=clusters,
        user=USERS,
        tag=st.sampled_from(["", "x"]),
        version=st.sampled_from([None, "v1", "v9"]),
        transient=st.booleans(),
        limit=st.sampled_from([0, 0, 200]),
    )
    def submit(self, name, user, tag, version, transient, limit) -> str:
        sla = JobSla(
            runtime_limit_secs=limit,
            duration_type="Transient" if transient else "Perpetual",
            user_provided_type=f'{{"unique": "{tag}"}}' if tag else "",
        )
        out = self.call(
            self.cp.submit_job, name, JobRequest(version=version, job_sla=sla), user, self.now
        )
        return out.job_id if out else f"{name}-999"

    @rule(target=jobs, name=clusters)
    def quick_submit(self, name) -> str:
        out = self.call(self.cp.quick_submit, name, "bob", self.now)
        return out.job_id if out else f"{name}-998"

    @rule(jid=jobs, user=USERS)
    def kill(self, jid, user) -> None:
        self.call(self.cp.kill_job, jid, user, "test kill", self.now)

    @rule(jid=jobs, stage=st.integers(0, 3), n=st.sampled_from([0, 1, 2, 4, 1501]))
    def scale(self, jid, stage, n) -> None:
        self.call(self.cp.scale_stage, jid, stage, n, "alice", "test", self.now)

    @rule(jid=jobs, number=st.integers(1, 30))
    def resubmit_worker(self, jid, number) -> None:
        self.call(self.cp.resubmit_worker, jid, number, "alice", "test", self.now)

    # ---------------------------------------------------------------- observations

    @precondition(lambda self: self.cp.workers)
    @rule(data=st.data())
    def launch_ready_workers(self, data) -> None:
        """What a scheduler does: launch every Accepted worker whose back-off has passed."""
        for wid in self.workers({WorkerState.Accepted}):
            w = self.cp.workers[wid]
            if w.ready_at <= self.now and data.draw(st.booleans()):
                self.record(self.cp.worker_launched(wid, "agent-1", "host-1", (31000,), self.now))

    @precondition(lambda self: self.cp.workers)
    @rule(data=st.data())
    def heartbeat_all_running(self, data) -> None:
        for wid in self.workers(
            {WorkerState.Launched, WorkerState.StartInitiated, WorkerState.Started}
        ):
            if data.draw(st.booleans()):
                self.record(self.cp.heartbeat(wid, self.now, {"SubscriptionState": "true"}))

    @precondition(lambda self: self.cp.workers)
    @rule(
        data=st.data(),
        state=st.sampled_from(
            [
                WorkerState.StartInitiated,
                WorkerState.Started,
                WorkerState.Failed,
                WorkerState.Completed,
            ]
        ),
    )
    def worker_status(self, data, state) -> None:
        wid = data.draw(st.sampled_from(self.workers()))
        reason = data.draw(st.sampled_from([None, CompletedReason.Error, CompletedReason.Lost]))
        self.record(self.cp.worker_status(wid, state, self.now, reason, "status"))

    @precondition(lambda self: self.cp.workers)
    @rule(data=st.data())
    def launch_observations(self, data) -> None:
        wid = data.draw(st.sampled_from(self.workers()))  # possibly a duplicate or late launch
        self.record(self.cp.worker_launched(wid, "agent-2", "host-2", (31001,), self.now))

    @rule(
        agents=st.lists(
            st.tuples(
                st.sampled_from(["a1", "a2", "a3"]),
                st.sampled_from([0.5, 2.0, 8.0]),
                st.sampled_from(["z1", "z2"]),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t[0],
        )
    )
    def offers(self, agents) -> None:
        offers = [
            Offer(
                f"o-{self.now}-{a}",
                a,
                f"host-{a}",
                cpus,
                4096.0,
                1000.0,
                1000.0,
                ((31000, 31020),),
                (("zone", z),),
            )
            for a, cpus, z in agents
        ]
        out = self.cp.on_offers(offers, self.now)
        self.record(out)
        launches = [e for e in out.effects if isinstance(e, LaunchTask)]
        for launch in launches:
            w = self.cp.workers[launch.request.worker_id]
            assert w.state is WorkerState.Launched and w.ready_at <= self.now
        for offer in offers:
            placed = [lt.assignment for lt in launches if lt.assignment.agent_id == offer.agent_id]
            assert sum(a.cpus for a in placed) <= offer.cpus + 1e-9
            ports = [p for a in placed for p in a.ports]
            assert len(ports) == len(set(ports)) and all(31000 <= p <= 31020 for p in ports)
        used = {o for lt in launches for o in lt.assignment.offer_ids}
        declined = {o for e in out.effects if isinstance(e, DeclineOffers) for o in e.offer_ids}
        assert used.isdisjoint(declined) and used | declined == {o.offer_id for o in offers}

    @precondition(lambda self: self.cp.workers)
    @rule(data=st.data(), state=st.sampled_from(sorted(TASK_STATES)))
    def task_status(self, data, state) -> None:
        wid = data.draw(st.sampled_from(self.workers()))
        self.record(self.cp.task_status(TaskStatus(wid, state, "a1", "from mesos"), self.now))

    @rule(wid=st.sampled_from(["nope-1-worker-0-1", "alpha-77-worker-0-5"]))
    def observations_for_unknown_workers(self, wid) -> None:
        out = self.cp.heartbeat(wid, self.now)
        assert out.events == [] and [type(e) for e in out.effects] == [KillTask]
        self.record(out)

    @rule(dt=STEPS)
    def tick(self, dt) -> None:
        self.now += dt
        self.record(self.cp.tick(self.now))

    # ---------------------------------------------------------------- illegal input

    @rule(state=st.sampled_from([WorkerState.Accepted, WorkerState.Launched, WorkerState.Noop]))
    def workers_cannot_report_master_states(self, state) -> None:
        before = self.cp.snapshot()
        try:
            self.cp.worker_status("alpha-1-worker-0-1", state, self.now)
        except InvalidRequest as e:
            assert e.field == "state"
        else:
            raise AssertionError("a worker reporting a master-side state must be refused")
        assert self.cp.snapshot() == before

    # ---------------------------------------------------------------- invariants

    @invariant()
    def one_live_worker_per_slot(self) -> None:
        live: set[tuple[str, int, int]] = set()
        for w in self.cp.workers.values():
            if not w.terminal:
                key = (w.job_id, w.stage, w.index)
                assert key not in live, f"two live workers in slot {key}"
                live.add(key)

    @invariant()
    def worker_numbers_unique_per_job(self) -> None:
        seen: set[tuple[str, int]] = set()
        for w in self.cp.workers.values():
            job, index, number = parse_worker_id(w.worker_id)
            assert (job, index, number) == (w.job_id, w.index, w.number)
            assert (job, number) not in seen
            seen.add((job, number))
            assert number < self.cp.jobs[job].next_worker_number

    @invariant()
    def job_states_agree_with_workers(self) -> None:
        for job in self.cp.jobs.values():
            workers = job.current_workers()
            for stage, slots in job.stages.items():
                assert [w.index for w in slots] == list(range(len(slots)))
                assert all(w.stage == stage for w in slots)
            if job.terminal:
                assert all(w.terminal for w in workers), f"{job.job_id} ended with live workers"
            started = sum(w.state is WorkerState.Started for w in workers)
            assert (
                job.started_workers
                == started
                == self.replayed.jobs.get(job.job_id, job).started_workers
            )
            if job.state is JobState.Accepted:
                assert not job.all_started(), (
                    f"{job.job_id} has all workers Started but is Accepted"
                )
        assert set(j.job_id for j in self.cp.active_jobs()) == {
            j for j, job in self.cp.jobs.items() if not job.terminal
        }

    @invariant()
    def unique_host_holds_for_placed_workers(self) -> None:
        seen: set[tuple[str, int, str]] = set()
        for w in self.cp.workers.values():
            job = self.cp.jobs[w.job_id]
            stage = job.definition.scheduling_info.stage(w.stage)
            placed_by_matcher = w.hostname.startswith("host-a")  # not by launch_ready_workers
            if (
                w.running
                and placed_by_matcher
                and JobConstraint.UniqueHost in stage.hard_constraints
            ):
                key = (w.job_id, w.stage, w.hostname)
                assert key not in seen, f"UniqueHost broken for {key}"
                seen.add(key)

    @invariant()
    def replay_rebuilds_the_live_state(self) -> None:
        assert self.replayed.snapshot() == self.cp.snapshot()

    def teardown(self) -> None:
        if hasattr(self, "cp"):
            assert ControlPlane.replay(self.events).snapshot() == self.cp.snapshot()


ControlPlaneMachine.TestCase.settings = settings(
    ControlPlaneMachine.TestCase.settings, stateful_step_count=40
)
TestControlPlane = ControlPlaneMachine.TestCase

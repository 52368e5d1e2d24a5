"""The control plane's derived scheduling state, kept between calls, answers as if rebuilt.

The plane keeps the matcher's hosts between offer rounds, a heap of heartbeat deadlines and
an index of still-Launched workers (fleet scale, docs/ARCHITECTURE.md). Random runs of
submissions, offer rounds, heartbeats, failures, scalings, kills, ticks and restarts check
them: at every offer round the one-shot `match` over the plane's workers (hosts built from
scratch) places exactly what the live plane places; every tick fails exactly the running
workers silent past their timeout, in job, stage and index order, as a pass over every
worker would; the index lists what such a pass finds.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.control import ControlConfig, ControlPlane
from core.effects import DeclineOffers, LaunchRequest, LaunchTask
from core.events import Event, WorkerStateChanged
from core.model import (
    CompletedReason,
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
from core.ports import TaskStatus
from core.scheduling import Offer, Placement, match
from core.worker import WorkerState

AGENTS = 6
CPUS = 4.0
CONSTRAINTS = [
    ((), ()),
    ((JobConstraint.UniqueHost,), ()),
    ((), (JobConstraint.ZoneBalance,)),
]
STEP = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, len(CONSTRAINTS) - 1)),
    st.tuples(st.just("offers"), st.integers(0, 2**AGENTS - 1)),
    st.tuples(st.just("beat"), st.integers(0, 99)),
    st.tuples(st.just("fail"), st.integers(0, 99)),
    st.tuples(st.just("scale"), st.integers(0, 99)),
    st.tuples(st.just("kill"), st.integers(0, 99)),
    st.tuples(st.just("wait"), st.sampled_from([1.0, 10.0, 45.0, 95.0])),
    st.tuples(st.just("restart"), st.just(0)),
)


def _cluster(i: int, now: float) -> JobClusterDefinition:
    hard, soft = CONSTRAINTS[i]
    stages = tuple(
        StageSchedulingInfo(n, MachineDefinition(1.0, 512), hard, soft, scalable=True)
        for n in (2, 3)
    )
    return JobClusterDefinition(
        f"c{i}",
        (JobClusterConfig("a.zip", "1", now, SchedulingInfo(stages)),),
        job_sla=JobSla(duration_type=DurationType.Perpetual),
    )


class Run:
    def __init__(self) -> None:
        self.plane = ControlPlane(ControlConfig(worker_timeout_secs=30.0))
        self.events: list[Event] = []
        self.now = 1_000.0
        self.offer_seq = 0
        self.zones_known: set[str] = set()  # agents' zones are volatile: learnt from offers
        for i in range(len(CONSTRAINTS)):
            self.apply(self.plane.create_cluster(_cluster(i, self.now), self.now))

    def apply(self, out: object) -> None:
        self.events.extend(out.events)  # type: ignore[attr-defined]

    def running(self) -> list[str]:
        return sorted(w.worker_id for w in self.plane.workers.values() if w.running)

    def offers(self, agents: int) -> list[Offer]:
        """Each chosen agent's free CPUs, one offer each."""
        used = dict.fromkeys(range(AGENTS), 0.0)
        for w in self.plane.workers.values():
            if w.running:
                used[int(w.agent_id.split("-")[1])] += 1.0
        out = []
        for a in range(AGENTS):
            if agents >> a & 1 and used[a] < CPUS:
                self.offer_seq += 1
                out.append(
                    Offer(
                        f"o{self.offer_seq}",
                        f"agent-{a}",
                        f"host-{a}",
                        CPUS - used[a],
                        8_192.0,
                        10_000.0,
                        10_000.0,
                        ((7000, 7099),),
                        (("zone", "ab"[a % 2]),),
                    )
                )
        return out

    def requests(self) -> list[LaunchRequest]:
        """Every pending worker, as the plane's state says (the one-shot matcher's input)."""
        out = []
        for w in self.plane.workers.values():
            if w.state is WorkerState.Accepted:
                d = self.plane.jobs[w.job_id].definition
                s = d.scheduling_info.stage(w.stage)
                out.append(
                    LaunchRequest(
                        w.worker_id,
                        w.job_id,
                        w.stage,
                        w.index,
                        w.number,
                        s.machine_definition,
                        s.hard_constraints,
                        s.soft_constraints,
                        d.job_sla.duration_type,
                        w.ready_at,
                    )
                )
        return out

    def placements(self) -> list[Placement]:
        """Every running worker where it runs, built afresh."""
        out = []
        for w in self.plane.workers.values():
            if w.running:
                d = self.plane.jobs[w.job_id].definition
                s = d.scheduling_info.stage(w.stage)
                m = s.machine_definition
                a = int(w.agent_id.split("-")[1])
                zone = (("zone", "ab"[a % 2]),) if w.agent_id in self.zones_known else ()
                out.append(
                    Placement(
                        w.worker_id,
                        w.job_id,
                        w.stage,
                        w.agent_id,
                        w.hostname,
                        zone,
                        d.job_sla.duration_type,
                        m.cpu_cores,
                        m.memory_mb,
                        m.disk_mb,
                        m.network_mbps,
                        s.hard_constraints,
                        s.soft_constraints,
                    )
                )
        return out

    def step(self, kind: str, arg: float) -> None:
        p, now = self.plane, self.now
        if kind == "submit":
            self.apply(p.submit_job(f"c{int(arg)}", JobRequest(), "u", now))
        elif kind == "offers":
            offers = self.offers(int(arg))
            self.zones_known.update(o.agent_id for o in offers)
            expected = match(self.requests(), offers, self.placements(), now)
            live = p.on_offers(offers, now)
            assert [e.assignment for e in live.effects if isinstance(e, LaunchTask)] == list(
                expected.assignments
            )
            declined = [e.offer_ids for e in live.effects if isinstance(e, DeclineOffers)]
            assert declined == ([expected.declined] if expected.declined else [])
            self.apply(live)
        elif kind == "beat":
            for wid in self.running()[int(arg) % 3 :: 3]:
                self.apply(p.heartbeat(wid, now))
        elif kind == "fail" and self.running():
            wid = self.running()[int(arg) % len(self.running())]
            agent = p.workers[wid].agent_id
            self.apply(p.task_status(TaskStatus(wid, "TASK_FAILED", agent), now))
        elif kind in ("scale", "kill") and p.active_jobs():
            job = p.active_jobs()[int(arg) % len(p.active_jobs())]
            if kind == "kill":
                self.apply(p.kill_job(job.job_id, "u", "test", now))
            elif job.state.value == "Launched":
                n = 1 + int(arg) % 4
                self.apply(p.scale_stage(job.job_id, 1 + int(arg) % 2, n, "u", "test", now))
        elif kind == "restart":  # a new master: replay, then recover
            self.plane = ControlPlane.replay(self.events, p.config)
            self.apply(self.plane.recover(now))
            self.zones_known.clear()
        elif kind == "wait":
            self.now += arg
            self.tick()

    def tick(self) -> None:
        """The workers a pass over every worker fails, in order, are the ones failed."""
        p, now = self.plane, self.now
        tolerance = p.config.worker_timeout_secs * p.config.heartbeat_tolerance
        expected = [
            w.worker_id
            for job in p.active_jobs()
            for w in job.current_workers()
            if w.running and now - (w.last_heartbeat_at or w.launched_at or now) > tolerance
        ]
        out = p.tick(now)
        lost = [
            e.worker_id
            for e in out.events
            if isinstance(e, WorkerStateChanged)
            and e.state is WorkerState.Failed
            and e.reason is CompletedReason.Lost
        ]
        assert lost == expected
        self.apply(out)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(STEP, min_size=5, max_size=80))
# After a restart, placements learn their agent's zone when it offers again; a worker of the
# ZoneBalance stage is then placed by the zones its stage really has.
@example(
    steps=[("submit", 2), ("offers", 1), ("restart", 0), ("fail", 0), ("offers", 1), ("offers", 12)]
)
def test_kept_scheduling_state_answers_as_if_rebuilt(steps: list[tuple[str, float]]) -> None:
    run = Run()
    for kind, arg in steps:
        run.step(kind, arg)
        launched = [
            w
            for job in run.plane.active_jobs()
            for w in job.current_workers()
            if w.state is WorkerState.Launched
        ]
        assert run.plane.launched_workers() == launched
    assert ControlPlane.replay(run.events).snapshot() == run.plane.snapshot()

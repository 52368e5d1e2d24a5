"""Properties of the offer matcher on small random clusters, against an independent oracle.

The oracle below re-states the rules on the *final* state (who runs where), not on the
matcher's step-by-step bookkeeping, and a brute force tries every placement. Constraint
semantics checked (final state; "tasks on a host" = placements and new assignments on every
agent with its hostname, or on the agent alone with MatchConfig(host_identity="agent")):

- UniqueHost: no other worker of the task's job stage on its host;
- ExclusiveHost: every task on its host belongs to its job; and no task of another job joins
  a host holding a hard-ExclusiveHost task (soft: the same, as a preference);
- M3/M4/M5Cluster: the agent's `asg` attribute starts with mantisagent-main-m3 (...);
  HostAttrValue: the attribute equals the value;
- ZoneBalance: every zone that gained workers of the stage ends at most one above the least
  loaded known zone (zones of agents on offer, and of the stage's placements). This is what
  placing each worker in a least-loaded zone leaves, and all such a rule can leave.

Where greedy provably matches brute force (proofs in the strategy docstrings): one job stage
of identical requests (class A), and identical requests whose only hard constraint is one
Mantis cluster name (class B). Outside them a greedy matcher can miss placements that exist:
tests/unit/test_matcher.py pins such cases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from hypothesis import event, given
from hypothesis import strategies as st

from core.effects import LaunchRequest
from core.model import DurationType, JobConstraint, MachineDefinition
from core.scheduling import (
    CPU_BIN_PACKER,
    CPU_MEM_BIN_PACKER,
    Fitness,
    HostAttrValue,
    MantisFitness,
    MatchConfig,
    Matcher,
    MatchResult,
    Offer,
    Placement,
    match,
)
from core.scheduling.constraints import label, resolve
from core.scheduling.hosts import Host, TaskRequest

C = JobConstraint
NOW = 5.0
EPS = 1e-6
ZONES = ("a", "b", "c")
ASGS = ("mantisagent-main-m3-v001", "mantisagent-main-m4-v002", "other")
ZONE_A = HostAttrValue("zone", "a")
CONSTRAINTS: tuple[object, ...] = (
    C.UniqueHost,
    C.ExclusiveHost,
    C.ZoneBalance,
    C.M3Cluster,
    C.M4Cluster,
    ZONE_A,
)
CONFIGS = {"mantis": MatchConfig(), "full search": MatchConfig(good_enough=1.0)}
PER_AGENT = MatchConfig(host_identity="agent")


@dataclass(frozen=True)
class Instance:
    requests: list[LaunchRequest]
    offers: list[Offer]
    placements: list[Placement]

    def ready(self) -> list[LaunchRequest]:
        placed = {p.worker_id for p in self.placements}
        return [r for r in self.requests if r.ready_at <= NOW and r.worker_id not in placed]


# ---------------------------------------------------------------------------- strategies


HOST = st.tuples(st.sampled_from((*ZONES, *ZONES, None)), st.sampled_from((*ASGS, None)))
OFFER = st.tuples(
    st.sampled_from((1.0, 2.0, 2.0, 4.0)),
    st.sampled_from((1024.0, 2048.0)),
    st.sampled_from((0.0, 100.0, 100.0)),
    st.sampled_from((100.0, *[1000.0] * 6)),
    st.integers(0, 4),
    st.integers(4, 30),
)  # cpus, mem, disk, network, port range start (x4), port range length; mostly enough of each


AgentSpec = tuple[str, str, tuple[tuple[str, str], ...]]  # agent id, hostname, attributes


@st.composite
def agents(draw: st.DrawFn) -> list[AgentSpec]:
    """1-3 agents (mostly 2-3), with a zone and an asg attribute, either possibly missing;
    sometimes two on one host (the same hostname)."""
    n = draw(st.sampled_from((1, 2, 2, 3, 3)))
    names = draw(st.permutations(["agent-0", "agent-1", "agent-2"]))[:n]
    out = []
    for name, (zone, asg) in zip(names, draw(st.lists(HOST, min_size=n, max_size=n)), strict=True):
        attrs = (("zone", zone),) if zone else ()
        hostname = draw(st.sampled_from((name + ".host", name + ".host", "shared.host")))
        out.append((name, hostname, attrs + ((("asg", asg),) if asg else ())))
    return out


ROOMY_OFFER = st.tuples(
    st.sampled_from((2.0, 4.0)),
    st.just(4096.0),
    st.just(100.0),
    st.just(1000.0),
    st.integers(0, 4),
    st.integers(10, 30),
)


@st.composite
def offers_of(draw: st.DrawFn, hosts: list[AgentSpec], roomy: bool = False) -> list[Offer]:
    """One or two offers per agent (sometimes none), ids in a random order."""
    counts = draw(
        st.lists(
            st.sampled_from((1, 1, 2) if roomy else (0, 1, 1, 1, 1, 2)),
            min_size=len(hosts),
            max_size=len(hosts),
        )
    )
    specs = draw(
        st.lists(ROOMY_OFFER if roomy else OFFER, min_size=sum(counts), max_size=sum(counts))
    )
    ids = draw(st.permutations(range(10, 10 + len(specs))))
    offers = []
    odd = draw(st.booleans())  # a second offer of an agent may say otherwise: the first wins
    for (agent, hostname, attrs), n in zip(hosts, counts, strict=True):
        for k in range(n):
            cpus, mem, disk, net, lo, length = specs[len(offers)]
            ports = ((100 + 4 * lo, 100 + 4 * lo + length - 1),)
            offers.append(
                Offer(
                    f"offer-{ids[len(offers)]}",
                    agent,
                    hostname,
                    cpus,
                    mem,
                    disk,
                    net,
                    ports,
                    (("zone", "b"),) if k and odd else attrs,
                )
            )
    return offers


PLACEMENT = st.tuples(
    st.sampled_from(("j1", "j2", "j3")),
    st.integers(1, 2),
    st.sampled_from(DurationType),
    st.sampled_from((0.5, 1.0, 4.0)),
    st.sampled_from(((), (), (C.ExclusiveHost,))),
    st.sampled_from(((), (C.ExclusiveHost,))),
)


@st.composite
def placements_of(draw: st.DrawFn, hosts: list[AgentSpec]) -> list[Placement]:
    """Tasks already running, on the agents or on one that offers nothing now (maybe an
    agent gone from a host another agent is on, as after a restart under a new id)."""
    gone = (
        "agent-gone",
        draw(st.sampled_from(["gone.host", *(h for _, h, _ in hosts)])),
        (("zone", "c"),),
    )
    out = []
    for i, (job, stage, duration, cpus, hard, soft) in enumerate(
        draw(st.lists(PLACEMENT, max_size=3))
    ):
        agent, hostname, attrs = draw(st.sampled_from([*hosts, gone]))
        out.append(
            Placement(
                f"p{i}",
                job,
                stage,
                agent,
                hostname,
                attrs,
                duration,
                cpus,
                256.0,
                0.0,
                100.0,
                hard,
                () if hard else soft,
            )
        )
    return out


@st.composite
def stage_spec(
    draw: st.DrawFn, hard_from: Sequence[object] = CONSTRAINTS, max_hard: int = 2, min_soft: int = 0
) -> dict[str, object]:
    hard = tuple(draw(st.lists(st.sampled_from(hard_from), unique=True, max_size=max_hard)))
    soft_from = [c for c in CONSTRAINTS if c not in hard]
    soft = tuple(
        draw(st.lists(st.sampled_from(soft_from), unique=True, min_size=min_soft, max_size=2))
    )
    return {
        "machine": draw(machines()),
        "hard": hard,
        "soft": soft,
        "duration": draw(st.sampled_from(DurationType)),
    }


def machines() -> st.SearchStrategy[MachineDefinition]:
    return st.builds(
        MachineDefinition,
        st.sampled_from((0.5, 1.0, 1.0, 2.0)),
        st.sampled_from((256.0, 512.0)),
        st.just(128.0),
        st.sampled_from((0.0, 0.0, 0.0, 50.0)),
        st.integers(1, 2),
    )


def request(
    job: str, stage: int, i: int, spec: dict[str, object], ready_at: float
) -> LaunchRequest:
    return LaunchRequest(
        f"{job}-worker-{i}-{i + 1}",
        job,
        stage,
        i,
        i + 1,
        spec["machine"],  # type: ignore[arg-type]
        spec["hard"],
        spec["soft"],
        spec["duration"],
        ready_at,
    )  # type: ignore[arg-type]


READY = st.sampled_from((0.0, 0.0, 0.0, 0.0, 10.0))


@st.composite
def instances(draw: st.DrawFn, max_requests: int = 5) -> Instance:
    """Any small cluster: several jobs and stages, any constraints, some requests backing off."""
    hosts = draw(agents())
    specs: dict[tuple[str, int], dict[str, object]] = {}
    requests = []
    for i in range(draw(st.integers(1, max_requests))):
        key = (draw(st.sampled_from(("j1", "j2"))), draw(st.integers(1, 2)))
        if key not in specs:
            specs[key] = draw(stage_spec())
        requests.append(request(key[0], key[1], i, specs[key], draw(READY)))
    return Instance(requests, draw(offers_of(hosts)), draw(placements_of(hosts)))


@st.composite
def one_stage(draw: st.DrawFn, soft: bool = False) -> Instance:
    """Class A: one job stage (identical requests, any hard and soft constraints).

    Greedy is optimal here: identical tasks make each host's capacity (how many fit, at most
    one under UniqueHost, none if excluded) independent of the others, so placing a task
    wherever one fits never costs a later one a place; under ZoneBalance every least-loaded
    zone that still has room gets a worker, and once all of them are full no rule-keeping
    placement can add one elsewhere. The same holds for soft constraints, which the matcher
    keeps whenever some host keeps them: a host that keeps them is used as long as one is left.
    With `soft`, every instance has soft constraints and at most one (placement-only) hard one.
    """
    hosts = draw(agents())
    hard_from = (C.UniqueHost, C.ExclusiveHost, C.ZoneBalance) if soft else CONSTRAINTS
    spec = draw(stage_spec(hard_from, max_hard=1 if soft else 2, min_soft=int(soft)))
    requests = [request("j1", 1, i, spec, draw(READY)) for i in range(draw(st.integers(2, 5)))]
    return Instance(requests, draw(offers_of(hosts, roomy=soft)), draw(placements_of(hosts)))


@st.composite
def identical_machines(draw: st.DrawFn) -> Instance:
    """Class B: jobs and stages of identical machines; at most one cluster name as hard constraint.

    The cluster names pick disjoint host sets (one `asg` value per host), hard-constrained tasks
    go first, and identical tasks make host capacities independent: greedy places the most.
    """
    hosts = draw(agents())
    machine = draw(machines())
    specs: dict[tuple[str, int], dict[str, object]] = {}
    requests = []
    for i in range(draw(st.integers(2, 5))):
        key = (draw(st.sampled_from(("j1", "j2"))), draw(st.integers(1, 2)))
        if key not in specs:
            hard = draw(st.sampled_from(((), (C.M3Cluster,), (C.M3Cluster,), (C.M4Cluster,))))
            specs[key] = {**draw(stage_spec(max_hard=0)), "machine": machine, "hard": hard}
        requests.append(request(key[0], key[1], i, specs[key], draw(READY)))
    return Instance(requests, draw(offers_of(hosts)), draw(placements_of(hosts)))


# ---------------------------------------------------------------------------- the oracle


@dataclass(frozen=True)
class OracleAgent:
    cpus: float
    mem: float
    disk: float
    net: float
    ports: frozenset[int]
    attrs: dict[str, str]
    hostname: str
    offer_ids: tuple[str, ...]


def cluster(offers: list[Offer]) -> dict[str, OracleAgent]:
    out = {}
    for agent in sorted({o.agent_id for o in offers}):
        mine = sorted((o for o in offers if o.agent_id == agent), key=lambda o: o.offer_id)
        ports = frozenset(p for o in mine for lo, hi in o.ports for p in range(lo, hi + 1))
        out[agent] = OracleAgent(
            sum(o.cpus for o in mine),
            sum(o.mem for o in mine),
            sum(o.disk for o in mine),
            sum(o.network_mbps for o in mine),
            ports,
            dict(mine[0].attributes),
            mine[0].hostname,
            tuple(o.offer_id for o in mine),
        )
    return out


@dataclass(frozen=True)
class Running:
    job: str
    stage: int
    agent: str
    host: str  # what UniqueHost and ExclusiveHost compare: hostname, or agent id
    zone: str
    hard: tuple[object, ...]
    soft: tuple[object, ...]
    new: bool


def world(
    inst: Instance, hosts: dict[str, OracleAgent], where: dict[str, str], by: str
) -> list[Running]:
    out = [
        Running(
            p.job_id,
            p.stage,
            p.agent_id,
            p.hostname if by == "hostname" else p.agent_id,
            dict(p.attributes).get("zone", ""),
            p.hard_constraints,
            p.soft_constraints,
            False,
        )
        for p in inst.placements
    ]
    for r in inst.requests:
        if r.worker_id in where:
            a = where[r.worker_id]
            out.append(
                Running(
                    r.job_id,
                    r.stage,
                    a,
                    hosts[a].hostname if by == "hostname" else a,
                    hosts[a].attrs.get("zone", ""),
                    r.hard_constraints,
                    r.soft_constraints,
                    True,
                )
            )
    return out


def keeps(c: object, t: Running, tasks: list[Running], hosts: dict[str, OracleAgent]) -> bool:
    here = [u for u in tasks if u.host == t.host]
    attrs = hosts[t.agent].attrs
    if c == C.UniqueHost:
        return sum(u.job == t.job and u.stage == t.stage for u in here) == 1
    if c == C.ExclusiveHost:
        return all(u.job == t.job for u in here)
    if c in (C.M3Cluster, C.M4Cluster, C.M5Cluster):
        size = str(c).removesuffix("Cluster").lower()
        return attrs.get("asg", "\0").startswith("mantisagent-main-" + size)
    if isinstance(c, HostAttrValue):
        return attrs.get(c.attribute) == c.value
    assert c == C.ZoneBalance
    stage = [u for u in tasks if u.job == t.job and u.stage == t.stage]
    known = {h.attrs.get("zone", "") for h in hosts.values()} | {u.zone for u in stage}
    count = {z: sum(u.zone == z for u in stage) for z in known}
    return count[t.zone] - 1 <= min(count.values())


def broken(
    inst: Instance,
    hosts: dict[str, OracleAgent],
    where: dict[str, str],
    soft: bool,
    by: str = "hostname",
) -> list[str]:
    """The constraints the placement `where` breaks, hard ones or soft ones; hosts `by`
    hostname or by agent."""
    tasks = world(inst, hosts, where, by)
    out = []
    for t in tasks:
        if not t.new:
            continue
        for c in t.soft if soft else t.hard:
            if not keeps(c, t, tasks, hosts):
                out.append(f"{t.job}/{t.stage} on {t.agent}: {c}")
        held = [
            u
            for u in tasks
            if u.host == t.host
            and u.job != t.job
            and C.ExclusiveHost in (u.soft if soft else u.hard)
        ]
        if held:
            out.append(f"{t.job} on {t.agent}, held by {held[0].job}")
    return out


def fits(inst: Instance, hosts: dict[str, OracleAgent], where: dict[str, str]) -> bool:
    need = {a: [0.0, 0.0, 0.0, 0.0, 0] for a in hosts}
    for r in inst.requests:
        if r.worker_id in where:
            n, m = need[where[r.worker_id]], r.machine
            n[0] += m.cpu_cores
            n[1] += m.memory_mb
            n[2] += m.disk_mb
            n[3] += m.network_mbps
            n[4] += m.ports_needed
    return all(
        n[0] <= h.cpus + EPS
        and n[1] <= h.mem + EPS
        and n[2] <= h.disk + EPS
        and n[3] <= h.net + EPS
        and n[4] <= len(h.ports)
        for h, n in ((hosts[a], need[a]) for a in hosts)
    )


def brute_force(inst: Instance, keep_soft: bool, all_or_nothing: bool) -> int:
    """The most ready requests any placement keeping the hard (and soft) constraints places."""
    hosts = cluster(inst.offers)
    tasks = inst.ready()
    best = -1
    where: dict[str, str] = {}

    def visit(i: int) -> None:
        nonlocal best
        if best == len(tasks) or len(where) + len(tasks) - i <= best:
            return
        if i == len(tasks):
            if not broken(inst, hosts, where, soft=False) and not (
                keep_soft and broken(inst, hosts, where, soft=True)
            ):
                best = len(where)
            return
        for agent in hosts:
            where[tasks[i].worker_id] = agent
            if fits(inst, hosts, where):
                visit(i + 1)
            del where[tasks[i].worker_id]
        if not all_or_nothing:
            visit(i + 1)

    visit(0)
    return best


def placed_where(result: MatchResult) -> dict[str, str]:
    return {a.worker_id: a.agent_id for a in result.assignments}


# ---------------------------------------------------------------------------- properties


@given(instances(), st.sampled_from([*sorted(CONFIGS), "per agent"]), st.data())
def test_no_overcommit_ports_offers_hard_constraints_or_order_dependence(
    inst: Instance, config_name: str, data: st.DataObject
) -> None:
    config = PER_AGENT if config_name == "per agent" else CONFIGS[config_name]
    result = match(inst.requests, inst.offers, inst.placements, NOW, config)
    # The same lists in another order give the same result.
    shuffled = [
        data.draw(st.permutations(xs)) for xs in (inst.requests, inst.offers, inst.placements)
    ]
    assert match(*shuffled, NOW, config) == result  # type: ignore[call-overload]
    hosts = cluster(inst.offers)
    where = placed_where(result)
    ready = {r.worker_id: r for r in inst.ready()}
    # Each ready request exactly once, placed or not; nothing else.
    assert len(where) == len(result.assignments)
    assert sorted([*where, *(w for w, _ in result.unplaced)]) == sorted(ready)
    assert list(result.assignments) == sorted(result.assignments, key=lambda a: a.worker_id)
    # Resources and ports: within the agent's offers, ports distinct and offered.
    assert fits(inst, hosts, where)
    for agent, h in hosts.items():
        ports = [p for a in result.assignments if a.agent_id == agent for p in a.ports]
        assert len(ports) == len(set(ports)) and set(ports) <= h.ports
    for a in result.assignments:
        m = ready[a.worker_id].machine
        assert (a.cpus, a.mem, a.disk, a.network_mbps, len(a.ports)) == (
            m.cpu_cores,
            m.memory_mb,
            m.disk_mb,
            m.network_mbps,
            m.ports_needed,
        )
        h = hosts[a.agent_id]
        assert (a.offer_ids, a.hostname, dict(a.attributes)) == (h.offer_ids, h.hostname, h.attrs)
    # Offers: declined = exactly those of agents that got nothing.
    used = {o for a in result.assignments for o in a.offer_ids}
    assert result.declined == tuple(
        sorted(o.offer_id for o in inst.offers if o.offer_id not in used)
    )
    by = "agent" if config_name == "per agent" else "hostname"
    assert broken(inst, hosts, where, soft=False, by=by) == []


@given(st.one_of(one_stage(), identical_machines()), st.sampled_from(sorted(CONFIGS)))
def test_places_as_many_as_brute_force_where_greedy_is_optimal(inst: Instance, config: str) -> None:
    result = match(inst.requests, inst.offers, inst.placements, NOW, CONFIGS[config])
    assert len(result.assignments) == brute_force(inst, keep_soft=False, all_or_nothing=False)


@given(one_stage(soft=True), st.sampled_from(sorted(CONFIGS)))
def test_keeps_soft_constraints_when_brute_force_can(inst: Instance, config: str) -> None:
    result = match(inst.requests, inst.offers, inst.placements, NOW, CONFIGS[config])
    if brute_force(inst, keep_soft=True, all_or_nothing=True) == len(inst.ready()):
        hosts = cluster(inst.offers)
        assert len(result.assignments) == len(inst.ready())
        assert broken(inst, hosts, placed_where(result), soft=True) == []


@dataclass(frozen=True)
class Unbounded:
    """A fitness without its bound: the matcher must then visit every host."""

    fitness: Fitness

    def __call__(self, task: TaskRequest, host: Host) -> float:
        return self.fitness(task, host)

    def bound(self, task: TaskRequest, free_cpus: float, max_total_cpus: float) -> float:
        return float("inf")


class Afresh(Matcher):
    """A matcher whose searches never resume where the last identical task's stopped."""

    def _search(self, t: TaskRequest, group: Hashable, resume: object) -> tuple[Host | None, None]:
        return super()._search(t, group, None)[0], None


FITNESSES = (CPU_BIN_PACKER, CPU_MEM_BIN_PACKER, MantisFitness())


@given(instances(max_requests=8), st.sampled_from(FITNESSES), st.sampled_from((0.63, 1.0)))
def test_shortcuts_never_change_the_answer(inst: Instance, fitness: Fitness, good: float) -> None:
    """Neither the fitness bound nor resuming a run of identical tasks changes a result."""
    config = MatchConfig(fitness=fitness, good_enough=good)
    expected = match(inst.requests, inst.offers, inst.placements, NOW, config)
    unbounded = MatchConfig(fitness=Unbounded(fitness), good_enough=good)
    assert match(inst.requests, inst.offers, inst.placements, NOW, unbounded) == expected
    afresh = Afresh(config)
    afresh.add_offers(inst.offers)
    afresh.add_placements(inst.placements)
    assert afresh.match(inst.requests, NOW) == expected


@given(instances(), st.data())
def test_a_matcher_fed_piecemeal_answers_as_match_does(inst: Instance, data: st.DataObject) -> None:
    """Offers and placements added in any order and batches, decoys added and removed."""
    m = Matcher(MatchConfig())
    decoys = [
        dataclasses.replace(o, offer_id=o.offer_id + "-decoy", cpus=8.0) for o in inst.offers[:2]
    ]
    items: list[object] = data.draw(st.permutations([*inst.offers, *inst.placements, *decoys]))
    extra = Placement("decoy", "j1", 1, "agent-x", "x", (), DurationType.Perpetual, 1.0, 1.0)
    for i, item in enumerate([*items, extra]):
        if isinstance(item, Offer):
            m.add_offers([item])
        else:
            m.add_placements([item])  # type: ignore[list-item]
        if i % 3 == 0:
            m.sync()
    m.remove_offers([d.offer_id for d in decoys])
    m.remove_placements(["decoy"])
    first = m.match(inst.requests, NOW)
    assert first == match(inst.requests, inst.offers, inst.placements, NOW)
    # A second round sees the first round's tasks as placements and its unused offers.
    again = [
        dataclasses.replace(r, worker_id=r.worker_id + "b", ready_at=0.0) for r in inst.requests
    ]
    used = {o for a in first.assignments for o in a.offer_ids}
    ready = {r.worker_id: r for r in inst.requests}
    placements = [
        *inst.placements,
        *(
            Placement(
                a.worker_id,
                ready[a.worker_id].job_id,
                ready[a.worker_id].stage,
                a.agent_id,
                a.hostname,
                a.attributes,
                ready[a.worker_id].duration_type,
                a.cpus,
                a.mem,
                a.disk,
                a.network_mbps,
                ready[a.worker_id].hard_constraints,
                ready[a.worker_id].soft_constraints,
            )
            for a in first.assignments
        ),
    ]
    expected = match(again, [o for o in inst.offers if o.offer_id not in used], placements, NOW)
    assert m.match(again, NOW) == expected


RESOURCES = {"cpus": 0, "mem": 1, "disk": 2, "network": 3, "ports": 4}
MONOTONE = (C.UniqueHost, C.ExclusiveHost, C.M3Cluster, C.M4Cluster, ZONE_A)


@given(instances(), st.sampled_from([*sorted(CONFIGS), "per agent"]))
def test_an_unplaced_request_names_what_every_offer_lacks(inst: Instance, config_name: str) -> None:
    """A ready request left unplaced with offers present says why, and the reason holds:
    every agent lacks the named resource (or, when only agents with enough CPUs were
    compared, lacks either those CPUs or that resource), or breaks the named hard constraint
    (or lacks the CPUs), or, for mixed reasons, each agent is counted once. Free amounts are
    checked after the round's placements: they only shrink within a round."""
    config = PER_AGENT if config_name == "per agent" else CONFIGS[config_name]
    by = "agent" if config_name == "per agent" else "hostname"
    result = match(inst.requests, inst.offers, inst.placements, NOW, config)
    hosts = cluster(inst.offers)
    where = placed_where(result)
    free = {a: [h.cpus, h.mem, h.disk, h.net, len(h.ports)] for a, h in hosts.items()}
    for asg in result.assignments:
        left = free[asg.agent_id]
        for i, used in enumerate((asg.cpus, asg.mem, asg.disk, asg.network_mbps, len(asg.ports))):
            left[i] -= used
    requests = {r.worker_id: r for r in inst.requests}
    tasks = world(inst, hosts, where, by)
    for wid, failure in result.unplaced:
        if not hosts:
            assert failure.kind == "no offers"
            continue
        assert failure.kind in ("resource", "constraint", "mixed"), failure
        event(f"{failure.kind} {failure.name}")
        assert failure.agents == len(hosts)
        assert sum(n for _, n in failure.ruled_out) == len(hosts)
        assert str(failure)
        r = requests[wid]
        m = r.machine
        asked = (m.cpu_cores, m.memory_mb, m.disk_mb, m.network_mbps, m.ports_needed)

        def lacks_cpus(agent: str) -> bool:
            return failure.with_cpus > 0 and free[agent][0] < m.cpu_cores  # noqa: B023

        if failure.kind == "resource":
            i = RESOURCES[failure.name]
            assert failure.asked == asked[i] and failure.largest < failure.asked
            for agent in hosts:
                assert lacks_cpus(agent) or free[agent][i] <= failure.largest + EPS, agent
        elif failure.kind == "constraint" and failure.name != "ZoneBalance":
            # ZoneBalance is left out: later placements of the round move the zones' counts.
            c = next(c for c in MONOTONE if label(resolve(c, "asg")) == failure.name)
            assert c in r.hard_constraints
            for agent in hosts:
                h = hosts[agent]
                me = Running(
                    r.job_id,
                    r.stage,
                    agent,
                    h.hostname if by == "hostname" else agent,
                    h.attrs.get("zone", ""),
                    r.hard_constraints,
                    r.soft_constraints,
                    True,
                )
                assert lacks_cpus(agent) or not keeps(c, me, [*tasks, me], hosts), agent

"""Property tests for the allocators against a brute-force model of Mesos' stage-2 allocation.

The model keeps only what each framework holds on each agent, who is subscribed to which role,
weights, allocation counts, suppression and refuse filters. At every grant it recomputes every
share from scratch and picks the framework with the lowest (role key, framework key) among those
not suppressed and not filtered on that agent; it shares no ordering code with the allocator.
After every step it checks no over-commit and that the allocator's free resources match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mesoslite.allocator import Grant
from mesoslite.allocator.drf import HierarchicalDRF
from mesoslite.allocator.hierarchical import AllocatorError, HierarchicalAllocator
from mesoslite.allocator.priority import StrictPriority
from mesoslite.resources import Resources, normalize, range_count

AGENTS = ("a1", "a2", "a3", "a4", "a5")
FRAMEWORKS = ("f1", "f2", "f3", "f4")
ROLES = ("r1", "r2", "r3")
REFUSALS = (None, 0.0, -1.0, 0.5, 2.0, 10.0, 1e12)
EMPTY = Resources()

RoleKey = tuple[float, float, int, str]

agent_resources = st.builds(
    Resources,
    cpus_m=st.sampled_from([0, 5, 10, 1000, 2500, 8000]),
    mem_m=st.sampled_from([0, 16_000, 32_000, 512_000, 4_096_000]),
    disk_m=st.sampled_from([0, 100_000]),
    gpus_m=st.sampled_from([0, 0, 1000]),
    ports=st.sampled_from(
        [(), ((31000, 31000),), ((31000, 31009),), ((31000, 31003), (32000, 32001))]
    ),
)


def scal(r: Resources) -> tuple[int, int, int, int]:
    return (r.cpus_m, r.mem_m, r.disk_m, r.gpus_m)


def same(a: Resources, b: Resources) -> bool:
    return scal(a) == scal(b) and normalize(a.ports) == normalize(b.ports)


def total_of(pieces: list[Resources]) -> Resources:
    out = EMPTY
    for r in pieces:
        out += r
    return out


def share(alloc: Resources, total: tuple[int, ...]) -> float:
    """Dominant share, by definition."""
    ratios = [a / t for a, t in zip(scal(alloc), total, strict=True) if t and a]
    return max(ratios, default=0.0)


def drf_role_key(weight: float, s: float, count: int, role: str) -> RoleKey:
    return (0.0, s / weight, count, role)


def priority_role_key(weight: float, s: float, count: int, role: str) -> RoleKey:
    return (-weight, s, count, role)


def model_timeout(refuse: float | None) -> float:
    if not refuse:
        return 0.0
    if refuse < 0:
        refuse = 5.0
    return max(1.0, min(refuse, 365 * 86400.0))


@dataclass
class Model:
    role_key: Callable[[float, float, int, str], RoleKey]
    agents: dict[str, Resources] = field(default_factory=dict)
    held: dict[tuple[str, str], Resources] = field(default_factory=dict)  # (agent, framework)
    role_of: dict[str, str] = field(default_factory=dict)  # subscribed frameworks
    suppressed: set[str] = field(default_factory=set)
    weights: dict[str, float] = field(default_factory=dict)
    fw_count: dict[str, int] = field(default_factory=dict)
    role_count: dict[str, int] = field(default_factory=dict)
    filters: list[tuple[str, str, float, Resources]] = field(default_factory=list)

    def free(self, aid: str) -> Resources:
        return self.agents[aid] - total_of([r for (a, _), r in self.held.items() if a == aid])

    def allocatable(self, r: Resources) -> bool:
        return r.cpus_m >= 10 or r.mem_m >= 32_000

    def cluster(self) -> tuple[int, ...]:
        return scal(total_of(list(self.agents.values())))

    def key(self, fid: str) -> tuple[RoleKey, tuple[float, int, str]]:
        total, role = self.cluster(), self.role_of[fid]
        mine = total_of([r for (_, f), r in self.held.items() if f == fid])
        members = [r for (_, f), r in self.held.items() if self.role_of.get(f) == role]
        role_share = share(total_of(members), total)
        weight = self.weights.get(role, 1.0)
        return (
            self.role_key(weight, role_share, self.role_count.get(role, 0), role),
            (share(mine, total), self.fw_count.get(fid, 0), fid),
        )

    def eligible(self, fid: str, aid: str, offer: Resources, now: float) -> bool:
        if fid not in self.role_of or fid in self.suppressed:
            return False
        return not any(
            f == fid and a == aid and expires > now and refused.contains(offer)
            for f, a, expires, refused in self.filters
        )

    def expected(self, aid: str, now: float) -> str | None:
        offer = self.free(aid)
        if not self.allocatable(offer):
            return None
        fids = [f for f in self.role_of if self.eligible(f, aid, offer, now)]
        return min(fids, key=self.key, default=None)

    def give(self, fid: str, aid: str, r: Resources) -> None:
        self.held[aid, fid] = self.held.get((aid, fid), EMPTY) + r
        self.fw_count[fid] = self.fw_count.get(fid, 0) + 1
        if fid in self.role_of:
            role = self.role_of[fid]
            self.role_count[role] = self.role_count.get(role, 0) + 1

    def remove_agent(self, aid: str) -> None:
        del self.agents[aid]
        self.held = {k: v for k, v in self.held.items() if k[0] != aid}
        self.filters = [f for f in self.filters if f[1] != aid]
        self.purge()

    def clear_filters(self, fid: str) -> None:
        self.filters = [f for f in self.filters if f[0] != fid]

    def purge(self) -> None:
        """Frameworks neither subscribed nor holding anything are forgotten (counts too)."""
        holding = {f for _, f in self.held}
        for fid in list(self.fw_count):
            if fid not in self.role_of and fid not in holding:
                del self.fw_count[fid]


class AllocatorMachine(RuleBasedStateMachine):
    """Drives the allocator, a twin fed the same calls, and the model."""

    factory: Callable[[], HierarchicalAllocator] = HierarchicalDRF
    role_key: Callable[[float, float, int, str], RoleKey] = staticmethod(drf_role_key)

    def __init__(self) -> None:
        super().__init__()
        self.alloc = type(self).factory()
        self.twin = type(self).factory()
        self.model = Model(type(self).role_key)
        self.now = 0.0

    def both(self, call: Callable[[HierarchicalAllocator], object]) -> object:
        """Apply a call to the allocator and its twin; both must answer (or fail) alike."""
        try:
            out = call(self.alloc)
        except AllocatorError:
            with pytest.raises(AllocatorError):
                call(self.twin)
            raise
        assert call(self.twin) == out
        return out

    @initialize(
        totals=st.lists(agent_resources, min_size=1, max_size=len(AGENTS)),
        roles=st.lists(st.sampled_from(ROLES), min_size=1, max_size=len(FRAMEWORKS)),
    )
    def cluster(self, totals: list[Resources], roles: list[str]) -> None:
        for fid, role in zip(FRAMEWORKS, roles, strict=False):
            self.add_framework(fid, role)
        for aid, total in zip(AGENTS, totals, strict=False):
            self.add_agent(aid, total, "")

    # -- agents ---------------------------------------------------------------------------------

    @rule(
        aid=st.sampled_from(AGENTS), total=agent_resources, fid=st.sampled_from(FRAMEWORKS + ("",))
    )
    def add_agent(self, aid: str, total: Resources, fid: str) -> None:
        half = Resources(total.cpus_m // 2, total.mem_m // 2, 0, 0, total.ports[:1])
        used = {fid: half} if fid and not half.is_empty() else {}
        self.both(lambda a: a.add_agent(aid, total, used))
        if aid in self.model.agents:
            self.model.remove_agent(aid)
        self.model.agents[aid] = total
        for f, r in used.items():
            self.model.give(f, aid, r)

    @rule(aid=st.sampled_from(AGENTS))
    def remove_agent(self, aid: str) -> None:
        if aid not in self.model.agents:
            with pytest.raises(AllocatorError):
                self.both(lambda a: a.remove_agent(aid))
            return
        self.both(lambda a: a.remove_agent(aid))
        self.model.remove_agent(aid)

    # -- frameworks and roles -------------------------------------------------------------------

    @rule(fid=st.sampled_from(FRAMEWORKS), role=st.sampled_from(ROLES))
    def add_framework(self, fid: str, role: str) -> None:
        self.both(lambda a: a.add_framework(fid, role, self.now))
        self.model.role_of[fid] = role
        self.model.suppressed.discard(fid)
        self.model.clear_filters(fid)
        self.model.fw_count.setdefault(fid, 0)

    @rule(fid=st.sampled_from(FRAMEWORKS), recover_first=st.booleans())
    def remove_framework(self, fid: str, recover_first: bool) -> None:
        if fid not in self.model.role_of:
            with pytest.raises(AllocatorError):
                self.both(lambda a: a.remove_framework(fid))
            return
        if recover_first:
            for aid, f in sorted(self.model.held):
                if f == fid:
                    self.give_back(aid, fid, False, None)
        self.both(lambda a: a.remove_framework(fid))
        del self.model.role_of[fid]
        self.model.suppressed.discard(fid)
        self.model.clear_filters(fid)
        self.model.purge()

    @rule(role=st.sampled_from(ROLES), weight=st.sampled_from([0.5, 1.0, 2.0, 3.0, 0.0, -1.0]))
    def set_weight(self, role: str, weight: float) -> None:
        if weight <= 0:
            with pytest.raises(AllocatorError):
                self.both(lambda a: a.set_weight(role, weight))
            return
        self.both(lambda a: a.set_weight(role, weight))
        self.model.weights[role] = weight

    @rule(fid=st.sampled_from(FRAMEWORKS))
    def suppress(self, fid: str) -> None:
        if fid not in self.model.role_of:
            with pytest.raises(AllocatorError):
                self.both(lambda a: a.suppress(fid))
            return
        self.both(lambda a: a.suppress(fid))
        self.model.suppressed.add(fid)

    @rule(fid=st.sampled_from(FRAMEWORKS))
    def revive(self, fid: str) -> None:
        if fid not in self.model.role_of:
            with pytest.raises(AllocatorError):
                self.both(lambda a: a.revive(fid))
            return
        self.both(lambda a: a.revive(fid))
        self.model.suppressed.discard(fid)
        self.model.clear_filters(fid)

    # -- allocation, recovery, time -------------------------------------------------------------

    @rule()
    def allocate(self) -> None:
        model, now = self.model, self.now
        grants = self.both(lambda a: a.allocate(now))
        assert isinstance(grants, list)
        seen: set[str] = set()
        for g in grants:
            assert isinstance(g, Grant)
            assert g.agent_id not in seen, "an agent offered twice in one cycle"
            seen.add(g.agent_id)
            free = model.free(g.agent_id)
            assert same(g.resources, free), f"offered {g.resources}, free is {free}"
            expected = model.expected(g.agent_id, now)
            assert g.framework_id == expected, (
                f"{g.agent_id} went to {g.framework_id}, lowest share eligible is {expected}:"
                f" {[(f, model.key(f)) for f in sorted(model.role_of)]}"
            )
            blocked = [f for f in model.role_of if f not in model.suppressed] != [
                f for f in model.role_of if model.eligible(f, g.agent_id, free, now)
            ]
            event("grant past a filter or suppression" if blocked else "grant")
            model.give(g.framework_id, g.agent_id, g.resources)
        for aid in sorted(set(model.agents) - seen):
            assert model.expected(aid, now) is None, f"{aid} was left out of the cycle"
            free = model.free(aid)
            if model.allocatable(free) and any(
                f not in model.suppressed and not model.eligible(f, aid, free, now)
                for f in model.role_of
            ):
                event("agent held back by filters")

    @precondition(lambda self: self.model.held)
    @rule(data=st.data(), part=st.booleans(), refuse=st.sampled_from(REFUSALS))
    def recover(self, data: st.DataObject, part: bool, refuse: float | None) -> None:
        aid, fid = data.draw(st.sampled_from(sorted(self.model.held)))
        self.give_back(aid, fid, part, refuse)

    @precondition(lambda self: self.model.held)
    @rule(refuse=st.sampled_from(REFUSALS[2:]))
    def decline_everything(self, refuse: float) -> None:
        """Every framework declines all it holds, with a filter (the DeclineOffers pattern)."""
        for aid, fid in sorted(self.model.held):
            self.give_back(aid, fid, False, refuse)

    def give_back(self, aid: str, fid: str, part: bool, refuse: float | None) -> None:
        held = self.model.held[aid, fid]
        back = held
        if part:
            half = Resources(held.cpus_m // 2, held.mem_m // 2, held.disk_m, 0, held.ports[:1])
            back = half if not half.is_empty() else held
        self.both(lambda a: a.recover(fid, aid, back, self.now, refuse))
        rest = held - back
        if rest.is_empty():
            del self.model.held[aid, fid]
        else:
            self.model.held[aid, fid] = rest
        timeout = model_timeout(refuse)
        if timeout and fid in self.model.role_of and not back.is_empty():
            self.model.filters.append((fid, aid, self.now + timeout, back))
        self.model.purge()

    @rule(aid=st.sampled_from(AGENTS), fid=st.sampled_from(FRAMEWORKS), overlap=st.booleans())
    def illegal_calls(self, aid: str, fid: str, overlap: bool) -> None:
        """Over-recovery and over-committed agents raise and change nothing."""
        if aid not in self.model.agents:
            self.both(lambda a: a.recover(fid, aid, Resources(cpus_m=1), self.now, 5.0))  # ignored
        else:
            too_much = self.model.held.get((aid, fid), EMPTY) + Resources(cpus_m=1)
            with pytest.raises(AllocatorError):
                self.both(lambda a: a.recover(fid, aid, too_much, self.now, 5.0))
        total = self.model.agents.get(aid, Resources(cpus_m=1000, ports=((1, 2),)))
        twice = Resources(ports=total.ports) if overlap and total.ports else Resources(cpus_m=1)
        used = {"f1": total, "f2": twice}
        with pytest.raises(AllocatorError):
            self.both(lambda a: a.add_agent(aid, total, used))

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, 7.0]))
    def tick(self, dt: float) -> None:
        """Time passes, and the master runs its periodic allocation cycle."""
        self.now += dt
        self.allocate()

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def nothing_offered_twice(self) -> None:
        for aid, total in self.model.agents.items():
            free = self.alloc.available(aid)
            assert same(free, self.model.free(aid))
            pieces = [free, *self.alloc.allocation(aid).values()]
            assert scal(total_of(pieces)) == scal(total), f"{aid}: scalars over- or under-counted"
            ports = sum(range_count(p.ports) for p in pieces)
            assert ports == range_count(total.ports), f"{aid}: a port is held twice or lost"
            assert normalize(total_of(pieces).ports) == normalize(total.ports)
            for fid, r in self.alloc.allocation(aid).items():
                assert same(r, self.model.held[aid, fid])


class PriorityMachine(AllocatorMachine):
    factory = StrictPriority
    role_key = staticmethod(priority_role_key)


AllocatorMachine.TestCase.settings = settings(
    AllocatorMachine.TestCase.settings, stateful_step_count=20
)
PriorityMachine.TestCase.settings = settings(
    PriorityMachine.TestCase.settings, stateful_step_count=20
)
TestDRF = AllocatorMachine.TestCase
TestStrictPriority = PriorityMachine.TestCase


# -- @given properties ------------------------------------------------------------------------


@given(
    totals=st.lists(agent_resources, min_size=1, max_size=6),
    roles=st.lists(st.sampled_from(ROLES), min_size=1, max_size=5),
    order=st.randoms(use_true_random=False),
    factory=st.sampled_from([HierarchicalDRF, StrictPriority]),
)
def test_grants_do_not_depend_on_the_order_things_were_added(
    totals: list[Resources], roles: list[str], order: object, factory: type[HierarchicalAllocator]
) -> None:
    import random

    assert isinstance(order, random.Random)
    agents = [(f"agent-{i}", t) for i, t in enumerate(totals)]
    fws = [(f"fw-{i}", r) for i, r in enumerate(roles)]
    weights = [("r1", 2.0), ("r2", 0.5)]

    def run(agents: list[tuple[str, Resources]], fws: list[tuple[str, str]]) -> list[list[Grant]]:
        a = factory()
        for role, w in weights:
            a.set_weight(role, w)
        for fid, role in fws:
            a.add_framework(fid, role, 0.0)
        for aid, total in agents:
            a.add_agent(aid, total, {})
        return [a.allocate(1.0), a.allocate(2.0)]

    shuffled_agents, shuffled_fws = list(agents), list(fws)
    order.shuffle(shuffled_agents)
    order.shuffle(shuffled_fws)
    assert run(agents, fws) == run(shuffled_agents, shuffled_fws)

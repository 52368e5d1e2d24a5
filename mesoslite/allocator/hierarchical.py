"""The two-level offer allocator shared by `drf` and `priority`: roles, then frameworks in a role.

This is Mesos' `HierarchicalAllocatorProcess` stage 2 (`__generateOffers` in
src/master/allocator/mesos/hierarchical.cpp): for each
agent, for each role in role order, for each unsuppressed framework of that role in DRF order,
the first framework whose refuse filters let the agent's available resources through is
offered all of them (whole-agent offers). The subclasses only say how roles are ordered
(`_role_key`); frameworks inside a role are always ordered by DRF.

Static reservations and quota limits make an agent's resources go to more than one role in a
cycle, as in Mesos: a role is offered what is allocatable to it (the unreserved pool and the
pools reserved for it or an ancestor, `Resources.allocatable_to`), its unreserved scalars cut
down to its quota limits (`set_quota`) less what it consumes (its unreserved allocation plus
all its reservations, Mesos' consumed quota); the next role in order gets what is left. Ports
and reservations are never cut by limits. Guarantees are not enforced (no stage 1).
Without reservations or limits on an agent the first framework takes everything, as above.

Determinism instead of Mesos' `random_shuffle` of agents: each cycle visits the agents in
sorted id order rotated by one more place than the cycle before, so that no agent is always
first. Nothing else depends on time except the `now` arguments, and no set or hash order
reaches the output.

Shares are maintained incrementally: each role keeps its active frameworks in a sorted list of
keys `(share, allocation count, framework id)`, and the allocator keeps the roles with an
active framework in a sorted list of role keys. A grant moves one framework key and one role
key (bisect: O(log n) compares and one list move). A change of the cluster total (an agent
added or removed) re-sorts everything, once, at the start of the next cycle.

Bookkeeping rules beyond the Protocol:
- `add_agent` of a known agent is a re-registration: the old incarnation (its allocations and
  the filters on it) is dropped first.
- `allocated` in `add_agent` may name frameworks that have not (re-)subscribed yet: their
  allocation counts from the moment they do.
- `remove_framework` of a framework that still holds resources keeps those resources in use on
  their agents (never offered twice) until they are recovered; they no longer weigh in its
  role's share (Mesos untracks them).
- `recover` for an agent that is gone is ignored (the resources went with it).
- `add_framework` of a known framework is a failover: its allocation stays, its role may
  change, and its filters and suppression are cleared (Mesos' deactivate/activate).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mesoslite.allocator import Grant
from mesoslite.resources import ResourceError, Resources, range_count, ranges_contain

ALLOCATION_INTERVAL = 1.0  # seconds; Mesos' --allocation_interval default
DEFAULT_REFUSE_SECONDS = 5.0  # Filters.refuse_seconds default (mesos.proto)
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0  # Mesos caps refuse filters at 365 days
MIN_ALLOCATABLE = (Resources.of(cpus=0.01), Resources.of(mem=32))  # --min_allocatable_resources
EMPTY = Resources()

FrameworkKey = tuple[float, int, str]  # (dominant share, allocation count, framework id)
RoleKey = tuple[float, float, int, str]  # (priority class, share, allocation count, role)


class AllocatorError(ValueError):
    """A call the allocator cannot honour (unknown id, over-recovery, bad weight); nothing changed."""


def dominant_share(allocation: Iterable[int], total: Iterable[int]) -> float:
    """Max over scalar resources of allocation / total (resources with total 0 are left out)."""
    share = 0.0
    for a, t in zip(allocation, total, strict=True):
        if a and t:
            s = a / t
            if s > share:
                share = s
    return share


def merged(pieces: Iterable[Resources]) -> Resources:
    """The sum of `pieces` (no arithmetic for one piece)."""
    out: Resources | None = None
    for r in pieces:
        out = r if out is None else out + r
    return EMPTY if out is None else out


def scalars(r: Resources) -> tuple[int, int, int, int]:
    """The four standard scalars, reserved or not (shares count reservations too)."""
    if r.reserved:
        r = r.flatten()
    return (r.cpus_m, r.mem_m, r.disk_m, r.gpus_m)


def filter_timeout(refuse_seconds: float, interval: float = ALLOCATION_INTERVAL) -> float:
    """Seconds a refuse filter lives: 0 for none, else Mesos' clamping (MESOS-4302: at least one
    allocation interval, at most 365 days)."""
    if not refuse_seconds >= 0:  # negative (or NaN): the default
        refuse_seconds = DEFAULT_REFUSE_SECONDS
    if refuse_seconds == 0:
        return 0.0
    return max(interval, min(refuse_seconds, MAX_REFUSE_SECONDS))


@dataclass(slots=True, eq=False)
class _Agent:
    id: str
    total: Resources
    free: Resources
    # framework id -> resources in use or offered, as granted: merging port ranges on every
    # grant costs more than the rest of a cycle, and a decline returns one piece as it was.
    allocated: dict[str, list[Resources]]


@dataclass(slots=True, eq=False)
class _Framework:
    id: str
    role: str | None  # None: not subscribed (yet, or any more), only holds resources
    alloc: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # scalars, all agents
    count: int = 0  # times allocated (never decremented, as in Mesos' DRFSorter)
    suppressed: bool = False
    key: FrameworkKey | None = None  # its key in its role's `active` list, if listed
    agents: dict[str, None] = field(default_factory=dict)  # agents it holds resources on
    filtered: dict[str, None] = field(default_factory=dict)  # agents it has filters on


@dataclass(slots=True, eq=False)
class RoleState:
    name: str
    weight: float = 1.0
    alloc: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # subscribed frameworks'
    count: int = 0
    frameworks: dict[str, None] = field(default_factory=dict)  # subscribed, in arrival order
    active: list[FrameworkKey] = field(default_factory=list)  # unsuppressed, sorted
    key: RoleKey | None = None  # its key in the allocator's `_order`, if listed
    limits: dict[str, int] | None = None  # quota limits in thousandths by resource name


Filter = tuple[float, Resources]  # (expires at, refused resources)


class HierarchicalAllocator(ABC):
    """Whole-agent offers to the first unfiltered framework; role order left to subclasses."""

    def __init__(
        self,
        allocation_interval: float = ALLOCATION_INTERVAL,
        min_allocatable: Iterable[Resources] = MIN_ALLOCATABLE,
    ) -> None:
        self.allocation_interval = allocation_interval
        self._min = [(*scalars(r), r.ports) for r in min_allocatable]
        self._agents: dict[str, _Agent] = {}
        self._agent_ids: list[str] = []  # sorted
        self._frameworks: dict[str, _Framework] = {}
        self._roles: dict[str, RoleState] = {}
        self._order: list[RoleKey] = []  # roles with an active framework, sorted
        self._filters: dict[str, dict[str, list[Filter]]] = {}  # agent -> framework -> filters
        self._total = [0, 0, 0, 0]
        self._dirty = False  # keys are stale (cluster total or a weight changed)
        self._cycle = 0
        self._limited: dict[str, RoleState] = {}  # roles with quota limits

    # -- ordering -------------------------------------------------------------------------------

    @abstractmethod
    def _role_key(self, role: RoleState) -> RoleKey:
        """Where `role` stands among roles: ascending `(class, share, count, name)`."""

    def _role_share(self, role: RoleState) -> float:
        return dominant_share(role.alloc, self._total)

    def _framework_key(self, fw: _Framework) -> FrameworkKey:
        return (dominant_share(fw.alloc, self._total), fw.count, fw.id)

    # -- the Allocator Protocol -----------------------------------------------------------------

    def add_framework(self, framework_id: str, role: str, now: float) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            fw = self._frameworks[framework_id] = _Framework(framework_id, None)
        elif fw.role is not None:  # failover
            self._unsubscribe(fw)
        fw.suppressed = False
        self._clear_filters(fw)
        fw.role = role
        r = self._role(role)
        r.frameworks[fw.id] = None
        self._add_to_role(r, fw.alloc, 1)
        self._activate(fw)

    def remove_framework(self, framework_id: str) -> None:
        fw = self._known(framework_id)
        self._unsubscribe(fw)
        self._clear_filters(fw)
        fw.suppressed = False
        self._forget_if_idle(fw)

    def set_weight(self, role: str, weight: float) -> None:
        if not (weight > 0 and math.isfinite(weight)):
            raise AllocatorError(f"role {role!r}: weight must be a positive number, got {weight}")
        r = self._role(role)
        if r.weight != weight:
            r.weight = weight
            self._place_role(r)

    def set_quota(self, role: str, limits: Mapping[str, float]) -> None:
        """Quota limits of `role` by resource name (none: no limit), from the next cycle on."""
        for name, value in limits.items():
            if not (value >= 0 and math.isfinite(value)):
                raise AllocatorError(f"role {role!r}: limit of {name} must be >= 0, got {value}")
        r = self._role(role)
        r.limits = {n: round(v * 1000) for n, v in limits.items()} or None
        if r.limits is None:
            self._limited.pop(role, None)
        else:
            self._limited[role] = r

    def add_agent(self, agent_id: str, total: Resources, allocated: dict[str, Resources]) -> None:
        used = [(fid, r) for fid, r in sorted(allocated.items()) if not r.is_empty()]
        in_use = merged(r for _, r in used)
        overlap = len(used) > 1 and range_count(in_use.ports) != sum(
            range_count(r.ports) for _, r in used
        )
        try:
            free = total - in_use if used else total
        except ResourceError:
            overlap = True
        if overlap:
            raise AllocatorError(f"agent {agent_id}: allocations exceed or overlap {total}")
        if agent_id in self._agents:
            self.remove_agent(agent_id)
        agent = _Agent(agent_id, total, free, {fid: [r] for fid, r in used})
        self._agents[agent_id] = agent
        insort(self._agent_ids, agent_id)
        for i, v in enumerate(scalars(total)):
            self._total[i] += v
        self._dirty = True
        for fid, r in used:
            fw = self._frameworks.get(fid)
            if fw is None:
                fw = self._frameworks[fid] = _Framework(fid, None)
            fw.agents[agent.id] = None
            self._track(fw, r, 1)

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise AllocatorError(f"unknown agent {agent_id!r}")
        for fid in self._filters.pop(agent_id, {}):
            del self._frameworks[fid].filtered[agent_id]
        for fid, pieces in agent.allocated.items():
            fw = self._frameworks[fid]
            del fw.agents[agent_id]
            for r in pieces:
                self._track(fw, r, -1)
            self._forget_if_idle(fw)
        del self._agents[agent_id]
        del self._agent_ids[bisect_left(self._agent_ids, agent_id)]
        for i, v in enumerate(scalars(agent.total)):
            self._total[i] -= v
        self._dirty = True

    def allocate(self, now: float) -> list[Grant]:
        if self._dirty:
            self._resort()
        grants: list[Grant] = []
        ids, n = self._agent_ids, len(self._agent_ids)
        start = self._cycle % n if n else 0
        self._cycle += 1
        agents, filters, roles, order = self._agents, self._filters, self._roles, self._order
        frameworks, allocatable = self._frameworks, self._allocatable
        consumed = self._consumed() if self._limited else None
        for aid in ids[start:] + ids[:start]:
            if not order:  # nobody wants anything
                break
            agent = agents[aid]
            free = agent.free
            if free.reserved or consumed is not None:
                self._allocate_by_role(agent, now, grants, consumed)
                continue
            if not allocatable(free):
                continue
            agent_filters = filters.get(aid)
            chosen = None
            for role_key in order:
                for fw_key in roles[role_key[3]].active:
                    if agent_filters is not None:
                        fw_filters = agent_filters.get(fw_key[2])
                        if fw_filters is not None and self._refused(
                            aid, fw_key[2], fw_filters, free, now
                        ):
                            continue
                    chosen = frameworks[fw_key[2]]
                    break
                if chosen is not None:
                    break
            if chosen is None:
                continue
            grants.append(Grant(chosen.id, aid, free))
            held = agent.allocated.get(chosen.id)
            if held is None:
                agent.allocated[chosen.id] = [free]
            else:
                held.append(free)
            agent.free = EMPTY
            chosen.agents[aid] = None
            self._track(chosen, free, 1)
        return grants

    def _allocate_by_role(
        self,
        agent: _Agent,
        now: float,
        grants: list[Grant],
        consumed: dict[str, dict[str, int]] | None,
    ) -> None:
        """Mesos' stage 2 for one agent: each role in order, each of its frameworks in order,
        is offered what is allocatable to the role, within its quota limits."""
        for role_key in list(self._order):  # a grant moves keys: sorted once per agent, as Mesos
            if agent.free.is_empty():
                return
            role = self._roles[role_key[3]]
            used = consumed.get(role.name) if consumed is not None else None
            for fw_key in list(role.active):
                offer = agent.free.allocatable_to(role.name)
                if role.limits is not None and used is not None:
                    offer = offer.capped({n: v - used.get(n, 0) for n, v in role.limits.items()})
                if offer.is_empty() or not self._allocatable(offer.flatten()):
                    break
                filters = self._filters.get(agent.id, {}).get(fw_key[2])
                if filters is not None and self._refused(agent.id, fw_key[2], filters, offer, now):
                    continue
                chosen = self._frameworks[fw_key[2]]
                grants.append(Grant(chosen.id, agent.id, offer))
                agent.allocated.setdefault(chosen.id, []).append(offer)
                agent.free = EMPTY if offer == agent.free else agent.free - offer
                chosen.agents[agent.id] = None
                self._track(chosen, offer, 1)
                if used is not None:
                    for name, amount in offer.unreserved().quantities().items():
                        used[name] = used.get(name, 0) + amount

    def _consumed(self) -> dict[str, dict[str, int]]:
        """Each limited role's consumed quota: its unreserved allocation and its reservations."""
        out: dict[str, dict[str, int]] = {name: {} for name in self._limited}
        for agent in self._agents.values():
            for name, pool in agent.total.reserved:
                if name in out:
                    _add(out[name], pool.quantities())
            for fid, pieces in agent.allocated.items():
                role = self._frameworks[fid].role
                if role in out:
                    for piece in pieces:
                        _add(out[role], piece.unreserved().quantities())
        return out

    def recover(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        now: float,
        refuse_seconds: float | None = None,
    ) -> None:
        agent = self._agents.get(agent_id)
        if agent is None:
            return  # the agent is gone, and its resources with it
        pieces = agent.allocated.get(framework_id, [])
        if resources in pieces:  # a whole offer or task back: the common case, no arithmetic
            pieces.remove(resources)
        else:
            held = merged(pieces)
            if not pieces or not held.contains(resources):
                raise AllocatorError(
                    f"framework {framework_id!r} does not hold {resources} on agent {agent_id!r}"
                    f" (it holds {held if pieces else 'nothing'})"
                )
            rest = held - resources
            pieces[:] = [] if rest.is_empty() else [rest]
        fw = self._frameworks[framework_id]
        if not pieces:
            del agent.allocated[framework_id]
            del fw.agents[agent_id]
        agent.free = resources if agent.free.is_empty() else agent.free + resources
        self._track(fw, resources, -1)
        timeout = filter_timeout(refuse_seconds, self.allocation_interval) if refuse_seconds else 0
        if timeout and fw.role is not None and not resources.is_empty():
            self._filters.setdefault(agent_id, {}).setdefault(framework_id, []).append(
                (now + timeout, resources)
            )
            fw.filtered[agent_id] = None
        self._forget_if_idle(fw)

    def suppress(self, framework_id: str) -> None:
        fw = self._known(framework_id)
        if not fw.suppressed:
            fw.suppressed = True
            self._deactivate(fw)

    def revive(self, framework_id: str) -> None:
        fw = self._known(framework_id)
        self._clear_filters(fw)
        if fw.suppressed:
            fw.suppressed = False
            self._activate(fw)

    # -- queries (not part of the Protocol; for the master's state and for tests) ---------------

    def available(self, agent_id: str) -> Resources:
        """What the agent has that is neither in use nor offered."""
        return self._agents[agent_id].free

    def allocation(self, agent_id: str) -> dict[str, Resources]:
        """Framework id -> resources in use or offered on the agent."""
        return {fid: merged(p) for fid, p in self._agents[agent_id].allocated.items()}

    def share(self, framework_id: str) -> float:
        """The framework's dominant share of the cluster (unweighted)."""
        return dominant_share(self._known(framework_id).alloc, self._total)

    def refused(self, framework_id: str, agent_id: str, now: float) -> list[Resources]:
        """The resources the framework's live filters on the agent refuse, oldest first."""
        live = self._filters.get(agent_id, {}).get(framework_id, [])
        return [r for expires, r in live if expires > now]

    # -- bookkeeping ----------------------------------------------------------------------------

    def _known(self, framework_id: str) -> _Framework:
        fw = self._frameworks.get(framework_id)
        if fw is None or fw.role is None:
            raise AllocatorError(f"unknown framework {framework_id!r}")
        return fw

    def _role(self, name: str) -> RoleState:
        r = self._roles.get(name)
        if r is None:
            r = self._roles[name] = RoleState(name)
        return r

    def _allocatable(self, free: Resources) -> bool:
        """Mesos' `allocatable()`: at least one of the min-allocatable sets fits."""
        for cpus, mem, disk, gpus, ports in self._min:
            if (
                free.cpus_m >= cpus
                and free.mem_m >= mem
                and free.disk_m >= disk
                and free.gpus_m >= gpus
                and (not ports or ranges_contain(free.ports, ports))
            ):
                return True
        return False

    def _refused(
        self,
        agent_id: str,
        framework_id: str,
        fw_filters: list[Filter],
        offer: Resources,
        now: float,
    ) -> bool:
        """Whether a live filter refuses `offer`; expired filters are dropped on the way."""
        live = [f for f in fw_filters if f[0] > now]
        if len(live) != len(fw_filters):
            if live:
                self._filters[agent_id][framework_id] = live
            else:
                self._drop_filters(agent_id, framework_id)
        return any(refused == offer or refused.contains(offer) for _, refused in live)

    def _drop_filters(self, agent_id: str, framework_id: str) -> None:
        on_agent = self._filters[agent_id]
        del on_agent[framework_id]
        if not on_agent:
            del self._filters[agent_id]
        del self._frameworks[framework_id].filtered[agent_id]

    def _clear_filters(self, fw: _Framework) -> None:
        for aid in list(fw.filtered):
            self._drop_filters(aid, fw.id)

    def _track(self, fw: _Framework, r: Resources, sign: int) -> None:
        """Add (sign 1, one more allocation) or remove (sign -1) `r` to the framework and role."""
        a, role = fw.alloc, fw.role
        cpus, mem, disk, gpus = scalars(r)
        a[0] += sign * cpus
        a[1] += sign * mem
        a[2] += sign * disk
        a[3] += sign * gpus
        if sign > 0:
            fw.count += 1
        if role is None:
            return
        r_ = self._roles[role]
        self._add_to_role(r_, (cpus, mem, disk, gpus), sign, counted=sign > 0)
        if fw.key is not None:
            active = r_.active
            del active[bisect_left(active, fw.key)]
            fw.key = self._framework_key(fw)
            insort(active, fw.key)
        self._place_role(r_)

    def _add_to_role(
        self,
        role: RoleState,
        amounts: Iterable[int],
        sign: int,
        counted: bool = False,
    ) -> None:
        for i, v in enumerate(amounts):
            role.alloc[i] += sign * v
        if counted:
            role.count += 1

    def _place_role(self, role: RoleState) -> None:
        """Put the role's current key in `_order` if it has an active framework, else take it out."""
        if role.key is not None:
            del self._order[bisect_left(self._order, role.key)]
            role.key = None
        if role.active:
            role.key = self._role_key(role)
            insort(self._order, role.key)

    def _activate(self, fw: _Framework) -> None:
        if fw.suppressed or fw.role is None or fw.key is not None:
            return
        role = self._roles[fw.role]
        fw.key = self._framework_key(fw)
        insort(role.active, fw.key)
        self._place_role(role)

    def _deactivate(self, fw: _Framework) -> None:
        if fw.key is None or fw.role is None:
            return
        role = self._roles[fw.role]
        del role.active[bisect_left(role.active, fw.key)]
        fw.key = None
        self._place_role(role)

    def _unsubscribe(self, fw: _Framework) -> None:
        self._deactivate(fw)
        if fw.role is not None:
            role = self._roles[fw.role]
            self._add_to_role(role, fw.alloc, -1)
            del role.frameworks[fw.id]
            fw.role = None
            self._place_role(role)

    def _forget_if_idle(self, fw: _Framework) -> None:
        if fw.role is None and not fw.agents:
            del self._frameworks[fw.id]

    def _resort(self) -> None:
        """Recompute every key after the cluster total or a weight changed."""
        self._order = []
        for role in self._roles.values():
            role.active = []
            for fid in role.frameworks:
                fw = self._frameworks[fid]
                if fw.key is not None:
                    fw.key = self._framework_key(fw)
                    role.active.append(fw.key)
            role.active.sort()
            role.key = None
            if role.active:
                role.key = self._role_key(role)
                self._order.append(role.key)
        self._order.sort()
        self._dirty = False


def _add(into: dict[str, int], amounts: Mapping[str, int]) -> None:
    for name, amount in amounts.items():
        into[name] = into.get(name, 0) + amount

"""Offer matching: place ready launch requests on hosts, Fenzo-style and deterministic.

Tasks are placed one at a time, in a fixed order: hard ExclusiveHost first (they need empty
hosts), then other hard constraints, then soft ones, then the rest; within each, the longest
waiting first (by `ready_at`), then by job, stage, worker index, number and id. (Largest first
packs a single resource no better once hosts are chosen best-fit, and packs CPU and memory
together worse: it lines up tasks of one shape, where arrival order mixes shapes that
complement each other.) search.py says how the host of each task is chosen.

Being greedy, the matcher can miss a placement that exists (bin-packing is NP-hard):
tests/property/test_matcher_properties.py states the instances where it provably cannot, and
tests/unit/test_matcher.py pins examples where it does.

`Matcher` keeps hosts between calls, as Fenzo's TaskScheduler keeps its leases, so that an
iteration costs what its tasks need rather than a pass over every offer; `match` is the
one-shot, pure function over lists.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

from core.effects import LaunchRequest
from core.model import DurationType
from core.scheduling.config import MatchConfig
from core.scheduling.constraints import ExclusiveHost, ZoneBalance, host_test, label, resolve
from core.scheduling.hosts import Held, Host, TaskRequest
from core.scheduling.offers import (
    Assignment,
    MatchResult,
    Offer,
    Placement,
    PlacementFailure,
    take_ports,
)
from core.scheduling.search import Run, Search

DEFAULT_CONFIG = MatchConfig()
_EXCLUSIVE = ExclusiveHost()
_BALANCE = ZoneBalance()
_NO_OFFERS = PlacementFailure("no offers")
_ALREADY_PLACED = PlacementFailure("already placed")
# The attribute holding a resource on a Host (free) and on a TaskRequest (asked), by its name in reasons.
_RESOURCE = {"mem": "mem", "network": "net", "disk": "disk", "ports": "nports"}


def _worker_id(u: tuple[str, PlacementFailure]) -> str:
    return u[0]


def _order(t: TaskRequest) -> tuple[object, ...]:
    kind = 0 if t.exclusive else 1 if t.hard else 2 if t.soft else 3
    return (kind, t.ready_at, t.job_id, t.stage, t.index, t.number, t.worker_id)


class Matcher(Search):
    """Hosts built from offers and placements, kept between calls of `match`.

    Feed it with `add_offers`, `remove_offers` (declined, rescinded, expired), `add_placements`
    and `remove_placements` (tasks ended); the order of those calls never changes an answer.
    """

    def match(
        self,
        requests: Sequence[LaunchRequest],
        now: float,
        preferred_clusters: Mapping[str, str] | None = None,
    ) -> MatchResult:
        """Place the requests ready at `now` on the offers held.

        The offers of every host that gets a task are used up (Mesos launches on all of
        them), and its tasks become placements. Offers of other hosts stay held and are
        listed as `declined`: decline them (and `remove_offers`), or keep them for later.
        `preferred_clusters` maps worker ids to Mantis' preferred cluster, if any.
        """
        tasks, unplaced = self._tasks(requests, now, preferred_clusters or {})
        self.sync()
        placed: list[tuple[TaskRequest, Host, tuple[tuple[int, ...], Held]]] = []
        failed: dict[Hashable, PlacementFailure] = {}
        run: Run | None = None
        for task in tasks:
            group = self._group(task)
            if group in failed:  # an identical task of this stage found no host just now
                unplaced.append((task.worker_id, failed[group]))
                continue
            host, run = self._search(
                task, group, run if run is not None and run.group == group else None
            )
            if host is None:
                failed[group] = self._why(task)
                unplaced.append((task.worker_id, failed[group]))
                continue
            placed.append((task, host, self._assign(task, host)))
        return self._commit(placed, unplaced)

    # ------------------------------------------------------------------ tasks

    def _tasks(
        self, requests: Sequence[LaunchRequest], now: float, preferred: Mapping[str, str]
    ) -> tuple[list[TaskRequest], list[tuple[str, PlacementFailure]]]:
        asg = self.config.asg_attribute
        seen: set[str] = set()
        tasks: list[TaskRequest] = []
        unplaced: list[tuple[str, PlacementFailure]] = []
        for r in requests:
            if r.worker_id in seen:
                raise ValueError(f"duplicate request for worker {r.worker_id!r}")
            seen.add(r.worker_id)
            if r.ready_at > now:
                continue  # backing off: neither placed nor a failure
            if r.worker_id in self.placement_agent:
                unplaced.append((r.worker_id, _ALREADY_PLACED))
                continue
            hard = tuple(resolve(c, asg) for c in r.hard_constraints) if r.hard_constraints else ()
            soft = tuple(resolve(c, asg) for c in r.soft_constraints) if r.soft_constraints else ()
            m = r.machine
            tasks.append(
                TaskRequest(
                    r.worker_id,
                    r.job_id,
                    r.stage,
                    r.index,
                    r.number,
                    r.ready_at,
                    m.cpu_cores,
                    m.memory_mb,
                    m.disk_mb,
                    m.network_mbps,
                    m.ports_needed,
                    r.duration_type == DurationType.Perpetual,
                    preferred.get(r.worker_id, ""),
                    hard,
                    soft,
                    _EXCLUSIVE in hard,
                    _EXCLUSIVE in soft,
                    _BALANCE in hard + soft,
                )
            )
        tasks.sort(key=_order)
        return tasks, unplaced

    def _group(self, t: TaskRequest) -> Hashable:
        """Tasks alike for placement, within one call: once one fails, the rest fail too, and
        one may resume the search where the last stopped (see `Run`).

        Within a call free resources only shrink and constraint ledgers only fill, so hosts
        ruled out stay ruled out and others keep their rank; the zone counts of ZoneBalance
        change both, so the key includes them (each ZoneBalance worker is its own group).
        """
        zones: tuple[tuple[str, int], ...] = ()
        if t.balanced:
            zones = tuple(sorted(self.stage_zones.get((t.job_id, t.stage), {}).items()))
        return (
            t.job_id,
            t.stage,
            t.cpus,
            t.mem,
            t.disk,
            t.net,
            t.nports,
            t.perpetual,
            t.preferred_cluster,
            t.hard,
            t.soft,
            zones,
        )

    def _why(self, t: TaskRequest) -> PlacementFailure:
        """Why no host took the task: what every agent on offer lacks, else per reason how
        many agents it ruled out. Only failures pay for this: hosts short of CPUs are
        skipped by one bisect, the rest are visited once."""
        hosts = self.index.hosts
        if not hosts:
            return _NO_OFFERS
        first = self.index.start(t.cpus, float("-inf"))  # all before it lack CPUs
        if first == len(hosts):
            return PlacementFailure(
                "resource", "cpus", t.cpus, hosts[-1].cpus, 0.0, len(hosts), (("cpus", first),)
            )
        scope = self._scope(t)
        tests = [(label(c), host_test(c, scope)) for c in t.hard]
        counts: dict[str, int] = {}
        for h in hosts[first:]:
            reason = h.shortfall(t)
            excl = h.machine.excl
            if not reason and excl and (len(excl) > 1 or t.job_id not in excl):
                reason = "another job's ExclusiveHost"
            if not reason:
                reason = next((name for name, ok in tests if not ok(h)), "fitness 0")
            counts[reason] = counts.get(reason, 0) + 1
        with_cpus = t.cpus if first else 0.0
        ruled_out = tuple(sorted(counts.items()))
        if first:
            ruled_out = (("cpus", first), *ruled_out)
        (reason, *others) = counts
        attr = _RESOURCE.get(reason)
        if others or (attr is None and reason not in dict(tests)):
            return PlacementFailure("mixed", agents=len(hosts), ruled_out=ruled_out)
        if attr is None:
            return PlacementFailure(
                "constraint", reason, with_cpus=with_cpus, agents=len(hosts), ruled_out=ruled_out
            )
        largest = max(getattr(h, attr) for h in hosts[first:])
        return PlacementFailure(
            "resource", reason, getattr(t, attr), largest, with_cpus, len(hosts), ruled_out
        )

    # ------------------------------------------------------------------ results

    def _assign(self, t: TaskRequest, h: Host) -> tuple[tuple[int, ...], Held]:
        h.cpus -= t.cpus
        h.mem -= t.mem
        h.net -= t.net
        h.disk -= t.disk
        ports = take_ports(h.ports, t.nports)
        h.nports -= t.nports
        zone = h.attributes.get(self.config.zone_attribute, "")
        held = Held(
            t.cpus,
            t.mem,
            t.disk,
            t.net,
            t.job_id,
            t.stage,
            zone,
            t.perpetual,
            t.exclusive,
            t.soft_exclusive,
        )
        self.count_task(h, held, +1)
        self.rekey(h)
        return ports, held

    def _commit(
        self,
        placed: list[tuple[TaskRequest, Host, tuple[tuple[int, ...], Held]]],
        unplaced: list[tuple[str, PlacementFailure]],
    ) -> MatchResult:
        by_host: dict[str, list[tuple[TaskRequest, tuple[int, ...], Held]]] = {}
        for t, h, (ports, held) in placed:
            by_host.setdefault(h.agent_id, []).append((t, ports, held))
        assignments: list[Assignment] = []
        used: list[Host] = []
        for agent, items in by_host.items():
            h = self.hosts[agent]
            used.append(h)
            offer_ids = tuple(sorted(h.offers))
            attributes = tuple(sorted(h.attributes.items()))
            for t, ports, held in items:
                assignments.append(
                    Assignment(
                        t.worker_id,
                        agent,
                        h.hostname,
                        offer_ids,
                        ports,
                        t.cpus,
                        t.mem,
                        t.disk,
                        t.net,
                        attributes,
                    )
                )
                h.placed[t.worker_id] = held  # a placement from now on, counted already
                self.placement_agent[t.worker_id] = agent
        self.use_offers(used)  # Mesos launches on all of a host's offers
        assignments.sort(key=lambda a: a.worker_id)
        unplaced.sort(key=_worker_id)
        return MatchResult(tuple(assignments), tuple(self.held_offer_ids()), tuple(unplaced))


def match(
    requests: Sequence[LaunchRequest],
    offers: Iterable[Offer],
    placements: Iterable[Placement],
    now: float,
    config: MatchConfig = DEFAULT_CONFIG,
    preferred_clusters: Mapping[str, str] | None = None,
) -> MatchResult:
    """Place the requests ready at `now` on the offers, given the tasks already placed.

    Pure and deterministic: the same lists in any order give the same result.
    """
    matcher = Matcher(config)
    matcher.add_offers(offers)
    matcher.add_placements(placements)
    return matcher.match(requests, now, preferred_clusters)

"""The cluster as the matcher sees it: hosts from offers and placements, ledgers, indexes.

State is a function of the *set* of offers and placements, never of the order they came in:
sums are exactly rounded (`fsum`), a host's name and attributes come from its smallest offer
id, and every index is sorted by a total order. So an incremental `Matcher` and a one-shot
`match` over the same offers and placements give the same answer.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, TypeVar

from core.model import DurationType
from core.scheduling.constraints import ExclusiveHost, resolve
from core.scheduling.hosts import Held, Host, Machine, SortedHosts
from core.scheduling.offers import Offer, Placement

if TYPE_CHECKING:
    from core.scheduling.config import MatchConfig

StageKey = tuple[str, int]
_EXCLUSIVE = ExclusiveHost()
_K = TypeVar("_K", str, StageKey)


def _bump(counts: dict[str, int], key: str, delta: int) -> None:
    n = counts.get(key, 0) + delta
    if n:
        counts[key] = n
    else:
        counts.pop(key, None)  # absent means none: emptiness tests stay O(1)


def _bump_in(ledger: dict[_K, dict[str, int]], item: _K, key: str, delta: int) -> None:
    counts = ledger.get(item)
    if counts is None:
        counts = ledger[item] = {}
    _bump(counts, key, delta)
    if not counts:
        del ledger[item]  # a long-lived Matcher must not keep every stage it ever saw


class ClusterState:
    """Hosts with their offers and tasks, kept indexed by free CPUs."""

    def __init__(self, config: MatchConfig) -> None:
        self.config = config
        self.hosts: dict[str, Host] = {}
        self.offer_agent: dict[str, str] = {}
        self.placement_agent: dict[str, str] = {}
        self.index = SortedHosts()  # every host with an offer
        self.subindexes: dict[Hashable, SortedHosts] = {}  # made on first use, then kept
        self.machines: dict[str, Machine] = {}
        self.stage_hosts: dict[StageKey, dict[str, int]] = {}  # by Machine key
        self.stage_zones: dict[StageKey, dict[str, int]] = {}
        self.job_agents: dict[str, dict[str, int]] = {}
        self.zone_hosts: dict[str, int] = {}  # zones of the hosts on offer: "known zones"
        self.total_cpus: dict[float, int] = {}  # total CPUs of the hosts on offer
        self.max_total_cpus = 0.0  # for fitness bounds; a function of the hosts on offer
        self._dirty: dict[str, Host] = {}  # hosts to re-index (a dict: ordered, unlike a set)
        # Held offer ids, sorted, so that listing the unused ones costs no sort per call.
        self._offer_ids: list[str] = []
        self._new_offer_ids: list[str] = []

    # ------------------------------------------------------------------ offers and placements

    def add_offers(self, offers: Iterable[Offer]) -> None:
        for o in offers:
            if o.offer_id in self.offer_agent:
                raise ValueError(f"duplicate offer id {o.offer_id!r}")
            self.offer_agent[o.offer_id] = o.agent_id
            self._new_offer_ids.append(o.offer_id)
            host = self._host(o.agent_id, o.hostname)
            host.offers[o.offer_id] = o
            self._dirty[host.agent_id] = host

    def remove_offers(self, offer_ids: Iterable[str]) -> None:
        """Offers declined, rescinded or expired; unknown ids are ignored."""
        for offer_id in offer_ids:
            agent = self.offer_agent.pop(offer_id, None)
            if agent is not None:
                self._forget_offer_ids([offer_id])
                host = self.hosts[agent]
                del host.offers[offer_id]
                self._dirty[agent] = host

    def held_offer_ids(self) -> list[str]:
        """Ids of the offers held, sorted."""
        new = self._new_offer_ids
        if new:
            if len(new) * 16 < len(self._offer_ids):
                for offer_id in new:
                    insort(self._offer_ids, offer_id)
            else:
                self._offer_ids += new
                self._offer_ids.sort()
            new.clear()
        return self._offer_ids

    def _forget_offer_ids(self, offer_ids: list[str]) -> None:
        ids = self.held_offer_ids()
        if len(offer_ids) * 8 > len(ids):  # many: one pass beats many deletions
            gone = set(offer_ids)
            ids[:] = [o for o in ids if o not in gone]
        else:
            for offer_id in offer_ids:
                del ids[bisect_left(ids, offer_id)]

    def use_offers(self, hosts: list[Host]) -> None:
        """Tasks were launched on these hosts: their offers are gone, and so are they from
        the indexes until new offers come (`sync` then recomputes their resources)."""
        gone: list[str] = []
        for h in hosts:
            for offer_id in h.offers:
                del self.offer_agent[offer_id]
                gone.append(offer_id)
            h.offers.clear()
            h.cpus = h.mem = h.disk = h.net = 0.0
            h.ports, h.nports = [], 0
        self._forget_offer_ids(gone)
        if len(hosts) * 8 > len(self.index):
            for idx in (self.index, *self.subindexes.values()):
                idx.hosts = [h for h in idx.hosts if h.offers]
            for h in hosts:
                h.indexes.clear()
                self._uncount(h)
        else:
            for h in hosts:
                self._unindex(h)

    def add_placements(self, placements: Iterable[Placement]) -> None:
        asg, zone_attribute = self.config.asg_attribute, self.config.zone_attribute
        for p in placements:
            if p.worker_id in self.placement_agent:
                raise ValueError(f"duplicate placement of worker {p.worker_id!r}")
            self.placement_agent[p.worker_id] = p.agent_id
            host = self._host(p.agent_id, p.hostname, strict=False)
            zone = next((v for k, v in p.attributes if k == zone_attribute), "")
            exclusive = bool(p.hard_constraints) and _EXCLUSIVE in (
                resolve(c, asg) for c in p.hard_constraints
            )
            soft_exclusive = bool(p.soft_constraints) and _EXCLUSIVE in (
                resolve(c, asg) for c in p.soft_constraints
            )
            held = Held(
                p.cpus,
                p.mem,
                p.disk,
                p.network_mbps,
                p.job_id,
                p.stage,
                zone,
                p.duration_type == DurationType.Perpetual,
                exclusive,
                soft_exclusive,
            )
            host.placed[p.worker_id] = held
            self.count_task(host, held, +1)
            self._dirty[host.agent_id] = host

    def remove_placements(self, worker_ids: Iterable[str]) -> None:
        """Tasks that ended; unknown ids are ignored."""
        for wid in worker_ids:
            agent = self.placement_agent.pop(wid, None)
            if agent is not None:
                host = self.hosts[agent]
                self.count_task(host, host.placed.pop(wid), -1)
                self._dirty[agent] = host

    def _host(self, agent_id: str, hostname: str, strict: bool = True) -> Host:
        """The agent's host. Offers naming it on two hostnames are refused; a placement (a
        launch from the log) counts on the host as first known: derived state never refuses
        what the store holds."""
        host = self.hosts.get(agent_id)
        if host is None:
            key = hostname if self.config.host_identity == "hostname" else agent_id
            machine = self.machines.get(key)
            if machine is None:
                machine = self.machines[key] = Machine(key)
            machine.agents += 1
            host = self.hosts[agent_id] = Host(agent_id, hostname, machine)
        elif host.hostname != hostname and strict:  # Mesos gives an agent id one hostname
            raise ValueError(f"agent {agent_id!r} is on {host.hostname!r} and {hostname!r}")
        return host

    def _drop_host(self, host: Host) -> None:
        self._unindex(host)
        del self.hosts[host.agent_id]
        host.machine.agents -= 1
        if not host.machine.agents:
            del self.machines[host.machine.key]

    def count_task(self, host: Host, held: Held, delta: int) -> None:
        """Add (delta=1) or remove (-1) a task in every ledger the constraints read."""
        host.tasks += delta
        if held.perpetual:
            host.perpetual += delta
        job, machine = held.job, host.machine
        _bump(machine.jobs, job, delta)
        if held.exclusive:
            _bump(machine.excl, job, delta)
        if held.soft_exclusive:
            _bump(machine.soft_excl, job, delta)
        _bump_in(self.stage_hosts, (job, held.stage), machine.key, delta)
        _bump_in(self.stage_zones, (job, held.stage), held.zone, delta)
        _bump_in(self.job_agents, job, host.agent_id, delta)

    # ------------------------------------------------------------------ indexes

    def sync(self) -> None:
        """Bring the indexes up to date after offers or placements changed."""
        if not self._dirty:
            return
        dirty = list(self._dirty.values())
        self._dirty.clear()
        for host in dirty:
            host.refresh_offers()
            host.refresh_placed()
            if not host.offers and not host.placed:
                self._drop_host(host)
        live = [h for h in dirty if h.agent_id in self.hosts]
        if len(live) * 4 > len(self.index) + len(live):  # many changes: one sort beats inserts
            self._rebuild()
        else:
            for host in live:
                self.reindex(host)

    def reindex(self, host: Host) -> None:
        """Re-file a host whose free CPUs, offers or tasks changed."""
        self._unindex(host)
        if not host.offers:
            return
        host.key = host.index_key()
        self._count(host)
        self.index.add(host)
        for sub in self.subindexes.values():
            if sub.accepts is not None and sub.accepts(host):
                sub.add(host)

    def rekey(self, host: Host) -> None:
        """Re-file a host that took a task: less free, one task more (so it may stop being
        empty, never start), same offers and attributes."""
        key = host.index_key()
        for idx in host.indexes:
            idx.move(host, key)
        host.key = key
        for idx in [i for i in host.indexes if i.accepts is not None and not i.accepts(host)]:
            idx.discard(host)
            host.indexes.remove(idx)

    def _unindex(self, host: Host) -> None:
        for idx in host.indexes:
            idx.discard(host)
        host.indexes.clear()
        self._uncount(host)

    def _count(self, host: Host) -> None:
        """A host goes on offer: its zone becomes known, its size bounds fitness."""
        zone, total = host.attributes.get(self.config.zone_attribute, ""), host.total_cpus
        host.counted = (zone, total)
        _bump(self.zone_hosts, zone, +1)
        self.total_cpus[total] = self.total_cpus.get(total, 0) + 1
        self.max_total_cpus = max(self.max_total_cpus, total)

    def _uncount(self, host: Host) -> None:
        if host.counted is None:
            return
        zone, total = host.counted
        host.counted = None
        _bump(self.zone_hosts, zone, -1)
        n = self.total_cpus[total] - 1
        if n:
            self.total_cpus[total] = n
        else:
            del self.total_cpus[total]
            if total == self.max_total_cpus:
                self.max_total_cpus = max(self.total_cpus, default=0.0)

    def _rebuild(self) -> None:
        self.zone_hosts.clear()
        self.total_cpus.clear()
        self.max_total_cpus = 0.0
        offered = []
        for host in self.hosts.values():
            host.indexes.clear()
            host.counted = None
            if host.offers:
                host.key = host.index_key()
                self._count(host)
                offered.append(host)
        self.index.fill(offered)
        for sub in self.subindexes.values():
            sub.fill(h for h in self.index.hosts if sub.accepts is None or sub.accepts(h))

    def subindex(self, name: Hashable, accepts: Callable[[Host], bool]) -> SortedHosts:
        """The hosts on offer that `accepts` holds for, in index order; kept up to date."""
        sub = self.subindexes.get(name)
        if sub is None:
            sub = self.subindexes[name] = SortedHosts(accepts)
            sub.fill(h for h in self.index.hosts if accepts(h))
        return sub

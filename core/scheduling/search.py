"""Finding the host for one task: which hosts to visit, in what order, and when to stop.

The hosts on offer are visited in order of free CPUs, then free memory, then agent id, from
the first with enough CPUs (and, among those with just enough, enough memory): fullest first,
so that bin-packing finds its best host early. A host must fit every resource and keep every
hard constraint; hosts rank by the number of soft constraints they break, then by fitness.
The search stops at the first *good enough* host (see MatchConfig), or once no host further on
can beat the best found (the fitness bound); else the best host wins, ties going to the
earlier host in that order. The same rules pick the same host whatever shortcut is taken:
smaller candidate lists (hosts with an attribute, empty hosts) keep the order, and a run of
identical tasks resumes where the last one stopped.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Hashable
from typing import NamedTuple

from core.scheduling.constraints import (
    HostAttrValue,
    Scope,
    ZoneBalance,
    attribute_test,
    balanced_zones,
    host_test,
)
from core.scheduling.hosts import EPS, Host, HostKey, TaskRequest, host_key
from core.scheduling.state import ClusterState

_NONE = 1 << 30  # more soft-constraint violations than any task can have
_BALANCE = ZoneBalance()


class Run(NamedTuple):
    """Where the last task's search found its host: the next identical task resumes there
    instead of visiting again every host ahead of it (UniqueHost workers of a large stage
    would otherwise cost a quadratic number of visits). Only for a host that is one agent:
    a task on an agent changes how the other agents of its host rank."""

    group: Hashable
    key: HostKey  # the chosen host's place in the order before it took the task
    host: Host
    best: tuple[Host, int, float] | None  # the best of the hosts ahead of it, with its rank


class Search(ClusterState):
    """The cluster state, and the search for a task's host in it."""

    def _scope(self, t: TaskRequest) -> Scope:
        key = (t.job_id, t.stage)
        zones: frozenset[str] = frozenset()
        if t.balanced:
            zones = balanced_zones(self.stage_zones.get(key, {}), self.zone_hosts)
        return Scope(t.job_id, self.stage_hosts.get(key, {}), zones, self.config.zone_attribute)

    def _attr_index(self, c: HostAttrValue) -> list[Host]:
        return self.subindex(("attr", c), attribute_test(c)).hosts

    def _candidates(self, t: TaskRequest) -> tuple[list[Host], int]:
        """The smallest list holding every host that may take the task, and where to start.

        Every list is in index order, so the choice changes the cost, never the answer.
        """
        hosts = self.index.hosts
        start = self.index.start(t.cpus, t.mem)
        if not t.hard:
            return hosts, start
        for c in t.hard:
            if isinstance(c, HostAttrValue):
                sub = self.subindex(("attr", c), attribute_test(c))
                if len(sub) < len(hosts):
                    hosts, start = sub.hosts, sub.start(t.cpus, t.mem)
        if t.exclusive:  # empty hosts, and hosts running only this job
            empty = self.subindex("empty", lambda h: h.tasks == 0)
            own = [
                h
                for a in self.job_agents.get(t.job_id, {})
                if (h := self.hosts[a]).offers and len(h.machine.jobs) == 1
            ]
            if len(empty) + len(own) < len(hosts) - start:
                own.sort(key=host_key)
                rest = empty.hosts[empty.start(t.cpus, t.mem) :]
                return list(heapq.merge(own, rest, key=host_key)), 0
        return hosts, start

    def _floor(self, t: TaskRequest, scope: Scope) -> int:
        """Soft constraints that no host on offer can keep: every host breaks these."""
        n = 0
        for c in t.soft:
            if isinstance(c, HostAttrValue):
                n += not self._attr_index(c)
            elif isinstance(c, ZoneBalance):
                n += not any(z in self.zone_hosts for z in scope.balanced_zones)
        return n

    def _search(
        self, t: TaskRequest, group: Hashable, resume: Run | None
    ) -> tuple[Host | None, Run | None]:
        """The host for the task (or None), and where a next identical task may resume."""
        hard: list[Callable[[Host], bool]] = []
        soft: list[Callable[[Host], bool]] = []
        floor = 0
        if t.hard or t.soft:
            scope = self._scope(t)
            if (
                t.balanced
                and _BALANCE in t.hard
                and not any(z in self.zone_hosts for z in scope.balanced_zones)
            ):
                return None, None  # the least-loaded zones have nothing on offer: wait for them
            hard = [host_test(c, scope) for c in t.hard]
            soft = [host_test(c, scope) for c in t.soft]
            floor = self._floor(t, scope)
        fitness = self.config.fitness
        job = t.job_id
        cpus, mem, net, disk = t.cpus - EPS, t.mem - EPS, t.net - EPS, t.disk - EPS
        nports = t.nports

        def rank(h: Host) -> tuple[int, float] | None:
            """(soft constraints broken, fitness) on a host that may take the task, else None."""
            if h.cpus < cpus or h.mem < mem or h.net < net or h.disk < disk or h.nports < nports:
                return None
            machine = h.machine
            excl = machine.excl
            if excl and (len(excl) > 1 or job not in excl):
                return None  # a task of another job holds this host exclusively
            for ok in hard:  # a plain loop: all() over a generator costs 3x here
                if not ok(h):
                    return None
            v = 0
            for ok in soft:
                if not ok(h):
                    v += 1
            soft_excl = machine.soft_excl
            if soft_excl and (len(soft_excl) > 1 or job not in soft_excl):
                v += 1  # would break another job's soft ExclusiveHost
            f = fitness(t, h)
            return None if f <= 0.0 else (v, f)  # Fenzo: fitness 0 rules a host out

        hosts, start = self._candidates(t)
        best: Host | None = None
        best_v, best_f = _NONE, -1.0
        before: tuple[Host, int, float] | None = None  # the best host ahead of `best`
        good = self.config.good_enough
        if resume is not None:
            # Identical task, same call: every host ahead of the last one's choice ranks as it
            # did then (nothing changed there; nothing here reads the zone counts, which
            # did), and `resume.best` is the best of them. Only the chosen host changed.
            start = max(start, bisect_left(hosts, resume.key, start, key=host_key))
            if resume.best is not None:
                best, best_v, best_f = resume.best
            ranked = rank(resume.host)
            if ranked is not None:
                v, f = ranked
                if v < best_v or (
                    v == best_v
                    and (
                        f > best_f
                        or (f == best_f and best is not None and resume.host.key < best.key)
                    )
                ):
                    before, best, best_v, best_f = resume.best, resume.host, v, f
                    if v <= floor and f > good:
                        return best, resume  # it is still the first good-enough host
        bound = self.config.fitness.bound
        max_cpus = self.max_total_cpus
        last_free, limit = -1.0, float("inf")
        i, end = start, len(hosts)
        while i < end:
            h = hosts[i]
            i += 1
            free = h.cpus
            if best_v <= floor:
                if free != last_free:
                    last_free, limit = free, bound(t, free, max_cpus)
                if limit <= best_f:
                    break  # hosts from here on have more free CPUs: none can do better
            if h.mem < mem:
                # Hosts with these free CPUs come by growing memory: jump to enough of it.
                i = bisect_left(hosts, (free, mem, ""), i, end, key=host_key)
                continue
            ranked = rank(h)
            if ranked is None:
                continue
            v, f = ranked
            if v < best_v or (v == best_v and f > best_f):
                before = None if best is None else (best, best_v, best_f)
                best, best_v, best_f = h, v, f
                if v <= floor and f > good:
                    break
        if best is None:
            return None, None
        if best.machine.agents > 1:  # its task changes how its sibling agents rank too
            return best, None
        if resume is not None and best is resume.host:
            return best, resume
        if resume is not None and resume.best is not None and best is resume.best[0]:
            return best, None  # the best of the hosts ahead won: the next one scans afresh
        return best, Run(group, best.key, best, before)

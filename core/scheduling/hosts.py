"""The matcher's working records: a host's free and total resources, a task, a host index.

`SortedHosts` keeps hosts in (free CPUs, free memory, agent id) order, so that one bisect skips
every host without enough CPUs, another skips the hosts of one CPU value without enough memory,
and the scan visits the fullest fitting hosts first (best fit). The agent id makes the order
total: equal free resources never leave the order to chance.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from math import fsum
from operator import attrgetter
from typing import TYPE_CHECKING, NamedTuple

from core.scheduling.offers import Offer, count_ports, merge_ranges

if TYPE_CHECKING:
    from core.scheduling.constraints import Constraint

# Free resources come from sums and differences of floats: a shortfall of 1e-9 is rounding.
# (An offer of 0.3 CPUs less two tasks of 0.1 leaves 0.09999999999999998: a third still fits.)
EPS = 1e-9

HostKey = tuple[float, float, str]  # free CPUs, free memory, agent id


class Held(NamedTuple):
    """A task on a host (placed, or assigned in this call): what totals and ledgers need."""

    cpus: float
    mem: float
    disk: float
    net: float
    job: str
    stage: int
    zone: str
    perpetual: bool
    exclusive: bool  # hard ExclusiveHost
    soft_exclusive: bool


@dataclass(slots=True, eq=False)
class TaskRequest:
    """One ready launch request, as the matcher needs it."""

    worker_id: str
    job_id: str
    stage: int
    index: int
    number: int
    ready_at: float
    cpus: float
    mem: float
    disk: float
    net: float
    nports: int
    perpetual: bool
    preferred_cluster: str
    hard: tuple[Constraint, ...]
    soft: tuple[Constraint, ...]
    exclusive: bool  # hard ExclusiveHost: keeps other jobs off its host
    soft_exclusive: bool
    balanced: bool  # ZoneBalance, hard or soft: needs the stage's zone counts


class Machine:
    """The jobs on one host, summed over its agents: what UniqueHost and ExclusiveHost read.

    A host is a hostname (Fenzo's HOSTNAME), or each agent alone (MatchConfig.host_identity).
    """

    __slots__ = ("key", "jobs", "excl", "soft_excl", "agents")

    def __init__(self, key: str) -> None:
        self.key = key
        self.jobs: dict[str, int] = {}  # job id -> tasks here
        self.excl: dict[str, int] = {}  # jobs with a hard-ExclusiveHost task here
        self.soft_excl: dict[str, int] = {}  # jobs with a soft-ExclusiveHost task here
        self.agents = 0


class Host:
    """One agent: free resources (its offers less this iteration's assignments) and its tasks."""

    __slots__ = (
        "agent_id",
        "hostname",
        "attributes",
        "offers",
        "placed",
        "cpus",
        "mem",
        "disk",
        "net",
        "ports",
        "nports",
        "total_cpus",
        "total_mem",
        "total_disk",
        "total_net",
        "placed_cpus",
        "placed_mem",
        "placed_disk",
        "placed_net",
        "tasks",
        "perpetual",
        "machine",
        "key",
        "indexes",
        "counted",
    )

    def __init__(self, agent_id: str, hostname: str, machine: Machine) -> None:
        self.agent_id = agent_id
        self.hostname = hostname
        self.machine = machine
        self.attributes: dict[str, str] = {}
        self.offers: dict[str, Offer] = {}
        self.placed: dict[str, Held] = {}  # by worker id
        self.cpus = self.mem = self.disk = self.net = 0.0
        self.ports: list[tuple[int, int]] = []
        self.nports = 0
        self.total_cpus = self.total_mem = self.total_disk = self.total_net = 0.0
        self.placed_cpus = self.placed_mem = self.placed_disk = self.placed_net = 0.0
        self.tasks = 0  # placed and assigned in this iteration
        self.perpetual = 0
        self.key: HostKey = (0.0, 0.0, agent_id)  # its place in the indexes
        self.indexes: list[SortedHosts] = []
        self.counted: tuple[str, float] | None = None  # (zone, total CPUs) while on offer

    def index_key(self) -> HostKey:
        return (self.cpus, self.mem, self.agent_id)

    def refresh_offers(self) -> None:
        """Free resources from the current offers, independent of the order they came in.

        `fsum` is exactly rounded, so the sum does not depend on order; attributes come
        from the offer with the smallest id.
        """
        offers = sorted(self.offers.values(), key=_offer_id)
        if len(offers) == 1:  # the common case, and a sum of one is exact
            o = offers[0]
            self.cpus, self.mem, self.disk, self.net = o.cpus, o.mem, o.disk, o.network_mbps
        else:
            self.cpus = fsum(o.cpus for o in offers)
            self.mem = fsum(o.mem for o in offers)
            self.disk = fsum(o.disk for o in offers)
            self.net = fsum(o.network_mbps for o in offers)
        self.ports = merge_ranges([r for o in offers for r in o.ports])
        self.nports = count_ports(self.ports)
        if offers:
            self.attributes = dict(offers[0].attributes)
        self._totals()

    def refresh_placed(self) -> None:
        if not self.placed:
            self.placed_cpus = self.placed_mem = self.placed_disk = self.placed_net = 0.0
            self._totals()
            return
        placed = self.placed.values()
        self.placed_cpus = fsum(p.cpus for p in placed)
        self.placed_mem = fsum(p.mem for p in placed)
        self.placed_disk = fsum(p.disk for p in placed)
        self.placed_net = fsum(p.net for p in placed)
        self._totals()

    def _totals(self) -> None:
        # Offers carry only free resources: the host's size is free + what its tasks hold.
        self.total_cpus = self.cpus + self.placed_cpus
        self.total_mem = self.mem + self.placed_mem
        self.total_disk = self.disk + self.placed_disk
        self.total_net = self.net + self.placed_net

    def shortfall(self, task: TaskRequest) -> str:
        """The first resource the host lacks for the task ("" when it fits)."""
        for name, free, need in (
            ("cpus", self.cpus, task.cpus),
            ("mem", self.mem, task.mem),
            ("network", self.net, task.net),
            ("disk", self.disk, task.disk),
        ):
            if free + EPS < need:
                return name
        return "ports" if self.nports < task.nports else ""


# attrgetter runs in C: bisect calls it at every comparison.
host_key: Callable[[Host], HostKey] = attrgetter("key")
_offer_id: Callable[[Offer], str] = attrgetter("offer_id")


class SortedHosts:
    """Hosts ordered by `key`; `accepts` says which hosts belong."""

    __slots__ = ("hosts", "accepts")

    def __init__(self, accepts: Callable[[Host], bool] | None = None) -> None:
        self.hosts: list[Host] = []
        self.accepts = accepts

    def __len__(self) -> int:
        return len(self.hosts)

    def add(self, host: Host) -> None:
        insort(self.hosts, host, key=host_key)
        host.indexes.append(self)

    def discard(self, host: Host) -> None:
        """Remove the host, found by its current key (so remove before changing the key)."""
        hosts = self.hosts
        i = bisect_left(hosts, host.key, key=host_key)
        if i < len(hosts) and hosts[i] is host:
            del hosts[i]

    def move(self, host: Host, key: HostKey) -> None:
        """Re-file the host under a new key (set `host.key` after every index moved it)."""
        hosts = self.hosts
        i = bisect_left(hosts, host.key, key=host_key)
        del hosts[i]
        hosts.insert(bisect_left(hosts, key, key=host_key), host)

    def fill(self, hosts: Iterable[Host]) -> None:
        """Replace the contents at once: one sort instead of many inserts."""
        self.hosts = sorted(hosts, key=host_key)
        for h in self.hosts:
            h.indexes.append(self)

    def start(self, cpus: float, mem: float) -> int:
        """Position of the first host with `cpus` free, or `mem` free among those with the
        fewest CPUs that are enough."""
        return bisect_left(self.hosts, (cpus - EPS, mem - EPS, ""), key=host_key)

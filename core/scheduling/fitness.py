"""Fitness: how well a task suits a host, in (0, 1]; higher is better.

Fenzo's BinPackingFitnessCalculators (used after placement / total, so fuller hosts score
higher) and Mantis' AgentFitnessCalculator, the default: a weighted mean of CPU/memory/network
bin-packing (0.3), duration-type affinity (0.5) and preferred cluster (0.2).

Every calculator also gives `bound(task, free_cpus, max_total_cpus)`: an upper bound of its
value on any host with at least `free_cpus` free and at most `max_total_cpus` in total. The
matcher visits hosts by growing free CPUs and stops once the bound cannot beat the best host
found, which makes a full search of pure CPU bin-packing cost a few visits, not every host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from core.scheduling.hosts import Host, TaskRequest

EMPTY_HOST_DURATION_FITNESS = 0.9  # Mantis: a fresh host beats one running the other type
OTHER_CLUSTER_FITNESS = 0.8  # Mantis: a host outside the preferred cluster


class Fitness(Protocol):
    """Scores a host for a task in (0, 1], with an upper bound for the hosts further on."""

    def __call__(self, task: TaskRequest, host: Host) -> float: ...

    def bound(self, task: TaskRequest, free_cpus: float, max_total_cpus: float) -> float: ...


def _used_share(total: float, free: float, need: float) -> float:
    # Fenzo: (need + used by tasks here) / total, where used = total - free. Capped at 1,
    # which only rounding (a task fitting within EPS) could exceed.
    return min((total - free + need) / total, 1.0) if total > 0 else 1.0


def _cpu_bound(task: TaskRequest, free_cpus: float, max_total_cpus: float) -> float:
    """Largest CPU share on a host with >= free_cpus free and <= max_total_cpus total.

    The share (T - f + r) / T grows with T when f > r, so the largest total bounds it; the
    same formula as `_used_share` makes the bound equal, bit for bit, on such a host.
    """
    if free_cpus <= task.cpus or max_total_cpus <= 0:
        return 1.0
    return _used_share(max_total_cpus, free_cpus, task.cpus)


@dataclass(frozen=True, slots=True)
class BinPacking:
    """Fenzo's bin packers: the mean used share of the chosen resources after placement."""

    cpus: bool = True
    mem: bool = False
    network: bool = False

    def __call__(self, task: TaskRequest, host: Host) -> float:
        total, n = 0.0, 0
        if self.cpus:
            total += _used_share(host.total_cpus, host.cpus, task.cpus)
            n += 1
        if self.mem:
            total += _used_share(host.total_mem, host.mem, task.mem)
            n += 1
        if self.network:
            total += _used_share(host.total_net, host.net, task.net)
            n += 1
        return total / n if n else 1.0

    def bound(self, task: TaskRequest, free_cpus: float, max_total_cpus: float) -> float:
        n = int(self.cpus) + int(self.mem) + int(self.network)
        if not self.cpus or not n:
            return 1.0
        return (_cpu_bound(task, free_cpus, max_total_cpus) + (n - 1)) / n


CPU_BIN_PACKER = BinPacking(cpus=True)
MEM_BIN_PACKER = BinPacking(cpus=False, mem=True)
NETWORK_BIN_PACKER = BinPacking(cpus=False, network=True)
CPU_MEM_BIN_PACKER = BinPacking(cpus=True, mem=True)
CPU_MEM_NETWORK_BIN_PACKER = BinPacking(cpus=True, mem=True, network=True)


@dataclass(frozen=True, slots=True)
class MantisFitness:
    """Mantis' AgentFitnessCalculator (io.mantisrx.server.master, 2020): a weighted mean of

    - bin-packing: Fenzo's cpuMemNetworkBinPacker;
    - duration-type affinity: the share of the host's tasks with the task's duration type
      (Perpetual or Transient), 0.9 on an empty host;
    - preferred cluster: 1.0 with no preference or on a host whose `cluster_attribute`
      equals it, else 0.8.
    """

    bin_packing_weight: float = 0.3
    duration_type_weight: float = 0.5
    cluster_weight: float = 0.2
    cluster_attribute: str = "cluster"  # Mantis: mantis.master.slave.cluster.attribute.name

    def __call__(self, task: TaskRequest, host: Host) -> float:
        packing = (
            _used_share(host.total_cpus, host.cpus, task.cpus)
            + _used_share(host.total_mem, host.mem, task.mem)
            + _used_share(host.total_net, host.net, task.net)
        ) / 3.0
        n = host.tasks
        if n == 0:
            duration = EMPTY_HOST_DURATION_FITNESS
        else:
            duration = (host.perpetual if task.perpetual else n - host.perpetual) / n
        cluster = 1.0
        if (
            task.preferred_cluster
            and host.attributes.get(self.cluster_attribute) != task.preferred_cluster
        ):
            cluster = OTHER_CLUSTER_FITNESS
        weights = self.bin_packing_weight + self.duration_type_weight + self.cluster_weight
        return (
            self.bin_packing_weight * packing
            + self.duration_type_weight * duration
            + self.cluster_weight * cluster
        ) / weights

    def bound(self, task: TaskRequest, free_cpus: float, max_total_cpus: float) -> float:
        packing = (_cpu_bound(task, free_cpus, max_total_cpus) + 2.0) / 3.0
        weights = self.bin_packing_weight + self.duration_type_weight + self.cluster_weight
        return (
            self.bin_packing_weight * packing + self.duration_type_weight + self.cluster_weight
        ) / weights

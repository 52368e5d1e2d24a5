"""The matcher's values: offers and placements in, assignments and a match result out.

Port ranges are inclusive `(first, last)` pairs, as Mesos sends them. A *host* is one agent:
every offer with the same `agent_id` adds to that host's free resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.model import DurationType

PortRanges = tuple[tuple[int, int], ...]
Attributes = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Offer:
    """Free resources of one agent, offered by the resource manager."""

    offer_id: str
    agent_id: str
    hostname: str
    cpus: float
    mem: float
    disk: float = 0.0
    network_mbps: float = 0.0
    ports: PortRanges = ()
    attributes: Attributes = ()


@dataclass(frozen=True, slots=True)
class Placement:
    """A task already running or launching on an agent.

    Its resources count towards the host's total (total = free in offers + placed), which
    bin-packing needs; its job, stage, duration type and constraints feed UniqueHost,
    ExclusiveHost, ZoneBalance and duration-type affinity. `attributes` are the agent's (the
    zone of a placement on an agent that offers nothing now still counts for ZoneBalance).
    """

    worker_id: str
    job_id: str
    stage: int
    agent_id: str
    hostname: str
    attributes: Attributes = ()
    duration_type: DurationType = DurationType.Perpetual
    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    network_mbps: float = 0.0
    # Names or `core.scheduling.constraints` values; ExclusiveHost here keeps other jobs off.
    hard_constraints: tuple[object, ...] = ()
    soft_constraints: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class Assignment:
    """Launch `worker_id` on this agent, on all of its offers (Mesos launches on them together)."""

    worker_id: str
    agent_id: str
    hostname: str
    offer_ids: tuple[str, ...]
    ports: tuple[int, ...]
    cpus: float
    mem: float
    disk: float
    network_mbps: float
    attributes: Attributes = ()  # the agent's, to keep for its Placement (zone, asg)


# How a resource is named in a reason: Fenzo's AssignmentFailure names the resource, the
# amount asked and what the host has; we print units.
_UNITS = {
    "cpus": "CPUs",
    "mem": "MB memory",
    "network": "Mbps network",
    "disk": "MB disk",
    "ports": "ports",
}


@dataclass(frozen=True, slots=True)
class PlacementFailure:
    """Why a ready request got no host in a round, after Fenzo's TaskAssignmentResult and its
    AssignmentFailures (resource, asked, available), summed up over the agents on offer.

    `kind` is "resource" when every agent considered lacks `name` (a resource): it `asked`
    for that much and the `largest` free amount on those agents is less; "constraint" when
    every agent considered breaks the hard constraint `name`; "mixed" when agents fail for
    different reasons (`ruled_out` counts them). Agents considered: all those on offer, or,
    when `with_cpus` > 0, those with that many CPUs free (the others lack CPUs). Free
    amounts are those left after the round's earlier placements.
    """

    kind: Literal["no offers", "already placed", "resource", "constraint", "mixed"]
    name: str = ""
    asked: float = 0.0
    largest: float = 0.0
    with_cpus: float = 0.0
    agents: int = 0
    ruled_out: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        kind, name = self.kind, self.name
        if kind == "no offers" or kind == "already placed":
            return kind
        among = f" with {_amount(self.with_cpus, 'cpus')} free" if self.with_cpus else ""
        if kind == "resource":
            return (
                f"no agent{among} offers {_amount(self.asked, name)} "
                f"(largest offer: {_amount(self.largest, name)})"
            )
        if kind == "constraint":
            lacking = dict(self.ruled_out).get("cpus", 0) if self.with_cpus else 0
            others = f" ({lacking} more lack CPUs)" if lacking else ""
            where = among or " on offer"
            return f"hard constraint {name} not satisfiable on any agent{where}{others}"
        counts = ", ".join(f"{r} on {n}" for r, n in self.ruled_out)
        return f"no agent of {self.agents} on offer fits: {counts}"


def _amount(value: float, resource: str) -> str:
    unit = "CPU" if resource == "cpus" and value == 1 else _UNITS[resource]
    return f"{value:g} {unit}"


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Assignments by worker id; offers used by none (to decline); ready requests left over,
    each with why it got no host.

    Requests not ready yet (`ready_at > now`, backing off) appear in none of the three.
    """

    assignments: tuple[Assignment, ...]
    declined: tuple[str, ...]
    unplaced: tuple[tuple[str, PlacementFailure], ...]


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping ranges: overlapping offers must not count a port twice."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def count_ports(ranges: list[tuple[int, int]]) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


def take_ports(ranges: list[tuple[int, int]], n: int) -> tuple[int, ...]:
    """Take the `n` lowest free ports out of `ranges` (Fenzo consumes ports in order too)."""
    taken: list[int] = []
    while len(taken) < n:
        lo, hi = ranges[0]
        k = min(n - len(taken), hi - lo + 1)
        taken.extend(range(lo, lo + k))
        if lo + k > hi:
            del ranges[0]
        else:
            ranges[0] = (lo + k, hi)
    return tuple(taken)

"""The matcher's values: offers and placements in, assignments and a match result out.

Port ranges are inclusive `(first, last)` pairs, as Mesos sends them. A *host* is one agent:
every offer with the same `agent_id` adds to that host's free resources.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Assignments by worker id; offers used by none (to decline); ready requests left over.

    Requests not ready yet (`ready_at > now`, backing off) appear in none of the three.
    """

    assignments: tuple[Assignment, ...]
    declined: tuple[str, ...]
    unplaced: tuple[tuple[str, str], ...]


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

"""Placement constraints (Fenzo's plugins, Mantis' names), each usable hard or soft.

A hard constraint rejects a host; a soft one only ranks it: the matcher compares hosts first by
how many soft constraints they break, then by fitness (Fenzo weighs soft constraints at 50 %
against 35 % for fitness, so a host keeping them wins; we make that rule exact).

A host is a hostname, as in Fenzo (its HOSTNAME attribute): agents that share one count as one
host for UniqueHost and ExclusiveHost, so an agent that restarts under a new id is still the
host its old tasks are on. MatchConfig(host_identity="agent") makes each agent a host, for
several agents on one machine that all report one hostname (a local mesoslite's 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from core.model import JobConstraint

if TYPE_CHECKING:
    from core.scheduling.hosts import Host

# Mantis' cluster constraints: the agent's auto-scaling-group attribute starts with this
# (Mantis' ClusterAffinityConstraint uses startsWith on NETFLIX_AUTO_SCALE_GROUP).
MANTIS_ASG_PREFIX = "mantisagent-main-"


@dataclass(frozen=True, slots=True)
class UniqueHost:
    """No two workers of one job stage on one host (Fenzo's UniqueHostAttrConstraint)."""


@dataclass(frozen=True, slots=True)
class ExclusiveHost:
    """The host runs no task of another job; as a hard constraint it also keeps other jobs off.

    Fenzo's ExclusiveHostConstraint allows one task per host; here workers of the same job may
    share the host, as the issue asks.
    """


@dataclass(frozen=True, slots=True)
class ZoneBalance:
    """Spread a job stage over the zone attribute's values (Fenzo's BalancedHostAttrConstraint).

    A host is allowed when its zone holds the fewest workers of the stage among the known
    zones: those of the hosts on offer and those already holding workers of the stage. Hosts
    without the attribute form the zone "".
    """


@dataclass(frozen=True, slots=True)
class HostAttrValue:
    """The host's attribute equals `value` (or starts with it, when `prefix`)."""

    attribute: str
    value: str
    prefix: bool = False


Constraint = UniqueHost | ExclusiveHost | ZoneBalance | HostAttrValue


def resolve(value: object, asg_attribute: str) -> Constraint:
    """A Mantis constraint name (core.model.JobConstraint) or a constraint value -> the value."""
    if isinstance(value, UniqueHost | ExclusiveHost | ZoneBalance | HostAttrValue):
        return value
    if not isinstance(value, str):
        raise TypeError(f"not a constraint: {value!r}")
    name = JobConstraint(value)  # raises ValueError on an unknown name
    if name is JobConstraint.UniqueHost:
        return UniqueHost()
    if name is JobConstraint.ExclusiveHost:
        return ExclusiveHost()
    if name is JobConstraint.ZoneBalance:
        return ZoneBalance()
    size = name.value.removesuffix("Cluster").lower()  # M3Cluster -> m3
    return HostAttrValue(asg_attribute, MANTIS_ASG_PREFIX + size, prefix=True)


def label(c: Constraint) -> str:
    """A short name for reasons: the class name, or attribute=value (^= for a prefix)."""
    if isinstance(c, HostAttrValue):
        op = "^=" if c.prefix else "="
        return f"{c.attribute}{op}{c.value}"
    return type(c).__name__


def attribute_test(c: HostAttrValue) -> Callable[[Host], bool]:
    attr, value = c.attribute, c.value
    if c.prefix:
        return lambda h: attr in h.attributes and h.attributes[attr].startswith(value)
    return lambda h: h.attributes.get(attr) == value


class Scope(NamedTuple):
    """What one task's constraints see of the cluster when that task is placed."""

    job_id: str
    stage_hosts: Mapping[str, int]  # hosts (Machine keys) holding workers of the task's stage
    balanced_zones: frozenset[str]  # zones at the stage's minimum (only for ZoneBalance)
    zone_attribute: str


def host_test(c: Constraint, scope: Scope) -> Callable[[Host], bool]:
    """A predicate that holds on the hosts keeping `c` for the task of `scope`."""
    if isinstance(c, UniqueHost):
        taken = scope.stage_hosts
        return lambda h: h.machine.key not in taken
    if isinstance(c, ExclusiveHost):
        job = scope.job_id
        return lambda h: not (jobs := h.machine.jobs) or (len(jobs) == 1 and job in jobs)
    if isinstance(c, ZoneBalance):
        zones, attr = scope.balanced_zones, scope.zone_attribute
        return lambda h: h.attributes.get(attr, "") in zones
    return attribute_test(c)


def balanced_zones(counts: Mapping[str, int], known: Mapping[str, int]) -> frozenset[str]:
    """Known zones holding the fewest of the stage's workers (`known`: zones on offer)."""
    zones = set(known) | set(counts)
    if not zones:
        return frozenset()
    least = min(counts.get(z, 0) for z in zones)
    return frozenset(z for z in zones if counts.get(z, 0) == least)

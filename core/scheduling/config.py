"""Matcher settings, with Mantis' defaults (the 2020 mantis-control-plane's SchedulingService
and MasterConfiguration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.scheduling.fitness import Fitness, MantisFitness


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """How hosts are ranked and which agent attributes the constraints read.

    `good_enough`: the search for a task stops at the first host (in order of free CPUs, free
    memory, agent id) that breaks no soft constraint some host could keep and whose fitness
    exceeds this (Mantis: 0.63). At 1.0 or more nothing is good enough and the best host wins
    (Fenzo's default, a full search). Fenzo applies the threshold to 0.5 * soft + 0.35 * fitness
    (+ 0.15 for resource sets), where 0.63 lets through any host keeping the soft constraints
    with fitness above 0.37; we apply it to the fitness itself, which is stricter.
    """

    fitness: Fitness = MantisFitness()
    good_enough: float = 0.63
    zone_attribute: str = "zone"  # Mantis: mesos.slave.attribute.zone.name (AWSZone)
    asg_attribute: str = "asg"  # Mantis: NETFLIX_AUTO_SCALE_GROUP, for M3/M4/M5Cluster
    # What UniqueHost and ExclusiveHost call a host: its hostname (Fenzo), or each agent.
    host_identity: Literal["hostname", "agent"] = "hostname"

"""Synthetic load curves for the simulation, and what a simulated worker reports under them.

A curve gives the events per second offered to a whole stage at virtual time t (ramp, step,
spike, flapping). `payloads` turns it into the heartbeat payloads a worker of that stage sends
(the contract of issue 13: ResourceUsage, IncomingDataDrop, WorkerMetrics), for a worker that
processes at most `capacity_rps` events per second and drops the rest, so that the autoscaler
under test sees the same numbers a real worker would report.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Protocol

from core.model import MachineDefinition


class LoadCurve(Protocol):
    """Events per second offered to a stage at virtual time t."""

    @property
    def name(self) -> str: ...

    def rps(self, t: float) -> float: ...


@dataclass(frozen=True, slots=True)
class Ramp:
    """From `low` at `start` linearly to `high` at `end`, then back down as fast."""

    low: float
    high: float
    start: float
    end: float
    name: str = "ramp"

    def rps(self, t: float) -> float:
        span = self.end - self.start
        if t <= self.start or t >= self.end + span:
            return self.low
        rise = (t - self.start) / span if t <= self.end else (self.end + span - t) / span
        return self.low + (self.high - self.low) * rise


@dataclass(frozen=True, slots=True)
class Step:
    before: float
    after: float
    at: float
    name: str = "step"

    def rps(self, t: float) -> float:
        return self.after if t >= self.at else self.before


@dataclass(frozen=True, slots=True)
class Spike:
    base: float
    peak: float
    at: float
    width: float
    name: str = "spike"

    def rps(self, t: float) -> float:
        return self.peak if self.at <= t < self.at + self.width else self.base


@dataclass(frozen=True, slots=True)
class Flapping:
    """`high` and `low` alternating every `period` seconds."""

    low: float
    high: float
    period: float
    name: str = "flapping"

    def rps(self, t: float) -> float:
        return self.high if int(t // self.period) % 2 == 0 else self.low


def random_curve(rng: random.Random, capacity: float, period: float, until: float) -> LoadCurve:
    """One of the four shapes, sized against one worker's `capacity` (events/s)."""
    kind = rng.choice(["ramp", "step", "spike", "flapping"])
    at = rng.uniform(0, until / 2)
    if kind == "ramp":
        return Ramp(capacity * 0.2, capacity * rng.uniform(2, 5), at, at + rng.uniform(60, 600))
    if kind == "step":
        return Step(capacity * 0.3, capacity * rng.uniform(1.5, 5), at)
    if kind == "spike":
        return Spike(capacity * 0.3, capacity * rng.uniform(3, 8), at, rng.uniform(20, 200))
    return Flapping(0.0, capacity * rng.uniform(20, 40), period)


def payloads(
    offered_rps: float, workers: int, capacity_rps: float, machine: MachineDefinition, secs: float
) -> dict[str, str]:
    """A worker's heartbeat payloads when the stage is offered `offered_rps` over `workers`."""
    mine = offered_rps / max(workers, 1)
    done = min(mine, capacity_rps)
    busy = done / capacity_rps if capacity_rps else 0.0
    return {
        "ResourceUsage": json.dumps(
            {
                "cpuLimit": machine.cpu_cores,
                "cpuUsageCurrent": busy * machine.cpu_cores,
                "cpuUsagePeak": busy * machine.cpu_cores,
                "memLimit": machine.memory_mb,
                "memCacheCurrent": 0.0,
                "memCachePeak": 0.0,
                "totMemUsageCurrent": machine.memory_mb * (0.2 + 0.5 * busy),
                "totMemUsagePeak": machine.memory_mb * (0.2 + 0.5 * busy),
                "nwBytesCurrent": done * 200.0,
                "nwBytesPeak": done * 200.0,
            }
        ),
        "IncomingDataDrop": json.dumps(
            {"onNextCount": round(done * secs), "droppedCount": round((mine - done) * secs)}
        ),
        "WorkerMetrics": json.dumps({"RPS": mine}),
    }

"""The simulated resource manager passes the ResourceManager contract, on virtual time."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from adapters.sim.agents import STATUS_RETRY, SimAgent, SimResourceManager
from adapters.sim.clock import VirtualClock
from tests.contracts.resource_manager import Recorder, ResourceManagerContract


class SimCluster:
    resend_after = STATUS_RETRY

    def __init__(self) -> None:
        self.clock = VirtualClock()
        agents = [
            SimAgent(f"agent-{i}", f"host-{i}", "ab"[i], 4.0, 4096.0, (31000, 31099))
            for i in range(2)
        ]
        self.rm = SimResourceManager(
            random.Random(7),
            self.clock.after,
            lambda: self.clock.now,
            agents,
            status_loss=0.0,
            status_dup=0.0,
            on_running=lambda task: None,
        )
        self.events = Recorder(self.rm)
        self.rm.start(self.events)

    def wait_for(self, condition: Callable[[], bool], what: str, seconds: float) -> None:
        held = self.clock.run_until(self.clock.now + seconds, condition)
        assert held, f"{what} did not happen within {seconds:g} virtual seconds"

    def run_for(self, seconds: float) -> None:
        self.clock.run_until(self.clock.now + seconds)


class TestSimResourceManager(ResourceManagerContract):
    @pytest.fixture
    def cluster(self) -> SimCluster:
        return SimCluster()

"""The ResourceManager port's contract: every adapter of the port passes these tests.

An adapter's test module subclasses `ResourceManagerContract` and provides a `cluster`
fixture yielding a `Cluster`: a started resource manager with at least two agents of at
least 2 CPUs and 1 GB each, and a way to wait (virtual time in the simulation, polling with a
deadline, tests.eventually.wait_until, against real processes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from core.effects import LaunchRequest, LaunchTask
from core.model import DurationType, MachineDefinition
from core.ports import ResourceManager, TaskLaunch, TaskStatus
from core.scheduling import Assignment, Offer


@dataclass
class Recorder:
    """A ResourceManagerEvents that remembers everything; acknowledges updates if asked."""

    rm: ResourceManager | None = None
    auto_ack: bool = True
    framework_ids: list[str] = field(default_factory=list)
    offer_batches: list[list[Offer]] = field(default_factory=list)
    statuses: list[TaskStatus] = field(default_factory=list)
    rescinds: list[str] = field(default_factory=list)

    def registered(self, framework_id: str) -> None:
        self.framework_ids.append(framework_id)

    def offers(self, offers: Sequence[Offer]) -> None:
        self.offer_batches.append(list(offers))

    def rescinded(self, offer_id: str) -> None:
        self.rescinds.append(offer_id)

    def task_status(self, status: TaskStatus) -> None:
        self.statuses.append(status)
        if self.auto_ack and self.rm is not None and status.uuid:
            self.rm.acknowledge(status)

    def states(self, task_id: str) -> list[str]:
        return [s.state for s in self.statuses if s.task_id == task_id]

    def offers_since(self, batch: int) -> list[Offer]:
        return [o for b in self.offer_batches[batch:] for o in b]


class Cluster(Protocol):
    rm: ResourceManager
    events: Recorder
    resend_after: float  # the longest wait before an unacknowledged update is sent again

    def wait_for(self, condition: Callable[[], bool], what: str, seconds: float) -> None:
        """Let the cluster run until `condition` holds; fail naming `what` once `seconds` pass."""

    def run_for(self, seconds: float) -> None: ...


def launch_on(
    offer: Offer,
    task_id: str,
    cpus: float = 1.0,
    mem: float = 128.0,
    command: str = "sleep 60",
    environment: tuple[tuple[str, str], ...] = (),
) -> TaskLaunch:
    port = offer.ports[0][0] if offer.ports else 0
    request = LaunchRequest(
        task_id,
        task_id.rsplit("-worker-", 1)[0],
        1,
        0,
        1,
        MachineDefinition(cpus, mem, num_ports=0),
        (),
        (),
        DurationType.Perpetual,
        0.0,
    )
    assignment = Assignment(
        task_id,
        offer.agent_id,
        offer.hostname,
        (offer.offer_id,),
        (port,) if port else (),
        cpus,
        mem,
        0.0,
        0.0,
    )
    return TaskLaunch(LaunchTask(request, assignment), command, environment)


class ResourceManagerContract:
    """Behaviour every ResourceManager adapter shows (Mesos semantics, reference B and D)."""

    def first_offers(self, cluster: Cluster) -> list[Offer]:
        cluster.wait_for(lambda: bool(cluster.events.offer_batches), "offers", 30)
        return cluster.events.offer_batches[-1]

    def test_registers_then_offers_every_agent(self, cluster: Cluster) -> None:
        assert cluster.events.framework_ids, "start() must report the registration"
        cluster.wait_for(
            lambda: len({o.agent_id for o in cluster.events.offers_since(0)}) >= 2,
            "offers of 2 agents",
            30,
        )
        for offer in cluster.events.offers_since(0):
            assert offer.offer_id and offer.hostname and offer.cpus >= 2 and offer.mem >= 1024

    def test_launched_task_runs_and_its_resources_are_not_offered(self, cluster: Cluster) -> None:
        offer = self.first_offers(cluster)[0]
        task_id = "contract-1-worker-0-1"
        cluster.rm.launch([launch_on(offer, task_id, cpus=1.0)])
        cluster.wait_for(
            lambda: "TASK_RUNNING" in cluster.events.states(task_id), "TASK_RUNNING", 30
        )
        batch = len(cluster.events.offer_batches)
        cluster.wait_for(
            lambda: any(o.agent_id == offer.agent_id for o in cluster.events.offers_since(batch)),
            "the task's agent offered again",
            30,
        )
        later = [o for o in cluster.events.offers_since(batch) if o.agent_id == offer.agent_id]
        assert all(o.cpus <= offer.cpus - 1.0 + 1e-6 for o in later)

    def test_kill_ends_the_task(self, cluster: Cluster) -> None:
        offer = self.first_offers(cluster)[0]
        task_id = "contract-2-worker-0-1"
        cluster.rm.launch([launch_on(offer, task_id)])
        cluster.wait_for(
            lambda: "TASK_RUNNING" in cluster.events.states(task_id), "TASK_RUNNING", 30
        )
        cluster.rm.kill(task_id, offer.agent_id)
        cluster.wait_for(lambda: "TASK_KILLED" in cluster.events.states(task_id), "TASK_KILLED", 30)

    def test_declined_agent_is_not_offered_again_until_revive(self, cluster: Cluster) -> None:
        offers = self.first_offers(cluster)
        declined = offers[0]
        others = [o.offer_id for o in offers[1:]]
        cluster.rm.decline([declined.offer_id], 3600.0)
        cluster.rm.decline(others, 0.0)
        batch = len(cluster.events.offer_batches)
        cluster.run_for(10)
        assert declined.agent_id not in {o.agent_id for o in cluster.events.offers_since(batch)}
        cluster.rm.revive()
        cluster.wait_for(
            lambda: declined.agent_id in {o.agent_id for o in cluster.events.offers_since(batch)},
            "the declined agent offered again after revive",
            30,
        )

    def test_reconciling_an_unknown_task_reports_it_lost(self, cluster: Cluster) -> None:
        offer = self.first_offers(cluster)[0]
        cluster.rm.reconcile([("contract-9-worker-0-1", offer.agent_id)])
        cluster.wait_for(
            lambda: "TASK_LOST" in cluster.events.states("contract-9-worker-0-1"), "TASK_LOST", 30
        )

    def test_updates_come_again_until_acknowledged(self, cluster: Cluster) -> None:
        """The oldest unacknowledged update of a task is sent again (Mesos holds newer ones
        behind it); once every update is acknowledged, none comes again."""
        cluster.events.auto_ack = False
        offer = self.first_offers(cluster)[0]
        task_id = "contract-3-worker-0-1"
        cluster.rm.launch([launch_on(offer, task_id)])

        def updates() -> list[TaskStatus]:
            return [s for s in cluster.events.statuses if s.task_id == task_id]

        cluster.wait_for(
            lambda: len(updates()) >= 2, "an update sent again", 6 * cluster.resend_after
        )
        first, again = updates()[:2]
        assert (again.state, again.uuid) == (first.state, first.uuid), "the same update, re-sent"
        cluster.events.auto_ack = True
        cluster.rm.acknowledge(first)
        cluster.wait_for(
            lambda: "TASK_RUNNING" in cluster.events.states(task_id),
            "TASK_RUNNING once the first update is acknowledged",
            6 * cluster.resend_after,
        )
        for status in updates():
            cluster.rm.acknowledge(status)
        seen = len(updates())
        cluster.run_for(2.5 * cluster.resend_after)
        assert len(updates()) == seen, [s.state for s in updates()[seen:]]

    @pytest.fixture
    def cluster(self) -> Cluster:
        raise NotImplementedError("an adapter's test module provides the cluster fixture")

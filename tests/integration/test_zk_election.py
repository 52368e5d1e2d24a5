"""ZkLeaderElection on a real ZooKeeper: one leader among candidates, what it publishes, and the
hand-over when it withdraws."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.eventually import eventually
from tests.integration.zk_candidates import Candidates, children, new_root, observer, read_json


@pytest.fixture
async def candidates(zookeeper: str) -> AsyncIterator[Candidates]:
    group = Candidates(zookeeper, new_root())
    try:
        yield group
    finally:
        group.stop_all()


@pytest.mark.parametrize("count", [2, 3])
async def test_exactly_one_candidate_leads_and_publishes_itself_with_its_epoch(
    candidates: Candidates, zookeeper: str, count: int
) -> None:
    started = [candidates.start(f"master-{i}") for i in range(count)]
    with observer(zookeeper) as zk:
        hosts = f"{candidates.root}/hosts"
        await eventually(lambda: len(children(zk, hosts)) == count, "every candidate")
        await eventually(lambda: len(candidates.leaders()) == 1, "one leader")
        (leader,) = candidates.leaders()
        published = read_json(zk, f"{candidates.root}/leader")
        epoch_version = zk.exists(f"{candidates.root}/epoch").version
    assert published["hostname"] == leader.name and published["epoch"] == leader.epoch
    assert published["url"] == "http://127.0.0.1:8100" and published["apiPort"] == 8100
    assert epoch_version == leader.epoch == 1
    # every candidate, the leader included, knows who leads
    await eventually(
        lambda: all(c.election.leader() == published for c in started), "leader() everywhere"
    )
    assert [c for c in started if c.events and c is not leader] == []


async def test_stop_of_the_leader_hands_over_to_the_next_with_a_higher_epoch(
    candidates: Candidates,
) -> None:
    for i in range(3):
        candidates.start(f"master-{i}")
    await eventually(lambda: len(candidates.leaders()) == 1, "a first leader")
    (first,) = candidates.leaders()
    candidates.stop(first)
    await eventually(lambda: len(candidates.leaders()) == 1, "a second leader", timeout=5)
    (second,) = candidates.leaders()
    assert second is not first and second.epoch == first.epoch + 1
    await eventually(
        lambda: all(
            (c.election.leader() or {}).get("hostname") == second.name for c in candidates.running
        ),
        "followers see the second leader",
    )
    # after stop() returned, the first heard nothing more
    assert [e[0] for e in first.events] == ["leader"]


async def test_a_chroot_in_the_hosts_is_created_and_holds_the_election(zookeeper: str) -> None:
    chroot = f"/chroot-{uuid.uuid4().hex[:12]}/deep"
    group = Candidates(f"{zookeeper}{chroot}", "/mantis/master")
    try:
        group.start("master-0")
        await eventually(lambda: len(group.leaders()) == 1, "a leader under the chroot")
        with observer(zookeeper) as zk:
            published = read_json(zk, f"{chroot}/mantis/master/leader")
        assert published["hostname"] == "master-0" and published["epoch"] == 1
    finally:
        group.stop_all()

"""ZkLeaderElection when things fail: the leader's session expires, ZooKeeper goes away and
comes back, the leading process is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from tests.eventually import eventually
from tests.integration.zk_candidates import Candidates, children, new_root, observer, read_json
from tests.zookeeper import ZooKeeperServer

SESSION_TIMEOUT = 4.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def candidates(zookeeper: str) -> AsyncIterator[Candidates]:
    group = Candidates(zookeeper, new_root(), SESSION_TIMEOUT)
    try:
        yield group
    finally:
        group.stop_all()


async def test_a_leader_whose_session_expires_steps_down_and_another_leads(
    candidates: Candidates, zookeeper: str
) -> None:
    first = candidates.start("master-0")
    await eventually(lambda: first.epoch > 0, "a first leader")
    for i in (1, 2):
        candidates.start(f"master-{i}")
    with observer(zookeeper) as zk:
        hosts = f"{candidates.root}/hosts"
        await eventually(lambda: len(children(zk, hosts)) == 3, "three candidates")
        # kazoo's own trick (kazoo/testing/harness.py, expire_session): a second client takes
        # over the session with its id and password, then closes it: the server ends it
        session_id, password = first.client.client_id
        thief = KazooClient(hosts=zookeeper, client_id=(session_id, password))
        thief.start(timeout=10)
        thief.stop()
        thief.close()
        await eventually(lambda: first.epoch == 0, "the expired leader steps down", timeout=5)
        assert first.events[1][0] == "lost"
        await eventually(lambda: len(candidates.leaders()) == 1, "a new leader", timeout=5)
        (second,) = candidates.leaders()
        assert second is not first and second.epoch == 2
        assert read_json(zk, f"{candidates.root}/leader")["hostname"] == second.name
        # once its client has a new session, the old leader is a candidate again, and follows
        await eventually(lambda: len(children(zk, hosts)) == 3, "the old leader back as candidate")
        assert first.client.client_id[0] != session_id and first.epoch == 0


async def test_a_suspended_leader_stops_at_once_and_one_leads_when_zookeeper_is_back(
    zookeeper_server: ZooKeeperServer,
) -> None:
    group = Candidates(zookeeper_server.address, new_root(), SESSION_TIMEOUT)
    try:
        leader = group.start("master-0")
        await eventually(lambda: leader.epoch == 1, "a leader")
        follower = group.start("master-1")
        with observer(zookeeper_server.address) as zk:
            hosts = f"{group.root}/hosts"
            await eventually(lambda: len(children(zk, hosts)) == 2, "two candidates")
        started = time.monotonic()
        await asyncio.to_thread(zookeeper_server.stop)
        await eventually(lambda: leader.epoch == 0, "the leader stops", timeout=SESSION_TIMEOUT)
        what, reason, at = leader.events[-1]
        assert (what, reason) == ("lost", "suspended")
        print(f"ZooKeeper stopped -> the leader stops: {at - started:.2f} s (session timeout 4 s)")
        assert at - started < SESSION_TIMEOUT
        assert follower.events == []

        await asyncio.to_thread(zookeeper_server.start)
        await eventually(lambda: len(group.leaders()) == 1, "one leader again", timeout=15)
        (again,) = group.leaders()
        # the sessions survived the restart: the same candidate leads, in a new epoch
        assert again is leader and leader.epoch == 2
        with observer(zookeeper_server.address) as zk:
            assert read_json(zk, f"{group.root}/leader")["epoch"] == 2
    finally:
        group.stop_all()


async def test_a_leader_cut_off_from_a_hung_zookeeper_stops_before_its_session_can_expire(
    zookeeper_server: ZooKeeperServer,
) -> None:
    """SIGSTOP freezes the server with its connections open, as a partition does: no word
    reaches the client, which suspends at 2/3 of the session timeout."""
    group = Candidates(zookeeper_server.address, new_root(), SESSION_TIMEOUT)
    assert zookeeper_server._process is not None
    pid = zookeeper_server._process.pid
    try:
        leader = group.start("master-0")
        await eventually(lambda: leader.epoch == 1, "a leader")
        group.start("master-1")
        with observer(zookeeper_server.address) as zk:
            hosts = f"{group.root}/hosts"
            await eventually(lambda: len(children(zk, hosts)) == 2, "two candidates")
        frozen = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            await eventually(lambda: leader.epoch == 0, "the leader stops", timeout=SESSION_TIMEOUT)
        finally:
            os.kill(pid, signal.SIGCONT)
        what, reason, at = leader.events[-1]
        print(f"ZooKeeper frozen -> the leader stops: {at - frozen:.2f} s (session timeout 4 s)")
        assert (what, reason) == ("lost", "suspended")
        await eventually(lambda: len(group.leaders()) == 1, "one leader again", timeout=15)
        assert group.leaders()[0].epoch == 2
    finally:
        group.stop_all()


CANDIDATE = """
import asyncio, sys
from kazoo.client import KazooClient
from adapters.zk.election import ZkLeaderElection
from tests.integration.zk_candidates import description

class Quiet:
    def became_leader(self, epoch): pass
    def lost_leadership(self, reason): pass

async def main():
    client = KazooClient(hosts=sys.argv[1], timeout=float(sys.argv[3]))
    client.start_async()
    election = ZkLeaderElection(
        client, description("victim"), loop=asyncio.get_running_loop(), root=sys.argv[2]
    )
    election.start(Quiet())
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def victim(zookeeper: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A candidate in a process of its own, on a root of its own, with a 4 s session."""
    root = new_root()
    with (tmp_path / "victim.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", CANDIDATE, zookeeper, root, str(SESSION_TIMEOUT)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, root
    finally:
        process.kill()
        process.wait()


async def test_after_the_leading_process_is_killed_the_next_leads_once_its_session_expires(
    zookeeper: str, victim: tuple[subprocess.Popen[bytes], str]
) -> None:
    process, root = victim
    group = Candidates(zookeeper, root, SESSION_TIMEOUT)
    try:
        with observer(zookeeper) as zk:
            leader = f"{root}/leader"

            def victim_leads() -> bool:
                data = zk.exists(leader) and zk.get(leader)[0]
                return bool(data) and read_json(zk, leader)["hostname"] == "victim"

            await eventually(victim_leads, "the victim leads", timeout=20)
            follower = group.start("master-1")
            await eventually(lambda: len(children(zk, f"{root}/hosts")) == 2, "two candidates")
            killed = time.monotonic()
            os.kill(process.pid, signal.SIGKILL)
            await eventually(lambda: follower.epoch == 2, "the follower leads", timeout=15)
            elapsed = follower.events[-1][2] - killed
            print(f"SIGKILL of the leader -> next leader: {elapsed:.2f} s (session timeout 4 s)")
            # nobody told ZooKeeper: the hand-over waits for the server to expire the session
            assert 2.0 < elapsed < SESSION_TIMEOUT + 2.0
            assert read_json(zk, leader)["hostname"] == "master-1"
    finally:
        group.stop_all()

"""Masters contending on a real ZooKeeper, for the election tests: each `Candidate` is a kazoo
client of its own (its own session) with a `ZkLeaderElection` that reports to a recorder on
the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient

from adapters.zk.election import ZkLeaderElection
from service.election import master_description


def description(name: str, port: int = 8100) -> dict[str, Any]:
    return master_description(
        hostname=name,
        host_ip="127.0.0.1",
        api_port=port,
        url=f"http://127.0.0.1:{port}",
        api_status_uri="api/v1/jobs/actions/postJobStatus",
        create_time_ms=int(time.time() * 1000),
    )


def new_root() -> str:
    """A root of the test's own on a shared ZooKeeper."""
    return f"/test-{uuid.uuid4().hex[:12]}/mantis/master"


@dataclass
class Candidate:
    """One master in the election; `events` lists (what, argument, monotonic time) in order."""

    name: str
    client: KazooClient
    election: ZkLeaderElection
    events: list[tuple[str, Any, float]] = field(default_factory=list)

    def became_leader(self, epoch: int) -> None:
        self.events.append(("leader", epoch, time.monotonic()))

    def lost_leadership(self, reason: str) -> None:
        self.events.append(("lost", reason, time.monotonic()))

    @property
    def epoch(self) -> int:
        """The epoch it leads in by what it was told; 0 when it does not lead."""
        if self.events and self.events[-1][0] == "leader":
            return int(self.events[-1][1])
        return 0

    def stop(self) -> None:
        self.election.stop()
        self.client.stop()
        self.client.close()


class Candidates:
    """Starts candidates and stops every one still running at the end of the test."""

    def __init__(self, hosts: str, root: str, session_timeout: float = 4.0) -> None:
        self.hosts, self.root, self.session_timeout = hosts, root, session_timeout
        self.running: list[Candidate] = []

    def start(self, name: str) -> Candidate:
        client = KazooClient(hosts=self.hosts, timeout=self.session_timeout)
        client.start_async()
        election = ZkLeaderElection(
            client, description(name), loop=asyncio.get_running_loop(), root=self.root
        )
        candidate = Candidate(name, client, election)
        election.start(candidate)
        self.running.append(candidate)
        return candidate

    def stop(self, candidate: Candidate) -> None:
        self.running.remove(candidate)
        candidate.stop()

    def leaders(self) -> list[Candidate]:
        return [c for c in self.running if c.epoch]

    def stop_all(self) -> None:
        for candidate in list(self.running):
            self.stop(candidate)


def read_json(client: KazooClient, path: str) -> Any:
    data, _ = client.get(path)
    return json.loads(data)


def children(client: KazooClient, path: str) -> list[str]:
    """The children of `path`; none while it does not exist."""
    return list(client.get_children(path)) if client.exists(path) else []


@contextlib.contextmanager
def observer(hosts: str) -> Iterator[KazooClient]:
    """A plain client of the test's own, to look at what the candidates wrote."""
    client = KazooClient(hosts=hosts)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()

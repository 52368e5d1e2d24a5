"""Draining an agent moves its workers, real processes, to another agent at the cluster's pace.

Two local agents (adapters.local, loopback hosts 127.0.0.2 and 127.0.0.3) under one master
(the real MasterService and HTTP API): a job's 4 workers start on the first; the cluster's
migration strategy is set to PERCENTAGE 50 % a second through the API; `mantis agents drain`
then moves them: never more than 2 of the job's workers away at once, every worker ends up
Started on the second agent, each moved process is stopped, and the first agent gets no new
worker and is listed DRAINED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from adapters.cli.main import main
from adapters.local.agent import LocalAgent, LocalTask
from adapters.store.memory import MemoryStore
from core.ports import ResourceManagerEvents, TaskLaunch, TaskStatus
from core.worker import WorkerState
from service.master import MasterService
from tests.integration.workers import JOBS, ROOT, LocalMaster

pytestmark = pytest.mark.timeout(120)
HOSTS = {"agent-a": "127.0.0.2", "agent-b": "127.0.0.3"}


class Agents:
    """The ResourceManager port over several LocalAgents; only those in `offering` offer."""

    def __init__(self, work_dir: Path) -> None:
        env = {"PYTHONPATH": str(ROOT)}
        self.agents = {
            agent_id: LocalAgent(work_dir, env=env, agent_id=agent_id, host=host)
            for agent_id, host in HOSTS.items()
        }
        self.offering = {"agent-a"}

    @property
    def tasks(self) -> dict[str, LocalTask]:
        return {t: task for a in self.agents.values() for t, task in a.tasks.items()}

    def start(self, events: ResourceManagerEvents) -> None:
        for agent in self.agents.values():
            agent.start(events)

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        for agent_id, agent in self.agents.items():
            agent.launch([t for t in tasks if t.task.assignment.agent_id == agent_id])

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None:
        for agent_id, agent in self.agents.items():
            mine = [o for o in offer_ids if o.startswith(f"{agent_id}-offer-")]
            if mine:
                agent.decline(mine, refuse_seconds)

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        self.agents[agent_id].kill(task_id, agent_id)

    def revive(self) -> None:
        for agent in self.agents.values():
            agent.revive()

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        for agent_id, agent in self.agents.items():
            agent.reconcile([(t, a) for t, a in tasks if a == agent_id])

    def acknowledge(self, status: TaskStatus) -> None:
        pass

    def step(self) -> None:
        for agent_id, agent in self.agents.items():
            if agent_id in self.offering or agent.tasks:
                agent.step()

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()


@contextlib.asynccontextmanager
async def two_agents(tmp: Path) -> AsyncIterator[tuple[LocalMaster, Agents]]:
    master = LocalMaster(tmp)
    agents = Agents(tmp)
    master.agent = agents  # type: ignore[assignment]  # the same port, over two agents
    master.service = master.master = MasterService(MemoryStore(), agents)
    await master.start()

    async def tick() -> None:  # the master's timer (adapters/cli/master.py ticks every 1 s)
        while True:
            master.service.tick()
            await asyncio.sleep(0.1)

    ticker = asyncio.create_task(tick())
    try:
        yield master, agents
    finally:
        ticker.cancel()
        await master.close()


async def test_drain_moves_the_workers_at_the_cluster_pace(tmp_path: Path) -> None:
    async with two_agents(tmp_path) as (m, agents), aiohttp.ClientSession() as http:
        jid = m.submit("drain", JOBS / "counter.py", [2, 1, 1])
        await m.until(lambda: len(m.started(jid)) == 4, f"{jid}: 4 workers Started")
        first = m.started(jid)
        assert {w.hostname for w in first} == {"127.0.0.2"}
        body = {
            "name": "drain",
            "user": "ops",
            "migrationConfig": {
                "strategy": "PERCENTAGE",
                "configString": '{"percentToMove":50,"intervalMs":1000}',
            },
        }
        path = "/api/v1/jobClusters/drain/actions/updateMigrationStrategy"
        async with http.post(m.url + path, json=body) as resp:
            assert resp.status == 204, await resp.text()
        agents.offering.add("agent-b")

        argv = ["agents", "drain", "127.0.0.2", "--url", m.url, "--token", "", "--user", "ops"]
        assert await asyncio.to_thread(main, argv) == 0

        most_away = 0

        def moved() -> bool:
            nonlocal most_away
            current = m.master.plane.job(jid).current_workers()
            away = sum(1 for w in current if w.state is not WorkerState.Started)
            most_away = max(most_away, away)
            return all(w.state is WorkerState.Started and w.agent_id == "agent-b" for w in current)

        await m.until(moved, "every worker Started on agent-b", timeout=60)
        assert most_away <= 2, f"{most_away} workers away at once: the pace is 2 (50 % of 4)"
        for wid in [w.worker_id for w in first]:
            ended = m.master.plane.workers[wid]
            assert ended.state is WorkerState.Failed and "moved off draining agent" in ended.message
            await m.until(
                lambda wid=wid: m.processes[wid].popen.poll() is not None,
                f"{wid}'s process stopped",
            )
        async with http.get(m.url + "/api/v1/agents") as resp:
            listed = {a["agentId"]: a for a in (await resp.json())["list"]}
        assert listed["agent-a"]["mode"] == "DRAINED" and listed["agent-a"]["workers"] == []
        assert len(listed["agent-b"]["workers"]) == 4
        assert not [t for t in agents.agents["agent-a"].tasks.values() if t.popen.poll() is None]

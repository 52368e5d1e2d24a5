"""A mesoslite agent running real task processes, with its master in the same event loop.

Each test starts a master (first-fit allocation, short intervals) and one `mesoslite.agent.MesosliteAgent`
on loopback, subscribes with mesoslite.client, launches shell or argv commands and checks the
status updates, sandboxes and kills. Waits are for events, with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from mesoslite.agent import AgentConfig, MesosliteAgent
from mesoslite.agent import create_app as create_agent_app
from mesoslite.client import SchedulerClient, command_task
from mesoslite.flags import MasterConfig
from mesoslite.http import create_app
from mesoslite.master import MesosliteMaster
from mesoslite.resources import Resources
from tests.eventually import eventually, wait_until

FRAMEWORK = {"user": "test", "name": "agent-tests"}


class FirstFit:
    """Every agent's free resources to the first willing framework (enough for one framework)."""

    def __init__(self) -> None:
        self.active: set[str] = set()
        self.free: dict[str, Resources] = {}
        self.filtered: dict[str, float] = {}

    def add_framework(self, framework_id: str, role: str, now: float) -> None:
        self.active.add(framework_id)

    def remove_framework(self, framework_id: str) -> None:
        self.active.discard(framework_id)

    def set_weight(self, role: str, weight: float) -> None:
        pass

    def add_agent(self, agent_id: str, total: Resources, allocated: dict[str, Resources]) -> None:
        free = total
        for r in allocated.values():
            free = free - r
        self.free[agent_id] = free

    def remove_agent(self, agent_id: str) -> None:
        del self.free[agent_id]

    def allocate(self, now: float) -> list[Any]:
        from mesoslite.allocator import Grant

        grants = []
        for aid, free in sorted(self.free.items()):
            if free.cpus_m and self.active and self.filtered.get(aid, 0) <= now:
                grants.append(Grant(min(self.active), aid, free))
                self.free[aid] = Resources()
        return grants

    def recover(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        now: float,
        refuse_seconds: float | None = None,
    ) -> None:
        if agent_id in self.free:
            self.free[agent_id] = self.free[agent_id] + resources
            if refuse_seconds:
                self.filtered[agent_id] = now + refuse_seconds

    def suppress(self, framework_id: str) -> None:
        self.active.discard(framework_id)

    def revive(self, framework_id: str) -> None:
        self.active.add(framework_id)
        self.filtered.clear()


@contextlib.asynccontextmanager
async def node(
    work_dir: Path, resources: str = "cpus:2;mem:1024;ports:[31000-31009]", kill_grace: float = 3.0
) -> AsyncIterator[tuple[SchedulerClient, MesosliteAgent]]:
    master = MesosliteMaster(
        MasterConfig(
            allocation_interval=0.02, heartbeat_interval=60.0, agent_reregister_timeout=0.0
        ),
        FirstFit(),
    )
    server = TestServer(create_app(master), host="127.0.0.1")
    await server.start_server()
    master.port = server.port or 0
    url = f"http://127.0.0.1:{server.port}"
    agent = MesosliteAgent(
        AgentConfig(
            master=url,
            resources=Resources.parse(resources),
            work_dir=work_dir,
            kill_grace_period=kill_grace,
        )
    )
    endpoint = TestServer(create_agent_app(agent), host="127.0.0.1")
    await endpoint.start_server()
    agent.endpoint_port = endpoint.port or 0
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    client = SchedulerClient(url)
    try:
        await client.subscribe(FRAMEWORK)
        yield client, agent
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(running, 10)
        await endpoint.close()
        await server.close()


async def launch(client: SchedulerClient, task_id: str, command: str, **kw: Any) -> str:
    offers = (await client.next_event("OFFERS"))["offers"]["offers"]
    o = offers[0]
    task = command_task(task_id, o["agent_id"]["value"], command, **kw)
    await client.accept([o["id"]["value"]], [task], refuse_seconds=0)
    return str(o["agent_id"]["value"])


async def states_until_terminal(
    client: SchedulerClient, task_id: str, timeout: float = 10.0
) -> list[dict[str, Any]]:
    seen = []
    while True:
        event = await client.next_event(
            "UPDATE",
            timeout=timeout,
            where=lambda e: e["update"]["status"]["task_id"]["value"] == task_id,
        )
        status = event["update"]["status"]
        seen.append(status)
        await client.acknowledge(status)
        if status["state"] not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"):
            return seen


async def until_state(client: SchedulerClient, task_id: str, state: str) -> None:
    """Acknowledge the task's updates (the next one comes only then) until it is in `state`."""
    while True:
        event = await client.next_event(
            "UPDATE", where=lambda e: e["update"]["status"]["task_id"]["value"] == task_id
        )
        await client.acknowledge(event["update"]["status"])
        if event["update"]["status"]["state"] == state:
            return


@pytest.mark.timeout(30)
async def test_a_shell_task_runs_in_its_sandbox_with_the_mesos_environment(tmp_path: Path) -> None:
    async with node(tmp_path) as (client, agent):
        env = {
            "variables": [{"name": "GREETING", "value": "hello"}, {"name": "HOST", "value": "mine"}]
        }
        task_id = "env-1"
        await client.accept(
            [(o := (await client.next_event("OFFERS"))["offers"]["offers"][0])["id"]["value"]],
            [
                {
                    **command_task(
                        task_id,
                        o["agent_id"]["value"],
                        "env; pwd; echo oops >&2",
                        ports=[(31002, 31003)],
                    ),
                    "command": {"value": "env; pwd; echo oops >&2", "environment": env},
                }
            ],
        )
        statuses = await states_until_terminal(client, task_id)
        assert [s["state"] for s in statuses] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        assert statuses[-1]["message"] == "Command exited with status 0"
        assert all(s["agent_id"]["value"] == agent.id and "uuid" in s for s in statuses)
        sandboxes = list(
            tmp_path.glob(f"slaves/{agent.id}/frameworks/*/executors/{task_id}/runs/*")
        )
        assert len(sandboxes) == 1
        out = (sandboxes[0] / "stdout").read_text()
        lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        assert lines["MESOS_TASK_ID"] == task_id and lines["MESOS_SANDBOX"] == str(sandboxes[0])
        assert lines["MESOS_FRAMEWORK_ID"] == client.framework_id
        assert lines["MESOS_AGENT_ID"] == agent.id
        assert (lines["PORTS"], lines["PORT0"], lines["PORT1"], lines["PORT"]) == (
            "31002,31003",
            "31002",
            "31003",
            "31002",
        )
        assert lines["GREETING"] == "hello" and lines["HOST"] == "mine"  # CommandInfo wins
        assert out.splitlines()[-1] == str(sandboxes[0])
        assert (sandboxes[0] / "stderr").read_text() == "oops\n"
        # Once the terminal update is acknowledged the agent forgets the task.
        async with asyncio.timeout(3):
            while agent.tasks:
                await asyncio.sleep(0.01)


@pytest.mark.timeout(30)
async def test_argv_commands_and_failures_carry_reasons(tmp_path: Path) -> None:
    async with node(tmp_path) as (client, agent):
        o = (await client.next_event("OFFERS"))["offers"]["offers"][0]
        aid = o["agent_id"]["value"]
        failing = {
            **command_task("exit3", aid, ""),
            "command": {"shell": False, "value": "/bin/sh", "arguments": ["sh", "-c", "exit 3"]},
        }
        missing = {
            **command_task("missing", aid, ""),
            "command": {"shell": False, "value": "/nonexistent/binary"},
        }
        signalled = command_task("segv", aid, "kill -SEGV $$")
        await client.accept([o["id"]["value"]], [failing, missing, signalled])
        exit3 = (await states_until_terminal(client, "exit3"))[-1]
        assert (exit3["state"], exit3["reason"], exit3["message"]) == (
            "TASK_FAILED",
            "REASON_COMMAND_EXECUTOR_FAILED",
            "Command exited with status 3",
        )
        gone = (await states_until_terminal(client, "missing"))[-1]
        assert (gone["state"], gone["reason"]) == ("TASK_FAILED", "REASON_CONTAINER_LAUNCH_FAILED")
        segv = (await states_until_terminal(client, "segv"))[-1]
        assert segv["message"] == "Command terminated with signal SIGSEGV"


@pytest.mark.timeout(30)
async def test_kill_is_sigterm_then_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    async with node(tmp_path, kill_grace=30.0) as (client, agent):
        o = (await client.next_event("OFFERS"))["offers"]["offers"][0]
        aid = o["agent_id"]["value"]
        polite = command_task("polite", aid, "sleep 60")
        trapped = tmp_path / "trapped"  # the shell ignores SIGTERM from here on
        stubborn = {
            **command_task("stubborn", aid, f"trap '' TERM; touch {trapped}; sleep 60; :"),
            "kill_policy": {"grace_period": {"nanoseconds": 300_000_000}},
        }
        await client.accept([o["id"]["value"]], [polite, stubborn])
        for tid in ("polite", "stubborn"):
            await until_state(client, tid, "TASK_RUNNING")
        await eventually(
            trapped.exists, "the shell to ignore SIGTERM", timeout=10
        )  # load can delay it
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.kill("polite")
        await client.kill("stubborn")
        polite_end = (await states_until_terminal(client, "polite"))[-1]
        assert (polite_end["state"], polite_end["message"]) == (
            "TASK_KILLED",
            "Command terminated with signal SIGTERM",
        )
        stubborn_end = (await states_until_terminal(client, "stubborn"))[-1]
        assert (stubborn_end["state"], stubborn_end["message"]) == (
            "TASK_KILLED",
            "Command terminated with signal SIGKILL",
        )
        assert 0.3 <= loop.time() - started < 10


@pytest.mark.timeout(30)
async def test_max_completion_time_fails_the_task(tmp_path: Path) -> None:
    async with node(tmp_path) as (client, agent):
        await launch(client, "slow", "sleep 60", max_completion_time={"nanoseconds": 200_000_000})
        end = (await states_until_terminal(client, "slow"))[-1]
        assert (end["state"], end["reason"]) == (
            "TASK_FAILED",
            "REASON_MAX_COMPLETION_TIME_REACHED",
        )


@pytest.mark.timeout(30)
async def test_a_task_can_message_its_framework_through_the_agent(tmp_path: Path) -> None:
    script = (
        "import json, os, urllib.request\n"
        "body = json.dumps({'type': 'MESSAGE', 'framework_id': {'value': os.environ['MESOS_FRAMEWORK_ID']},"
        " 'executor_id': {'value': os.environ['MESOS_EXECUTOR_ID']}, 'message': {'data': 'aGVsbG8='}})\n"
        "req = urllib.request.Request('http://' + os.environ['MESOS_AGENT_ENDPOINT'] + '/api/v1/executor',"
        " body.encode(), {'Content-Type': 'application/json'})\n"
        "assert urllib.request.urlopen(req).status == 202\n"
    )
    async with node(tmp_path) as (client, agent):
        o = (await client.next_event("OFFERS"))["offers"]["offers"][0]
        task = {
            **command_task("talker", o["agent_id"]["value"], ""),
            "command": {
                "shell": False,
                "value": sys.executable,
                "arguments": ["python", "-c", script],
                "environment": {"variables": [{"name": "NO_PROXY", "value": "127.0.0.1"}]},
            },
        }
        await client.accept([o["id"]["value"]], [task])
        message = (await client.next_event("MESSAGE", timeout=10))["message"]
        assert message == {
            "agent_id": {"value": agent.id},
            "executor_id": {"value": "talker"},
            "data": "aGVsbG8=",
        }
        assert (await states_until_terminal(client, "talker"))[-1]["state"] == "TASK_FINISHED"


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_spawned_tasks_die_with_their_agent(tmp_path: Path) -> None:
    """The agent sets PR_SET_PDEATHSIG: a task does not outlive a SIGKILLed agent."""
    pid_file = tmp_path / "pid"
    code = (
        "import asyncio\n"
        "from pathlib import Path\n"
        "from mesoslite.agent import spawn\n"
        "async def main():\n"
        f"    await spawn('/bin/sh', ['/bin/sh', '-c', 'echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 60'],"
        f" Path({str(tmp_path)!r}) / 'sandbox', {{'PATH': '/usr/bin:/bin'}})\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parent = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        wait_until(pid_file.exists, "the task to start", timeout=10)
        task_pid = int(pid_file.read_text())
        assert _alive(task_pid)
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: not _alive(task_pid), "the task to die with its agent", timeout=5)

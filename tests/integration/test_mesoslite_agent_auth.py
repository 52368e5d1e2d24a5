"""Agent authentication end to end: a mesoslite master as a real process with
`--authenticate-agents` (and `--authenticate-http-frameworks`), an agent process presenting
its credential through MESOSLITE_AGENT_CREDENTIAL, and agent processes with a wrong credential
or none, which the master refuses: they exit 1 saying why and are never offered to a framework.
A task's environment does not carry the agent's credential path nor its secret."""

from __future__ import annotations

import asyncio
import json
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesoslite.auth import AGENT_CREDENTIAL_ENV
from mesoslite.client import SchedulerClient, command_task
from mesoslite.local import LocalCluster
from tests.integration.mesoslite_framework import FAST, agents

FRAMEWORK = ("mantis", "framework secret")
AGENT = ("agent", "the agent's secret: 7f3a")
ROGUE_HOST = "127.0.0.9"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    credentials = tmp_path / "credentials.json"
    credentials.write_text(
        json.dumps({"credentials": [{"principal": p, "secret": s} for p, s in (FRAMEWORK, AGENT)]})
    )
    credential = tmp_path / "agent-credential.json"
    credential.write_text(json.dumps({"principal": AGENT[0], "secret": AGENT[1]}))
    with LocalCluster(
        tmp_path / "cluster",
        agents(1),
        master_args=FAST,
        credentials=credentials,
        agent_credential=credential,
    ) as c:
        yield c


async def rogue_agent(cluster: LocalCluster, work: Path, credential: Path | None) -> str:
    """Run an agent process that the master must refuse; its output, once it has exited 1."""
    argv = [
        "-m",
        "mesoslite.agent",
        "--master",
        cluster.url,
        "--work-dir",
        str(work),
        "--host",
        "127.0.0.1",
        "--hostname",
        ROGUE_HOST,
    ]
    env = {k: v for k, v in cluster.env.items() if k != AGENT_CREDENTIAL_ENV}
    if credential is not None:
        env[AGENT_CREDENTIAL_ENV] = str(credential)
    process = await asyncio.create_subprocess_exec(
        cluster.python, *argv, env=env, stdout=PIPE, stderr=STDOUT
    )
    try:
        async with asyncio.timeout(30):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:  # still running: it was not refused
            process.kill()
            await process.wait()
    assert process.returncode == 1, output.decode()
    return output.decode()


@pytest.mark.timeout(90)
async def test_only_an_agent_with_the_right_credential_is_offered_and_runs_tasks(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    assert "--authenticate-agents" in cluster.master_args
    assert cluster.agent_env[AGENT_CREDENTIAL_ENV].endswith("agent-credential.json")
    client = SchedulerClient(cluster.url, principal=FRAMEWORK[0], secret=FRAMEWORK[1])
    try:
        await client.subscribe({"user": "test", "name": "agent-auth"})
        first = (await client.next_event("OFFERS", timeout=20))["offers"]["offers"]
        (good,) = {o["agent_id"]["value"] for o in first}

        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps({"principal": AGENT[0], "secret": "guessed"}))
        for name, credential in (("wrong", wrong), ("none", None)):
            output = await rogue_agent(cluster, tmp_path / f"rogue-{name}", credential)
            assert output.count("agent_authentication_refused") == 1, output
            assert "agent_registered" not in output
        assert "guessed" not in output and AGENT[1] not in output

        state = cluster.state()
        assert [s["id"] for s in state["slaves"]] == [good]
        assert ROGUE_HOST not in json.dumps(state)

        # The authenticated agent runs a task, whose environment holds no credential.
        task = command_task("env-1", good, "env")
        await client.accept([o["id"]["value"] for o in first], [task], refuse_seconds=0)
        states = []
        while not states or states[-1]["state"] in ("TASK_STARTING", "TASK_RUNNING"):
            event = await client.next_event("UPDATE", timeout=20)
            states.append(event["update"]["status"])
            await client.acknowledge(states[-1])
        assert [s["state"] for s in states] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        (stdout,) = (cluster.work_dir / "agent-0").glob(
            "slaves/*/frameworks/*/executors/env-1/runs/*/stdout"
        )
        env = dict(line.split("=", 1) for line in stdout.read_text().splitlines() if "=" in line)
        assert env["MESOS_TASK_ID"] == "env-1"  # it is the task's environment
        assert AGENT_CREDENTIAL_ENV not in env and "MESOSLITE_CREDENTIALS" not in env
        assert "agent-credential.json" not in stdout.read_text()
        assert AGENT[1] not in stdout.read_text()

        # Every offer the framework was ever sent was of the authenticated agent.
        offered = {
            o["agent_id"]["value"]
            for e in client.events
            if e["type"] == "OFFERS"
            for o in e["offers"]["offers"]
        }
        assert offered == {good}
    finally:
        await client.close()

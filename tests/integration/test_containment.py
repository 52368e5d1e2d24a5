"""Agents contain their tasks, seen through /proc: real mesoslite master and agent processes
(mesoslite.local), tasks launched with mesoslite.client.

A SIGKILLed agent takes its workers with it, whether the shell execs the worker or stays
between them; an agent starting on a work dir kills what an earlier agent left there (and
nothing else); an agent that shuts down reports its tasks killed, and the framework gets that
after the agent has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from mesoslite.client import SchedulerClient, command_task
from mesoslite.containment import RECORDS, proc_stat
from mesoslite.local import LocalCluster, free_port
from tests.eventually import eventually

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG"),
]

ROOT = Path(__file__).resolve().parents[2]
COUNTER = Path(__file__).resolve().parent / "jobs" / "counter.py"
FRAMEWORK = {"user": "test", "name": "containment-tests"}


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as dead)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def task_pids(task_id: str) -> list[int]:
    """The live processes that a task started (they carry MESOS_TASK_ID in their environment)."""
    marker = f"\0MESOS_TASK_ID={task_id}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in b"\0" + (entry / "environ").read_bytes() and alive(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
    except OSError:
        return ""


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


@contextlib.asynccontextmanager
async def cluster_and_client(tmp_path: Path) -> AsyncIterator[tuple[LocalCluster, SchedulerClient]]:
    cluster = LocalCluster(tmp_path, 1, master_args=["--allocation-interval", "0.05"])
    await asyncio.to_thread(cluster.start)
    client = SchedulerClient(cluster.url)
    try:
        await client.subscribe(FRAMEWORK)
        yield cluster, client
    finally:
        await client.close()
        await asyncio.to_thread(cluster.stop)


async def launch(client: SchedulerClient, tasks: list[tuple[str, str, dict[str, str]]]) -> None:
    """Launch (task id, shell command, environment) tasks on the first offer."""
    offer = (await client.next_event("OFFERS", timeout=20))["offers"]["offers"][0]
    aid = offer["agent_id"]["value"]
    infos = []
    for task_id, command, env in tasks:
        variables = [{"name": k, "value": v} for k, v in env.items()]
        infos.append(
            {
                **command_task(task_id, aid, command),
                "command": {"value": command, "environment": {"variables": variables}},
            }
        )
    await client.accept([offer["id"]["value"]], infos)


async def next_status(client: SchedulerClient, task_id: str, timeout: float = 20) -> dict[str, Any]:
    """The task's next status update, acknowledged (the next one comes only then)."""
    event = await client.next_event(
        "UPDATE",
        timeout=timeout,
        where=lambda e: e["update"]["status"]["task_id"]["value"] == task_id,
    )
    status: dict[str, Any] = event["update"]["status"]
    await client.acknowledge(status)
    return status


async def until_running(client: SchedulerClient, task_id: str) -> None:
    while (await next_status(client, task_id))["state"] != "TASK_RUNNING":
        pass


def worker_env(index: int) -> dict[str, str]:
    """A stage-1 worker of a job whose master does not answer: it starts and runs on."""
    return {
        "MANTIS_JOB_ID": "contained-1",
        "MANTIS_STAGE": "1",
        "MANTIS_WORKER_INDEX": str(index),
        "MANTIS_WORKER_NUMBER": str(index + 1),
        "MANTIS_STAGE_WORKERS": "2",
        "MANTIS_MASTER_URL": f"http://127.0.0.1:{free_port()}",
        "MANTIS_ARTIFACT_URL": str(COUNTER),
        "MANTIS_PORTS": str(free_port()),
        "PYTHONPATH": str(ROOT),
    }


@pytest.mark.timeout(90)
async def test_workers_die_with_their_sigkilled_agent_with_or_without_a_shell_between(
    tmp_path: Path,
) -> None:
    async with cluster_and_client(tmp_path) as (cluster, client):
        worker = f"{sys.executable} -m runtime.worker"
        await launch(
            client,
            [
                ("exec", worker, worker_env(0)),  # one simple command: the shell execs it
                ("shell", f"{worker}; exit $?", worker_env(1)),  # the shell stays its parent
            ],
        )
        for tid in ("exec", "shell"):
            await until_running(client, tid)

        def workers() -> dict[str, int]:
            found = {}
            for tid in ("exec", "shell"):
                for pid in task_pids(tid):
                    if "runtime.worker" in cmdline(pid) and "exit" not in cmdline(pid):
                        found[tid] = pid
            return found

        def started(tid: str) -> bool:  # logged after it asked for its parent-death signal
            runs = tmp_path.glob(f"agent-0/slaves/*/frameworks/*/executors/{tid}/runs/*/std*")
            return any("worker_starting" in p.read_text() for p in runs)

        await eventually(
            lambda: len(workers()) == 2 and started("exec") and started("shell"),
            "both workers started",
            timeout=30,
        )
        pids = workers()
        shell_pids = [p for p in task_pids("shell") if p != pids["shell"]]
        assert session_of(pids["exec"]) == pids["exec"], "exec'd: the worker leads the task"
        assert shell_pids and session_of(pids["shell"]) == shell_pids[0] != pids["shell"]
        agent = cluster.agents[0]
        assert agent is not None
        assert session_of(pids["exec"]) != session_of(agent.pid), "Ctrl-C does not reach it"

        await asyncio.to_thread(cluster.kill_agent, 0, signal.SIGKILL)
        everything = [*pids.values(), *shell_pids]
        await eventually(
            lambda: not any(alive(p) for p in everything),
            "the workers to die with their agent",
            timeout=20,
        )
        for tid in ("exec", "shell"):  # SIGTERMed, they stopped cleanly
            runs = tmp_path.glob(f"agent-0/slaves/*/frameworks/*/executors/{tid}/runs/*/std*")
            assert any("worker_stopped" in p.read_text() for p in runs), tid


@pytest.mark.timeout(90)
async def test_an_agent_kills_what_an_earlier_agent_on_its_work_dir_left_and_nothing_else(
    tmp_path: Path,
) -> None:
    pids_file = tmp_path / "pids"
    decoy = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        async with cluster_and_client(tmp_path) as (cluster, client):
            # The background sleep has no parent-death signal: it outlives the killed agent.
            escaper = (
                f"sleep 300 & echo $$ $! > {pids_file}.tmp; mv {pids_file}.tmp {pids_file}; wait"
            )
            await launch(client, [("escaper", escaper, {})])
            await until_running(client, "escaper")
            await eventually(pids_file.exists, "the task to write its pids", timeout=10)
            shell, orphan = (int(p) for p in pids_file.read_text().split())
            await asyncio.to_thread(cluster.kill_agent, 0, signal.SIGKILL)
            await eventually(lambda: not alive(shell), "the task's shell to die with its agent")
            assert alive(orphan), "a leftover to reap"

            # A record naming a live group whose leader started at another time is a reused
            # pid, not a leftover: the decoy must survive the reaping.
            records = tmp_path / "agent-0" / RECORDS
            stat = proc_stat(decoy.pid)
            assert stat is not None
            (records / str(decoy.pid)).write_bytes(
                orjson.dumps({"pgid": decoy.pid, "start_time": stat[2] + 1, "task_id": "reused"})
            )

            await asyncio.to_thread(cluster.start_agent, 0)
            await eventually(
                lambda: not alive(orphan), "the new agent to kill the leftover", timeout=15
            )
            assert decoy.poll() is None and alive(decoy.pid)
            log = cluster.log_path("agent-0").read_text()
            assert "agent_reaped_leftover_task" in log and "escaper" in log
            assert not any(records.iterdir()), "records of the reaped groups removed"
    finally:
        decoy.kill()
        decoy.wait()


@pytest.mark.timeout(60)
async def test_an_agent_that_shuts_down_reports_its_tasks_killed_and_unregisters(
    tmp_path: Path,
) -> None:
    async with cluster_and_client(tmp_path) as (cluster, client):
        await launch(client, [("sleeper", "sleep 300", {})])
        await until_running(client, "sleeper")
        (pid,) = task_pids("sleeper")
        await asyncio.to_thread(cluster.kill_agent, 0, signal.SIGTERM)
        status = await next_status(client, "sleeper")
        assert (status["state"], status["reason"]) == ("TASK_KILLED", "REASON_EXECUTOR_TERMINATED")
        assert status["message"] == "Agent shut down; Command terminated with signal SIGTERM"
        assert not alive(pid)
        state = await asyncio.to_thread(cluster.state)
        assert state["activated_slaves"] == 0

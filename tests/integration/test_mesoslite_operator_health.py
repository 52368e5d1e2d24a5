"""Health checks end to end (mesoslite.health): a real master and agent (LocalCluster), a v1
framework (mesoslite.client) launching command tasks with COMMAND, HTTP and TCP health checks,
and the `healthy` status updates and kills Mesos' command executor would send."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mesoslite.client import SchedulerClient, command_task
from mesoslite.local import LocalCluster
from tests.integration.mesoslite_framework import FAST, agents

FAST_CHECK = {"delay_seconds": 0, "interval_seconds": 0.1, "timeout_seconds": 2}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("health"), agents(1), master_args=FAST) as c:
        yield c


async def launch(client: SchedulerClient, tasks: list[dict[str, Any]]) -> None:
    offers = (await client.next_event("OFFERS", timeout=10))["offers"]["offers"]
    await client.accept([offers[0]["id"]["value"]], tasks)


async def updates(client: SchedulerClient, task_id: str, until: str, n: int = 50) -> list[Any]:
    """The task's status updates (each acknowledged) up to the first in state `until`."""
    seen = []
    for _ in range(n):
        event = await client.next_event(
            "UPDATE",
            timeout=10,
            where=lambda e: e["update"]["status"]["task_id"]["value"] == task_id,
        )
        status = event["update"]["status"]
        await client.acknowledge(status)
        seen.append(status)
        if status["state"] == until:
            return seen
    raise AssertionError(f"no {until} for {task_id} in {seen}")


def health(statuses: list[dict[str, Any]]) -> list[tuple[str, bool | None]]:
    return [(s["state"], s.get("healthy")) for s in statuses if "healthy" in s]


@pytest.mark.timeout(60)
async def test_command_and_http_checks_report_healthy_and_a_failing_tcp_check_kills(
    cluster: LocalCluster,
) -> None:
    client = SchedulerClient(cluster.url)
    await client.subscribe({"user": "test", "name": "health"})
    offers = (await client.next_event("OFFERS", timeout=10))["offers"]["offers"]
    agent_id = offers[0]["agent_id"]["value"]
    port = offers[0]["resources"][-1]["ranges"]["range"][0]["begin"]
    command = command_task(
        "cmd",
        agent_id,
        "sleep 0.3; touch ready; exec sleep 60",
        health_check={
            **FAST_CHECK,
            "type": "COMMAND",
            "command": {"value": "test -f ready"},
            "grace_period_seconds": 30,
        },
    )
    web = command_task(
        "web",
        agent_id,
        f"exec python3 -m http.server {port} --bind 127.0.0.1",
        ports=[(port, port)],
        health_check={
            **FAST_CHECK,
            "type": "HTTP",
            "http": {"port": port, "path": "/"},
            "grace_period_seconds": 30,
        },
    )
    dead = command_task(
        "dead",
        agent_id,
        "exec sleep 60",
        health_check={
            **FAST_CHECK,
            "type": "TCP",
            "tcp": {"port": 1},
            "grace_period_seconds": 0,
            "consecutive_failures": 2,
        },
    )
    invalid = command_task("invalid", agent_id, "true", health_check={"type": "TCP"})
    await client.accept([offers[0]["id"]["value"]], [command, web, dead, invalid])

    error = await updates(client, "invalid", "TASK_ERROR")
    assert error[-1]["message"] == (
        "Task uses invalid health check: Expecting 'tcp' to be set for TCP health check"
    )
    cmd = await updates(client, "cmd", "TASK_RUNNING")
    while not health(cmd):
        cmd += await updates(client, "cmd", "TASK_RUNNING")
    assert health(cmd) == [("TASK_RUNNING", True)]
    assert cmd[-1]["reason"] == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
    served = await updates(client, "web", "TASK_RUNNING")
    while not health(served):
        served += await updates(client, "web", "TASK_RUNNING")
    assert health(served) == [("TASK_RUNNING", True)]

    killed = await updates(client, "dead", "TASK_KILLED")
    assert health(killed) == [
        ("TASK_RUNNING", False),
        ("TASK_RUNNING", False),
        ("TASK_KILLED", False),
    ]
    state = cluster.state()
    tasks = {t["id"]: t for f in state["frameworks"] for t in f["tasks"] + f["completed_tasks"]}
    assert tasks["cmd"]["statuses"][-1]["healthy"] is True
    await client.must({"type": "TEARDOWN"})
    await client.close()

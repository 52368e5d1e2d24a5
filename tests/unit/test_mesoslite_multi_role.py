"""MULTI_ROLE frameworks (FrameworkInfo.capabilities MULTI_ROLE with `roles`): one offer per
agent and role, every resource with `allocation_info.role`; a launch uses one role's offers
(Mesos' src/master/validation.cpp messages); SUPPRESS and REVIVE per role; a framework without
the capability keeps its one `role`."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from mesoslite.client import SchedulerClient, command_task
from mesoslite.resources import Resources
from tests.unit.mesoslite_drf_cluster import amounts, by_role, drf_cluster, operator_call
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent

MULTI = {**FRAMEWORK, "capabilities": [{"type": "MULTI_ROLE"}], "roles": ["web", "batch"]}


async def offers(client: SchedulerClient, count: int) -> list[dict[str, Any]]:
    """The next `count` offers, over as many OFFERS events as they take."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        got += (await client.next_event("OFFERS"))["offers"]["offers"]
    return got


@pytest.mark.timeout(20)
async def test_one_offer_per_agent_and_role_each_resource_allocated_to_it() -> None:
    async with drf_cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(resources="cpus:2;mem:1024;cpus(batch):1;cpus(web):1;mem(web):256")
        client = SchedulerClient(url)
        await client.subscribe(MULTI)
        got = by_role(await offers(client, 2))
        assert set(got) == {"web", "batch"}
        assert {o["agent_id"]["value"] for o in got.values()} == {agent.id}
        for role, o in got.items():
            assert all(r["allocation_info"] == {"role": role} for r in o["resources"])
        # DRF: both roles at share 0, 'batch' sorts first and takes the unreserved too.
        assert amounts(got["batch"]) == {
            ("cpus", "*"): 2.0,
            ("mem", "*"): 1024.0,
            ("cpus", "batch"): 1.0,
        }
        assert amounts(got["web"]) == {("cpus", "web"): 1.0, ("mem", "web"): 256.0}
        fw = master.state()["frameworks"][0]
        assert fw["roles"] == ["web", "batch"] and len(fw["offers"]) == 2
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_a_launch_uses_the_offers_of_one_role() -> None:
    async with drf_cluster() as (_master, url):
        agent = FakeAgent(url)
        await agent.register(resources="cpus:2;mem:1024;cpus(web):1;mem(web):256")
        aid = agent.id or ""
        client = SchedulerClient(url)
        await client.subscribe(MULTI)
        got = by_role(await offers(client, 2))
        both = [got["web"]["id"]["value"], got["batch"]["id"]["value"]]
        await client.accept(both, [command_task("two-roles", aid, "true")])
        lost = (await client.next_event("UPDATE"))["update"]["status"]
        assert lost["state"] == "TASK_LOST"
        assert "Aggregated offers must be allocated to the same role" in lost["message"]

        got = by_role(await offers(client, 2))
        mixed = command_task("mixed", aid, "true")
        mixed["resources"][0]["allocation_info"] = {"role": "web"}
        mixed["resources"][1]["allocation_info"] = {"role": "batch"}
        other = command_task("other-role", aid, "true")
        for r in other["resources"]:
            r["allocation_info"] = {"role": "web"}
        plain = command_task("plain", aid, "true")  # gets the offer's role
        await client.accept([got["batch"]["id"]["value"]], [mixed, other, plain])
        errors = {}
        for _ in range(2):
            status = (await client.next_event("UPDATE"))["update"]["status"]
            errors[status["task_id"]["value"]] = (status["state"], status["message"])
        assert errors["mixed"] == (
            "TASK_ERROR",
            "Invalid task resources: The resources have multiple allocation roles ('batch' and"
            " 'web') but only one allocation role is allowed",
        )
        assert errors["other-role"] == (
            "TASK_ERROR",
            "Task uses resources allocated to role 'web' but its offers are for role 'batch'",
        )
        run = (await agent.next_event("RUN_TASK"))["run_task"]["task"]
        assert run["task_id"] == {"value": "plain"}
        assert all(r["allocation_info"] == {"role": "batch"} for r in run["resources"])
        _, body = await operator_call(url, {"type": "GET_TASKS"})
        [task] = body["get_tasks"]["tasks"]
        assert {r["allocation_info"]["role"] for r in task["resources"]} == {"batch"}
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_suppress_and_revive_per_role_and_a_task_returns_to_its_role() -> None:
    async with drf_cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(resources="cpus:2;mem:1024")
        aid = agent.id or ""
        client = SchedulerClient(url)
        await client.subscribe(MULTI, suppressed_roles=["batch"])
        fid = client.framework_id or ""
        [o] = await offers(client, 1)
        assert o["allocation_info"] == {"role": "web"}
        assert master.frameworks[fid].suppressed_roles == {"batch"}
        await client.accept([o["id"]["value"]], [command_task("t", aid, "true", cpus=1)])
        await agent.next_event("RUN_TASK")
        await client.must({"type": "SUPPRESS", "suppress": {"roles": ["web"]}})
        assert master.frameworks[fid].suppressed
        await client.must({"type": "REVIVE", "revive": {"roles": ["batch"]}})
        [o] = await offers(client, 1)
        assert o["allocation_info"] == {"role": "batch"}
        assert Resources.from_mesos(o["resources"]) == Resources.parse("cpus:1;mem:992")
        await client.must({"type": "SUPPRESS", "suppress": {"roles": ["batch"]}})
        await client.decline([o["id"]["value"]])
        status = await agent.update(fid, "t", "TASK_FINISHED")
        await client.next_event("UPDATE")
        await client.acknowledge(status)
        await client.must({"type": "REVIVE", "revive": {"roles": ["web"]}})
        # The task's resources came back to 'web' (its allocation role), where they are
        # offered again with what 'batch' declined.
        [o] = await offers(client, 1)
        assert o["allocation_info"] == {"role": "web"}
        assert Resources.from_mesos(o["resources"]) == Resources.parse("cpus:2;mem:1024")
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_without_multi_role_a_framework_keeps_its_one_role() -> None:
    async with drf_cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(resources="cpus:2;mem:1024;cpus(batch):1")
        client = SchedulerClient(url)
        await client.subscribe({**FRAMEWORK, "role": "web"})
        [o] = await offers(client, 1)
        assert o["allocation_info"] == {"role": "web"}
        assert amounts(o) == {("cpus", "*"): 2.0, ("mem", "*"): 1024.0}
        fw = master.state()["frameworks"][0]
        assert (fw["role"], fw["roles"]) == ("web", ["web"])
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_roles_list_a_multi_role_framework_in_each_role_and_a_roles_quota() -> None:
    async with drf_cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(resources="cpus:2;mem:1024")
        client = SchedulerClient(url)
        await client.subscribe(MULTI, suppressed_roles=["batch"])
        fid = client.framework_id or ""
        [o] = await offers(client, 1)
        await client.accept([o["id"]["value"]], [command_task("t", agent.id or "", "true")])
        await agent.next_event("RUN_TASK")
        limits = {"cpus": {"value": 1}}
        quota = {"role": "web", "limits": limits}
        call = {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [quota]}}
        assert await operator_call(url, call) == (200, "")

        status, body = await operator_call(url, {"type": "GET_ROLES"})
        assert status == 200
        roles = {r["name"]: r for r in body["get_roles"]["roles"]}
        assert roles["web"]["frameworks"] == roles["batch"]["frameworks"] == [{"value": fid}]
        assert Resources.from_mesos(roles["web"]["resources"]) == Resources.parse("cpus:0.1;mem:32")
        assert roles["batch"]["resources"] == []

        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}/master/roles") as resp,
        ):
            readonly = {r["name"]: r for r in (await resp.json())["roles"]}
        assert readonly["web"]["quota"] == {
            "role": "web",
            "guarantee": {},
            "limit": {"cpus": 1.0},
            "consumed": {"cpus": 0.1, "mem": 32.0},
        }
        assert readonly["batch"]["frameworks"] == [fid] and "quota" not in readonly["batch"]
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_suppressed_roles_must_be_the_frameworks_roles() -> None:
    async with drf_cluster() as (master, url):
        client = SchedulerClient(url)
        event = await client.subscribe(MULTI, suppressed_roles=["web", "ops"])
        assert event == {
            "type": "ERROR",
            "error": {"message": "Suppressed roles { ops } are not contained in the set of roles"},
        }
        assert master.frameworks == {}
        await client.close()

        client = SchedulerClient(url)
        await client.subscribe(MULTI)
        fid = client.framework_id or ""
        info = {**MULTI, "id": {"value": fid}}
        update = {"framework_info": info, "suppressed_roles": ["*"]}
        status, text = await client.call({"type": "UPDATE_FRAMEWORK", "update_framework": update})
        assert (status, text) == (
            400,
            "Suppressed roles { * } are not contained in the set of roles",
        )
        assert master.frameworks[fid].suppressed_roles == set()
        await client.close()

"""mesoslite's roles and resources as Mesos checks and offers them: role names and a
framework's `role`/`roles` (src/common/roles.cpp, src/master/validation.cpp), custom scalar
resources (`network:1000`) and typed attributes (src/common/values.cpp), over a master on a
real loopback server with a scripted agent (mesoslite_fakes.FakeAgent)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from mesoslite.client import SchedulerClient, command_task
from mesoslite.flags import MasterConfig
from mesoslite.http import create_app
from mesoslite.master import MesosliteMaster
from mesoslite.resources import ResourceError, Resources, attributes_from_mesos
from mesoslite.roles import framework_roles_error, role_error
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent, FirstFitAllocator, offer


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[tuple[MesosliteMaster, str]]:
    config = MasterConfig(
        allocation_interval=0.02, heartbeat_interval=60.0, agent_reregister_timeout=0.0
    )
    master = MesosliteMaster(config, FirstFitAllocator())
    server = TestServer(create_app(master), host="127.0.0.1")
    await server.start_server()
    master.port = server.port or 0
    try:
        yield master, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("role", "error"),
    [
        ("*", None),
        ("prod", None),
        ("eng/backend", None),
        ("a*b", None),
        ("/a", "Role '/a' cannot start with a slash"),
        ("a/", "Role 'a/' cannot end with a slash"),
        ("a//b", "Role 'a//b' cannot contain two adjacent slashes"),
        ("", "Role names cannot be the empty string"),
        ("a/./b", "Role 'a/./b' cannot include '.' as a component"),
        ("..", "Role '..' cannot include '..' as a component"),
        ("a/*", "Role 'a/*' cannot include '*' as a component"),
        ("-x", "Role component '-x' is invalid because it starts with a dash"),
        ("a b", "Role component 'a b' is invalid because it contains backspace or whitespace"),
    ],
)
def test_role_names_are_checked_with_mesos_messages(role: str, error: str | None) -> None:
    assert role_error(role) == error


MULTI = {"capabilities": [{"type": "MULTI_ROLE"}]}


@pytest.mark.parametrize(
    ("info", "error"),
    [
        ({}, None),
        ({"role": "prod"}, None),
        ({**MULTI, "roles": ["a", "b"]}, None),
        (
            {"roles": ["a"]},
            "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable",
        ),
        (
            {**MULTI, "role": "a"},
            "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable",
        ),
        ({**MULTI, "roles": ["a", "a"]}, "'FrameworkInfo.roles' contains duplicate items: { a }"),
        (
            {**MULTI, "roles": ["-a"]},
            "'FrameworkInfo.roles' contains invalid role: Role component '-a' is invalid"
            " because it starts with a dash",
        ),
        ({"role": "a//b"}, "'FrameworkInfo.role' is not a valid role: Role 'a//b' cannot"),
    ],
)
def test_a_frameworks_roles_are_checked_as_mesos_does(info: dict[str, Any], error: str) -> None:
    got = framework_roles_error(info)
    assert got == error if error is None else (got or "").startswith(error)


@pytest.mark.timeout(20)
async def test_subscribing_with_bad_roles_gets_an_error_event_and_registers_nothing() -> None:
    async with cluster() as (master, url):
        client = SchedulerClient(url)
        event = await client.subscribe({**FRAMEWORK, "roles": ["prod"]})
        assert event["type"] == "ERROR"
        assert "must not be set when the framework is not MULTI_ROLE" in event["error"]["message"]
        assert master.frameworks == {}
        await client.close()


def test_custom_scalars_parse_add_subtract_and_round_trip() -> None:
    r = Resources.parse("cpus:2;network:1000;gpus:0;network:24")
    assert dict(r.custom) == {"network": 1_024_000}
    assert Resources.from_mesos(r.to_mesos()) == r
    assert {"name": "network", "type": "SCALAR", "scalar": {"value": 1024.0}, "role": "*"} in (
        r.to_mesos()
    )
    task = Resources.of(cpus=1, custom={"network": 100})
    assert r.contains(task) and not task.contains(r)
    left = r - task
    assert dict(left.custom) == {"network": 924_000} and left + task == r
    assert not r.contains(Resources.of(custom={"network": 2000}))
    assert not r.contains(Resources.of(custom={"fpga": 1}))
    assert str(r) == "cpus:2;network:1024"
    with pytest.raises(ResourceError, match="only ports may be ranges"):
        Resources.parse("network:[1-2]")
    with pytest.raises(ResourceError, match="Role component '-x' is invalid"):
        Resources.parse("cpus(-x):2")


@pytest.mark.timeout(20)
async def test_custom_scalars_are_offered_and_accounted_and_attributes_typed() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(
            resources="cpus:4;mem:4096;network:1000",
            attributes="rack:3;zone:a;slots:[1-4];tier:{gold,silver}",
        )
        client = SchedulerClient(url)
        await client.subscribe(FRAMEWORK)
        o = await offer(client)
        network = [r for r in o["resources"] if r["name"] == "network"]
        assert network == [
            {
                "name": "network",
                "type": "SCALAR",
                "scalar": {"value": 1000.0},
                "role": "*",
                "allocation_info": {"role": "*"},
            }
        ]
        typed = {a["name"]: a for a in o["attributes"]}
        assert typed["rack"] == {"name": "rack", "type": "SCALAR", "scalar": {"value": 3.0}}
        assert typed["zone"]["type"] == "TEXT"
        assert typed["slots"]["ranges"] == {"range": [{"begin": 1, "end": 4}]}
        assert typed["tier"]["set"] == {"item": ["gold", "silver"]}
        assert dict(attributes_from_mesos(o["attributes"])) == {
            "rack": "3",
            "zone": "a",
            "slots": "[1-4]",
            "tier": "{gold,silver}",
        }
        aid = agent.id or ""
        big = command_task("big", aid, "true")
        big["resources"].append({"name": "network", "type": "SCALAR", "scalar": {"value": 5000}})
        fits = command_task("fits", aid, "true")
        fits["resources"].append({"name": "network", "type": "SCALAR", "scalar": {"value": 300}})
        await client.accept([o["id"]["value"]], [big, fits])
        error = await client.next_event("UPDATE")
        assert error["update"]["status"]["task_id"] == {"value": "big"}
        assert error["update"]["status"]["state"] == "TASK_ERROR"
        run = (await agent.next_event("RUN_TASK"))["run_task"]["task"]
        assert run["task_id"] == {"value": "fits"}
        slave = master.state()["slaves"][0]
        assert slave["used_resources"]["network"] == 300.0
        assert slave["resources"]["network"] == 1000.0
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_suppress_and_revive_act_only_for_the_roles_they_name() -> None:
    async with cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        await client.subscribe({**FRAMEWORK, "role": "prod"})
        first = await offer(client)
        await client.decline([first["id"]["value"]], refuse_seconds=0)
        fid = client.framework_id or ""

        await client.must({"type": "SUPPRESS", "suppress": {"roles": ["dev"]}})
        assert not master.frameworks[fid].suppressed
        await client.must({"type": "SUPPRESS", "suppress": {"roles": ["prod"]}})
        assert master.frameworks[fid].suppressed
        assert master.allocate() == 0
        await client.must({"type": "REVIVE", "revive": {"roles": ["dev"]}})
        assert master.frameworks[fid].suppressed and master.allocate() == 0
        await client.must({"type": "REVIVE"})
        assert not master.frameworks[fid].suppressed
        again = await offer(client)
        assert again["allocation_info"] == {"role": "prod"}
        status, text = await client.call({"type": "SUPPRESS", "suppress": {"roles": "prod"}})
        assert status == 400 and "suppress.roles" in text
        assert not master.frameworks[fid].suppressed
        await client.close()
        await agent.close()

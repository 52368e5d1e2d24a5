"""Quota (operator API UPDATE_QUOTA / GET_QUOTA, Mesos 1.9+ QuotaConfig): limits cap what a role
is offered (src/master/allocator/mesos/hierarchical.cpp, stage 2), guarantees are reported;
invalid configs get Mesos' 400 and messages (src/master/quota.cpp, quota_handler.cpp) and
change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from mesoslite.allocator import Grant
from mesoslite.allocator.drf import HierarchicalDRF
from mesoslite.allocator.hierarchical import AllocatorError
from mesoslite.client import SchedulerClient, command_task
from mesoslite.resources import Resources
from tests.unit.mesoslite_drf_cluster import drf_cluster, operator_call
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent, offer

R = Resources.parse


def test_limits_cut_a_roles_unreserved_scalars_and_the_rest_goes_on() -> None:
    a = HierarchicalDRF()
    a.set_quota("dev", {"cpus": 1.5, "network": 100})
    a.add_framework("d", "dev", 0.0)
    a.add_framework("p", "prod", 0.0)
    a.add_agent("a1", R("cpus:4;mem:1024;network:1000;ports:[1-9]"), {})
    grants = a.allocate(1.0)  # dev sorts first (both at share 0)
    assert grants == [
        Grant("d", "a1", R("cpus:1.5;mem:1024;network:100;ports:[1-9]")),
        Grant("p", "a1", R("cpus:2.5;network:900")),
    ]
    a.recover("p", "a1", R("cpus:2.5;network:900"), 2.0)
    a.suppress("p")
    assert a.allocate(2.0) == []  # dev is at its limits
    a.recover("d", "a1", R("cpus:0.5"), 3.0)
    assert a.allocate(3.0) == [Grant("d", "a1", R("cpus:0.5"))]
    a.set_quota("dev", {})  # no limit any more
    a.recover("d", "a1", R("cpus:0.5"), 4.0)
    assert a.allocate(4.0) == [Grant("d", "a1", R("cpus:3;network:900"))]
    with pytest.raises(AllocatorError, match="limit of cpus must be >= 0"):
        a.set_quota("dev", {"cpus": -1})


def test_a_reservation_counts_in_its_roles_consumed_quota() -> None:
    a = HierarchicalDRF()
    a.set_quota("dev", {"cpus": 3})
    a.add_framework("d", "dev", 0.0)
    a.add_agent("a1", R("cpus(dev):2;cpus:4;mem:512"), {})
    assert a.allocate(1.0) == [Grant("d", "a1", R("cpus(dev):2;cpus:1;mem:512"))]


def config(role: str, **fields: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role}
    for name, amounts in fields.items():
        out[name] = {n: {"value": v} for n, v in amounts.items()}
    return out


def update(*configs: dict[str, Any], force: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"quota_configs": list(configs)}
    if force:
        body["force"] = True
    return {"type": "UPDATE_QUOTA", "update_quota": body}


INVALID = [
    (
        update(config("a/b", limits={"cpus": 1})),
        "Updating quota on nested role 'a/b' is not supported yet",
    ),
    (
        update(config("-x", limits={"cpus": 1})),
        "Invalid QuotaConfig: Invalid 'QuotaConfig.role': Role component '-x' is invalid"
        " because it starts with a dash",
    ),
    (update({"limits": {}}), "Invalid QuotaConfig: 'QuotaConfig.role' must be set"),
    (
        update(config("dev", limits={"cpus": -1})),
        "Invalid QuotaConfig: Invalid limit configuration {'cpus': -1}: Negative values not"
        " supported",
    ),
    (
        update(config("dev", guarantees={"mem": 2.0**41})),
        "Invalid QuotaConfig: Invalid 'QuotaConfig.guarantees': {'mem': 2.19902e+12} is invalid:"
        " values greater than 1 exabyte (1099511627776) are not supported",
    ),
    (
        update(config("dev", guarantees={"cpus": 2}, limits={"cpus": 1})),
        "Invalid QuotaConfig: 'QuotaConfig.guarantees' { cpus: 2 } is not contained within the"
        " 'QuotaConfig.limits' { cpus: 1 }",
    ),
    (
        update(config("ok", limits={"cpus": 1}), config("dev", guarantees={"cpus": 100})),
        "Invalid QuotaConfig: total quota guarantees 'cpus:100' exceed cluster capacity"
        " 'cpus:4; mem:1024' (use 'force' flag to bypass this check)",
    ),
    (
        update(config("dev", limits={"cpus": 0.05})),
        "Invalid QuotaConfig: Role 'dev' is already consuming 'cpus:0.1; mem:32'; this is more"
        " than the requested limits 'cpus:0.05' (use 'force' flag to bypass this check)",
    ),
]


@pytest.mark.timeout(20)
async def test_update_quota_checks_like_mesos_then_limits_cap_offers() -> None:
    async with drf_cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(resources="cpus:4;mem:1024")
        aid = agent.id or ""
        client = SchedulerClient(url)
        await client.subscribe({**FRAMEWORK, "role": "dev"})
        o = await offer(client)
        await client.accept([o["id"]["value"]], [command_task("t", aid, "sleep 60")])
        await agent.next_event("RUN_TASK")

        for call, message in INVALID:
            assert await operator_call(url, call) == (400, message)
        assert await operator_call(url, {"type": "GET_QUOTA"}) == (
            200,
            {"type": "GET_QUOTA", "get_quota": {"status": {"infos": [], "configs": []}}},
        )
        assert master.quotas == {}

        limited = config("dev", guarantees={"cpus": 1}, limits={"cpus": 2, "mem": 512})
        assert await operator_call(url, update(limited)) == (200, "")
        status, body = await operator_call(url, {"type": "GET_QUOTA"})
        assert status == 200
        assert body["get_quota"]["status"]["configs"] == [limited]
        assert body["get_quota"]["status"]["infos"] == [
            {
                "role": "dev",
                "guarantee": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}],
            }
        ]
        await client.must({"type": "REVIVE"})
        capped = await offer(client)  # the task holds cpus:0.1;mem:32 of the limits
        assert Resources.from_mesos(capped["resources"]) == R("cpus:1.9;mem:480")

        # force: a limit below what the role consumes; an empty config is the default quota.
        forced = update(config("dev", limits={"cpus": 0.05}), force=True)
        assert await operator_call(url, forced) == (200, "")
        assert master.quotas["dev"] == ({}, {"cpus": 0.05})
        assert await operator_call(url, update(config("dev"))) == (200, "")
        assert master.quotas == {}
        await client.close()
        await agent.close()

"""Static reservations (`cpus(prod):2` in an agent's --resources): parsed, rendered and
counted pool by pool as Mesos' Resources are, offered only to frameworks of their role with
`reservations: [{type: STATIC, role}]` (mesos.proto Resource.reservations), unreserved
resources to everyone (src/master/allocator/mesos/hierarchical.cpp, stage 2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesoslite.allocator import Grant
from mesoslite.allocator.drf import HierarchicalDRF
from mesoslite.client import SchedulerClient, command_task
from mesoslite.resources import ResourceError, Resources
from tests.unit.mesoslite_drf_cluster import amounts, drf_cluster
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent, offer

R = Resources.parse
AGENT = "cpus(prod):2;cpus:2;mem(prod):512;mem:1024"


def test_reservations_are_pools_by_role_in_text_json_and_arithmetic() -> None:
    r = R(AGENT + ";ports(prod):[31000-31009]")
    assert str(r) == "cpus:2;mem:1024;cpus(prod):2;mem(prod):512;ports(prod):[31000-31009]"
    assert r.unreserved() == R("cpus:2;mem:1024")
    assert r.reserved_for("prod") == R("cpus:2;mem:512;ports:[31000-31009]")
    assert r.flatten() == R("cpus:4;mem:1536;ports:[31000-31009]")
    assert r.scalars()["cpus"] == 4000
    assert R("cpus(*):1") == R("cpus:1")
    reserved = [x for x in r.to_mesos() if x["role"] == "prod"]
    assert len(reserved) == 3
    assert all(x["reservations"] == [{"type": "STATIC", "role": "prod"}] for x in reserved)
    assert Resources.from_mesos(r.to_mesos()) == r
    legacy = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}, "role": "prod"}]
    assert Resources.from_mesos(legacy) == R("cpus(prod):1")
    # A task naming reserved cpus fits only where that role's reservation has them.
    task = R("cpus(prod):1;mem:100")
    assert r.contains(task) and not R("cpus:8;mem:4096").contains(task)
    assert not r.contains(R("cpus(dev):1"))
    assert r - task + task == r
    assert r.allocatable_to("dev") == r.unreserved()
    assert r.allocatable_to("prod/web") == r  # an ancestor's reservation is allocatable
    with pytest.raises(ResourceError, match="Role 'a//b' cannot contain two adjacent slashes"):
        R("cpus(a//b):1")
    dynamic = [{**legacy[0], "reservations": [{"type": "DYNAMIC", "role": "prod"}]}]
    with pytest.raises(ResourceError, match="DYNAMIC reservations are not supported"):
        Resources.from_mesos(dynamic)


def test_reserved_resources_go_only_to_their_role_and_the_rest_to_anyone() -> None:
    a = HierarchicalDRF()
    a.add_framework("any", "*", 0.0)
    a.add_agent("a1", R(AGENT), {})
    assert a.allocate(1.0) == [Grant("any", "a1", R("cpus:2;mem:1024"))]
    assert a.available("a1") == R("cpus(prod):2;mem(prod):512")  # nobody else may have it
    a.add_framework("p", "prod", 1.0)
    assert a.allocate(2.0) == [Grant("p", "a1", R("cpus(prod):2;mem(prod):512"))]
    a.recover("any", "a1", R("cpus:2;mem:1024"), 3.0)
    # The reservation counts in prod's share: '*' (share 0) is offered the unreserved first.
    assert a.allocate(3.0) == [Grant("any", "a1", R("cpus:2;mem:1024"))]
    a.recover("p", "a1", R("cpus(prod):2;mem(prod):512"), 4.0)
    a.suppress("any")
    a.recover("any", "a1", R("cpus:2;mem:1024"), 4.0)
    assert a.allocate(4.0) == [Grant("p", "a1", R(AGENT))]  # its role's and everyone's


@pytest.mark.timeout(20)
async def test_a_reserved_offer_carries_its_reservation_and_is_used_only_by_its_role() -> None:
    async with drf_cluster() as (master, url):
        agent = FakeAgent(url)
        await agent.register(resources=AGENT)
        aid = agent.id or ""
        slave = master.state()["slaves"][0]
        assert slave["resources"]["cpus"] == 4.0
        assert slave["reserved_resources"]["prod"]["cpus"] == 2.0
        assert slave["unreserved_resources"]["cpus"] == 2.0

        other = SchedulerClient(url)
        await other.subscribe({**FRAMEWORK, "role": "dev"})
        dev_offer = await offer(other)
        assert amounts(dev_offer) == {("cpus", "*"): 2.0, ("mem", "*"): 1024.0}
        # Naming the reservation in a task of another role's offer is a TASK_ERROR.
        stolen = command_task("stolen", aid, "true", cpus=1)
        stolen["resources"][0]["reservations"] = [{"type": "STATIC", "role": "prod"}]
        await other.accept([dev_offer["id"]["value"]], [stolen], refuse_seconds=60)
        error = (await other.next_event("UPDATE"))["update"]["status"]
        assert error["state"] == "TASK_ERROR" and "more resources" in error["message"]

        prod = SchedulerClient(url)
        await prod.subscribe({**FRAMEWORK, "role": "prod"})
        o = await offer(prod)  # dev filtered the unreserved for 60 s: prod has everything
        assert amounts(o) == {
            ("cpus", "*"): 2.0,
            ("mem", "*"): 1024.0,
            ("cpus", "prod"): 2.0,
            ("mem", "prod"): 512.0,
        }
        reserved = [r for r in o["resources"] if r["role"] == "prod"]
        assert all(r["reservations"] == [{"type": "STATIC", "role": "prod"}] for r in reserved)
        assert all(r["allocation_info"] == {"role": "prod"} for r in o["resources"])
        task = command_task("on-reserved", aid, "true", cpus=1, mem=64)
        task["resources"] = [
            {**r, "scalar": {"value": 1 if r["name"] == "cpus" else 64}} for r in reserved
        ]
        await prod.accept([o["id"]["value"]], [task])
        run = (await agent.next_event("RUN_TASK"))["run_task"]["task"]
        assert run["task_id"] == {"value": "on-reserved"}
        assert Resources.from_mesos(run["resources"]) == R("cpus(prod):1;mem(prod):64")
        used = master.state()["slaves"][0]["used_resources"]
        assert (used["cpus"], used["mem"]) == (1.0, 64.0)
        await prod.close()
        await other.close()
        await agent.close()


ROLES = ("*", "a", "b", "a/x")
AGENT_SPECS = (
    "cpus:4;mem:1024",
    "cpus:2;mem:512;cpus(a):2;mem(a):256",
    "cpus(b):1;mem(b):64;ports(b):[1-3]",
    "cpus:1;mem:64;ports:[10-12];cpus(a/x):1;mem(a/x):32",
)


@settings(max_examples=80, deadline=None)
@given(
    specs=st.lists(st.sampled_from(AGENT_SPECS), min_size=1, max_size=4),
    roles=st.lists(st.sampled_from(ROLES), min_size=1, max_size=4),
    limited=st.sampled_from(ROLES),
    limit=st.sampled_from([None, 0.0, 0.5, 1.0, 3.0]),
)
def test_grants_keep_to_reservations_and_limits_and_leave_nothing_allocatable(
    specs: list[str], roles: list[str], limited: str, limit: float | None
) -> None:
    a = HierarchicalDRF()
    if limit is not None:
        a.set_quota(limited, {"cpus": limit})
    role_of = {f"f{i}": role for i, role in enumerate(roles)}
    for fid, role in role_of.items():
        a.add_framework(fid, role, 0.0)
    totals = {f"a{i}": R(spec) for i, spec in enumerate(specs)}
    for aid, total in totals.items():
        a.add_agent(aid, total, {})
    unreserved_cpus = 0
    for g in a.allocate(1.0):
        role = role_of[g.framework_id]
        assert all(r == role or role.startswith(r + "/") for r, _ in g.resources.reserved)
        if role == limited:
            unreserved_cpus += g.resources.cpus_m
    for aid, total in totals.items():  # every pool accounted for once: free + granted
        held = list(a.allocation(aid).values())
        assert sum(held, a.available(aid)) == total
    if limit is not None:
        reserved = sum(t.reserved_for(limited).cpus_m for t in totals.values())
        assert unreserved_cpus == 0 or reserved + unreserved_cpus <= limit * 1000
    for aid in totals:  # what a role could still take is not allocatable (or over its limit)
        for role in set(roles) - ({limited} if limit is not None else set()):
            left = a.available(aid).allocatable_to(role).flatten()
            assert left.cpus_m < 10 and left.mem_m < 32_000, (aid, role, left)

"""Allocation modules with concrete expectations: offers, weights, filters, suppression, priority."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesoslite.allocator import Grant, load_allocator
from mesoslite.allocator.drf import HierarchicalDRF
from mesoslite.allocator.hierarchical import AllocatorError, filter_timeout
from mesoslite.allocator.priority import StrictPriority
from mesoslite.resources import Resources

R = Resources.parse
SMALL = R("cpus:1;mem:1024")


def cluster(
    cls: type[HierarchicalDRF] | type[StrictPriority] = HierarchicalDRF,
    agents: int = 1,
    total: Resources = SMALL,
    **frameworks: str,
) -> HierarchicalDRF:
    a = cls()
    for fid, role in frameworks.items():
        a.add_framework(fid, role, 0.0)
    for i in range(agents):
        a.add_agent(f"a{i:03d}", total, {})
    return a  # type: ignore[return-value]


def by_framework(grants: list[Grant]) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in grants:
        out[g.framework_id] = out.get(g.framework_id, 0) + 1
    return out


def test_entry_points_name_both_modules() -> None:
    assert type(load_allocator("drf")) is HierarchicalDRF
    assert type(load_allocator("priority")) is StrictPriority
    with pytest.raises(ValueError, match="unknown allocator 'nope'"):
        load_allocator("nope")


def test_whole_agent_offer_counts_as_allocated_until_recovered() -> None:
    a = cluster(f1="r")
    a.add_agent(
        "big", R("cpus:4;mem:4096;ports:[31000-31009]"), {"f1": R("cpus:1;ports:[31000-31000]")}
    )
    grants = a.allocate(1.0)
    assert Grant("f1", "big", R("cpus:3;mem:4096;ports:[31001-31009]")) in grants
    assert Grant("f1", "a000", SMALL) in grants
    assert a.allocate(2.0) == []  # nothing is offered twice
    a.recover("f1", "big", R("cpus:1;mem:100;ports:[31005-31009]"), 2.0)
    assert a.available("big") == R("cpus:1;mem:100;ports:[31005-31009]")
    assert a.allocation("big") == {"f1": R("cpus:3;mem:3996;ports:[31000-31004]")}
    assert a.allocate(3.0) == [Grant("f1", "big", R("cpus:1;mem:100;ports:[31005-31009]"))]


@pytest.mark.parametrize(
    ("free", "offered"),
    [
        ("cpus:0.009;mem:31.999;disk:1000;ports:[1-100]", False),
        ("cpus:0.01", True),
        ("mem:32", True),
        ("cpus:0.01;mem:32", True),
        ("disk:100000;gpus:1", False),
    ],
)
def test_min_allocatable_is_cpus_0_01_or_mem_32(free: str, offered: bool) -> None:
    a = cluster(f1="r", agents=0)
    a.add_agent("a", R(free), {})
    assert bool(a.allocate(1.0)) is offered


def test_leftovers_below_min_allocatable_are_not_offered() -> None:
    a = cluster(f1="r", f2="r", agents=0)
    a.add_agent("a", R("cpus:2;mem:1024"), {"f1": R("cpus:1.995;mem:1000")})
    assert a.allocate(1.0) == []  # 5 millicpus and 24 MB left


def test_weights_2_to_1_give_about_2_to_1_of_many_small_agents() -> None:
    a = cluster(agents=300, heavy="gold", light="silver")
    a.set_weight("gold", 2.0)
    counts = by_framework(a.allocate(1.0))
    assert counts["heavy"] + counts["light"] == 300
    assert counts["heavy"] / counts["light"] == pytest.approx(2.0, abs=0.02)


def test_frameworks_in_a_role_share_it_by_drf() -> None:
    a = cluster(agents=90, f1="r", f2="r", f3="r")
    assert set(by_framework(a.allocate(1.0)).values()) == {30}


def test_lowest_dominant_share_goes_first_and_shares_are_dominant() -> None:
    a = cluster(agents=0, cpu_heavy="r1", mem_heavy="r2", idle="r3")
    # cluster: 10 cpus, 10,000 MB; cpu_heavy holds 50% cpus, mem_heavy 40% mem
    a.add_agent(
        "x",
        R("cpus:10;mem:10000"),
        {"cpu_heavy": R("cpus:5;mem:100"), "mem_heavy": R("cpus:1;mem:4000")},
    )
    assert (a.share("cpu_heavy"), a.share("mem_heavy"), a.share("idle")) == (0.5, 0.4, 0.0)
    a.suppress("idle")
    assert a.allocate(1.0)[0].framework_id == "mem_heavy"


def test_ties_go_to_the_fewer_allocations_and_recovery_does_not_count() -> None:
    a = cluster(agents=1, f1="r", f2="r")
    [g] = a.allocate(1.0)  # both at share 0 and count 0: the id decides
    assert g.framework_id == "f1"
    a.recover("f1", "a000", g.resources, 1.0)  # f1: share 0, count 1
    a.add_agent("a001", SMALL, {})
    assert [g.framework_id for g in a.allocate(2.0)] == ["f2", "f1"]


def test_refuse_filter_holds_until_it_expires_then_the_agent_comes_back() -> None:
    a = cluster(f1="r")
    [g] = a.allocate(0.0)
    a.recover("f1", "a000", g.resources, 0.0, refuse_seconds=10.0)
    assert a.refused("f1", "a000", 9.99) == [SMALL]
    for now in (1.0, 5.0, 9.99):
        assert a.allocate(now) == []
    assert a.allocate(10.0) == [g]  # the filter ends at t + 10 s
    assert a.refused("f1", "a000", 10.0) == []


def test_a_filtered_agent_goes_to_the_next_framework() -> None:
    a = cluster(f1="r", f2="r")
    [g] = a.allocate(0.0)
    assert g.framework_id == "f1"
    a.recover("f1", "a000", g.resources, 0.0, refuse_seconds=60.0)
    assert [g.framework_id for g in a.allocate(1.0)] == ["f2"]


@pytest.mark.parametrize(
    ("refuse", "timeout"),
    [
        (None, 0.0),
        (0.0, 0.0),
        (0.2, 1.0),
        (-1.0, 5.0),
        (float("nan"), 5.0),
        (30.0, 30.0),
        (2**31 - 1, 365 * 86400.0),
    ],
)
def test_refuse_seconds_follow_mesos(refuse: float | None, timeout: float) -> None:
    a = cluster(f1="r")
    [g] = a.allocate(100.0)
    a.recover("f1", "a000", g.resources, 100.0, refuse_seconds=refuse)
    if timeout:
        assert filter_timeout(refuse or 0.0) == timeout
        assert a.allocate(100.0 + timeout - 0.001) == []
    assert a.allocate(100.0 + timeout) == [g]


def test_a_filter_refuses_subsets_only() -> None:
    a = cluster(f1="r", f2="r", agents=0)
    a.add_agent("x", R("cpus:4;mem:4096"), {"f2": R("cpus:2;mem:2048")})
    [g] = a.allocate(0.0)
    assert g == Grant("f1", "x", R("cpus:2;mem:2048"))
    a.recover("f1", "x", g.resources, 0.0, refuse_seconds=100.0)
    a.suppress("f2")
    assert a.allocate(1.0) == []  # the same resources: refused
    a.recover("f2", "x", R("cpus:1"), 1.0)  # more is free now: no longer a subset
    assert a.allocate(2.0) == [Grant("f1", "x", R("cpus:3;mem:2048"))]
    a.recover("f1", "x", R("cpus:3;mem:2048"), 2.0, refuse_seconds=100.0)
    a.revive("f2")
    [g2] = a.allocate(3.0)
    assert g2.framework_id == "f2"
    a.recover("f2", "x", R("cpus:1;mem:2048"), 3.0)  # f2 keeps 2 cpus: cpus:1;mem:2048 is free
    a.suppress("f2")
    assert a.allocate(4.0) == []  # a subset of what f1 refused


def test_revive_clears_filters_and_suppression_suppress_keeps_filters() -> None:
    a = cluster(f1="r", agents=2)
    grants = a.allocate(0.0)
    a.recover("f1", "a000", grants[0].resources, 0.0, refuse_seconds=1000.0)
    a.recover("f1", "a001", grants[1].resources, 0.0)
    a.suppress("f1")
    assert a.allocate(1.0) == []
    a.suppress("f1")  # idempotent
    a.revive("f1")
    assert {g.agent_id for g in a.allocate(2.0)} == {"a000", "a001"}
    a.recover("f1", "a000", SMALL, 2.0, refuse_seconds=1000.0)
    a.suppress("f1")
    a.revive("f1")
    assert [g.agent_id for g in a.allocate(3.0)] == ["a000"]


def test_strict_priority_serves_the_heaviest_role_while_it_takes_offers() -> None:
    a = cluster(StrictPriority, agents=10, low="batch", high="prod", mid="dev")
    a.set_weight("prod", 10.0)
    a.set_weight("dev", 5.0)
    assert by_framework(a.allocate(0.0)) == {"high": 10}
    for i in range(10):
        a.recover("high", f"a{i:03d}", SMALL, 0.0, refuse_seconds=60.0 if i < 4 else None)
    assert by_framework(a.allocate(1.0)) == {"high": 6, "mid": 4}
    a.suppress("high")
    a.suppress("mid")
    a.add_agent("new", SMALL, {})
    assert by_framework(a.allocate(2.0)) == {"low": 1}


def test_drf_is_not_priority() -> None:
    a = cluster(agents=10, low="batch", high="prod")
    a.set_weight("prod", 10.0)
    assert by_framework(a.allocate(0.0)) == {"high": 9, "low": 1}


def test_agent_visiting_order_rotates_each_cycle() -> None:
    a = cluster(f1="r", agents=3)
    firsts = []
    for t in range(4):
        grants = a.allocate(float(t))
        firsts.append(grants[0].agent_id)
        for g in grants:
            a.recover(g.framework_id, g.agent_id, g.resources, float(t))
    assert firsts == ["a000", "a001", "a002", "a000"]


def test_errors_change_nothing() -> None:
    a = cluster(f1="r")
    [g] = a.allocate(0.0)
    with pytest.raises(AllocatorError, match="does not hold"):
        a.recover("f1", "a000", R("cpus:2"), 0.0, refuse_seconds=5.0)
    with pytest.raises(AllocatorError, match="does not hold"):
        a.recover("f2", "a000", R("cpus:1"), 0.0)
    for call in (a.suppress, a.revive, a.remove_framework):
        with pytest.raises(AllocatorError, match="unknown framework"):
            call("nope")
    with pytest.raises(AllocatorError, match="unknown agent"):
        a.remove_agent("nope")
    with pytest.raises(AllocatorError, match="weight"):
        a.set_weight("r", 0.0)
    with pytest.raises(AllocatorError, match="exceed or overlap"):
        a.add_agent(
            "a000", R("cpus:1;ports:[1-2]"), {"f1": R("ports:[1-2]"), "f2": R("ports:[2-2]")}
        )
    assert a.allocation("a000") == {"f1": g.resources}
    assert a.refused("f1", "a000", 0.0) == []
    a.recover("f1", "gone", SMALL, 0.0)  # an agent that left: nothing to do


def test_removed_framework_keeps_its_resources_in_use_until_recovered() -> None:
    a = cluster(f1="r", f2="r")
    [g] = a.allocate(0.0)
    a.remove_framework("f1")
    assert a.allocate(1.0) == []  # still in use by f1's tasks
    a.recover("f1", "a000", g.resources, 1.0, refuse_seconds=100.0)  # no filter for the gone
    assert a.allocate(2.0) == [Grant("f2", "a000", SMALL)]


def test_failover_keeps_the_allocation_and_clears_filters_and_suppression() -> None:
    a = cluster(f1="r1", agents=2)
    grants = a.allocate(0.0)
    a.recover("f1", "a001", grants[1].resources, 0.0, refuse_seconds=100.0)
    a.suppress("f1")
    a.add_framework("f1", "r2", 1.0)
    assert a.allocation("a000") == {"f1": SMALL}
    assert a.allocate(1.0) == [Grant("f1", "a001", SMALL)]


def test_agent_reregistration_replaces_the_old_incarnation() -> None:
    a = cluster(f1="r", f2="r")
    a.allocate(0.0)
    a.recover("f1", "a000", SMALL, 0.0, refuse_seconds=100.0)
    a.add_agent("a000", R("cpus:2;mem:1024"), {"f2": R("cpus:1")})
    assert a.allocation("a000") == {"f2": R("cpus:1")}
    assert a.allocate(1.0) == [Grant("f1", "a000", R("cpus:1;mem:1024"))]  # the filter went too


SCENARIO = """
from mesoslite.allocator.drf import HierarchicalDRF
from mesoslite.resources import Resources
a = HierarchicalDRF()
for i in range(12):
    a.add_framework(f"f{i}", f"role-{i % 3}", 0.0)
a.set_weight("role-1", 2.0)
for i in range(40):
    a.add_agent(f"agent-{i}", Resources.parse("cpus:4;mem:4096;ports:[31000-31010]"), {})
for t in range(5):
    grants = a.allocate(float(t))
    print(grants)
    for g in grants[::2]:
        a.recover(g.framework_id, g.agent_id, g.resources, float(t), refuse_seconds=2.0)
"""


def test_grants_do_not_depend_on_the_hash_seed() -> None:
    root = str(Path(__file__).resolve().parents[2])
    outs = {
        subprocess.run(
            [sys.executable, "-c", SCENARIO],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": root},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outs) == 1 and "Grant(" in next(iter(outs))


ALLOCATOR = Path(__file__).resolve().parents[2] / "mesoslite" / "allocator"


@pytest.mark.parametrize("name", ["__init__.py", "hierarchical.py", "drf.py", "priority.py"])
def test_allocator_modules_are_pure(name: str) -> None:
    """Time comes only as `now`, and nothing random or clock-like is imported."""
    impure = {"time", "random", "datetime", "asyncio", "threading", "os", "uuid", "secrets"}
    tree = ast.parse((ALLOCATOR / name).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [m for m in imported if m.split(".")[0] in impure] == []

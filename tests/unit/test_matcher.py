"""The offer matcher on small, hand-checked cases: what it places where, and why not."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.effects import LaunchRequest
from core.model import DurationType, JobConstraint, MachineDefinition
from core.scheduling import (
    CPU_BIN_PACKER,
    HostAttrValue,
    MantisFitness,
    MatchConfig,
    Matcher,
    MatchResult,
    Offer,
    Placement,
    UniqueHost,
    match,
    resolve,
)

C = JobConstraint
PERPETUAL, TRANSIENT = DurationType.Perpetual, DurationType.Transient
FULL_SEARCH_CPU = MatchConfig(fitness=CPU_BIN_PACKER, good_enough=1.0)
PORTS = ((31000, 31099),)


def req(
    wid: str,
    job: str = "j-1",
    stage: int = 1,
    cpus: float = 1.0,
    mem: float = 512.0,
    ports: int = 1,
    hard: tuple[object, ...] = (),
    soft: tuple[object, ...] = (),
    duration: DurationType = PERPETUAL,
    ready_at: float = 0.0,
    net: float = 128.0,
) -> LaunchRequest:
    index = int(wid.rsplit("-", 1)[-1]) if wid[-1].isdigit() else 0
    return LaunchRequest(
        wid,
        job,
        stage,
        index,
        index,
        MachineDefinition(cpus, mem, net, 0.0, ports),
        hard,
        soft,
        duration,
        ready_at,
    )  # type: ignore[arg-type]


def offer(
    oid: str,
    agent: str,
    cpus: float = 4.0,
    mem: float = 8192.0,
    ports: tuple[tuple[int, int], ...] = PORTS,
    net: float = 1000.0,
    **attrs: str,
) -> Offer:
    return Offer(
        oid, agent, f"{agent}.example", cpus, mem, 0.0, net, ports, tuple(sorted(attrs.items()))
    )


def placed(
    wid: str,
    agent: str,
    job: str = "j-9",
    stage: int = 1,
    cpus: float = 1.0,
    mem: float = 512.0,
    duration: DurationType = PERPETUAL,
    hard: tuple[object, ...] = (),
    **attrs: str,
) -> Placement:
    return Placement(
        wid,
        job,
        stage,
        agent,
        f"{agent}.example",
        tuple(sorted(attrs.items())),
        duration,
        cpus,
        mem,
        0.0,
        128.0,
        hard,
    )


def where(result: MatchResult) -> dict[str, str]:
    return {a.worker_id: a.agent_id for a in result.assignments}


UNIQUE = "hard constraint UniqueHost not satisfiable on any agent on offer"


def reasons(result: MatchResult) -> tuple[tuple[str, str], ...]:
    return tuple((wid, str(reason)) for wid, reason in result.unplaced)


# ---------------------------------------------------------------------------- offers and ports


def test_offers_of_one_agent_combine_and_are_all_used() -> None:
    offers = [
        offer("o1", "a1", cpus=2),
        offer("o2", "a1", cpus=2, ports=((32000, 32009),)),
        offer("o3", "a2", cpus=3),
    ]
    result = match([req("w-0", cpus=4)], offers, [], now=0)
    (a,) = result.assignments
    assert (a.agent_id, a.offer_ids, a.hostname) == ("a1", ("o1", "o2"), "a1.example")
    assert (a.cpus, a.mem, a.network_mbps, a.disk) == (4, 512, 128, 0)
    assert result.declined == ("o3",)
    assert reasons(result) == ()


def test_ports_are_the_lowest_free_ones_and_overlapping_ranges_count_once() -> None:
    # Seven distinct ports (100-104, 200-201); each request needs num_ports + 4.
    offers = [
        offer("o1", "a1", ports=((100, 103), (200, 201))),
        offer("o2", "a1", ports=((102, 104),)),
    ]
    result = match([req("w-0", ports=1), req("w-1", ports=2)], offers, [], now=0)
    assert [(a.worker_id, a.ports) for a in result.assignments] == [
        ("w-0", (100, 101, 102, 103, 104))
    ]
    assert reasons(result) == (("w-1", "no agent offers 6 ports (largest offer: 2 ports)"),)
    same = offer("o3", "a2", cpus=8, mem=16384)  # as a1 in all but ports: a1 comes first
    both = match([req("w-0", ports=1), req("w-1", ports=1)], [*offers, same], [], 0)
    assert [a.ports for a in both.assignments] == [
        (100, 101, 102, 103, 104),
        (31000, 31001, 31002, 31003, 31004),
    ]


def test_not_ready_requests_are_neither_placed_nor_failed() -> None:
    result = match(
        [req("w-0", ready_at=10.0), req("w-1", ready_at=5.0)], [offer("o1", "a1")], [], now=5.0
    )
    assert where(result) == {"w-1": "a1"}
    assert reasons(result) == ()


def test_reasons_for_unplaced_requests() -> None:
    assert reasons(match([req("w-0")], [], [], now=0)) == (("w-0", "no offers"),)
    offers = [offer("o1", "a1", cpus=0.5), offer("o2", "a2", mem=100), offer("o3", "a3", net=0)]
    result = match([req("w-0"), req("w-1")], offers, [], now=0)
    reason = "no agent of 3 on offer fits: cpus on 1, mem on 1, network on 1"
    assert reasons(result) == (("w-0", reason), ("w-1", reason))
    assert result.declined == ("o1", "o2", "o3")


def test_a_request_for_a_placed_worker_is_refused() -> None:
    result = match([req("w-0")], [offer("o1", "a1")], [placed("w-0", "a1", job="j-1")], now=0)
    assert reasons(result) == (("w-0", "already placed"),)


def test_duplicate_ids_are_errors() -> None:
    with pytest.raises(ValueError, match="duplicate offer"):
        match([], [offer("o1", "a1"), offer("o1", "a2")], [], now=0)
    with pytest.raises(ValueError, match="duplicate request"):
        match([req("w-0"), req("w-0")], [offer("o1", "a1")], [], now=0)
    with pytest.raises(ValueError, match="duplicate placement"):
        match([], [], [placed("p-0", "a1"), placed("p-0", "a2")], now=0)


# ---------------------------------------------------------------------------- fitness


def test_cpu_bin_packing_picks_the_fullest_host_and_breaks_ties_by_agent_id() -> None:
    offers = [offer("o1", "a1", cpus=4), offer("o2", "a2", cpus=2), offer("o3", "a3", cpus=2)]
    result = match([req("w-0")], offers, [], now=0, config=FULL_SEARCH_CPU)
    assert where(result) == {"w-0": "a2"}


def test_bin_packing_counts_placed_tasks_into_the_host_total() -> None:
    # Both offer 2 CPUs, but a2 already runs 6: it is 7/8 full after placement, a1 only 1/2.
    offers = [offer("o1", "a1", cpus=2), offer("o2", "a2", cpus=2)]
    result = match(
        [req("w-0")], offers, [placed("p-0", "a2", cpus=6)], now=0, config=FULL_SEARCH_CPU
    )
    assert where(result) == {"w-0": "a2"}


def test_full_search_looks_past_the_first_fit_while_a_host_could_be_better() -> None:
    # a1: 1 of 4 CPUs free -> 3.5/4 = 0.875 used after placement; a2: 2 of 16 free -> 14.5/16.
    offers = [offer("o1", "a1", cpus=1), offer("o2", "a2", cpus=2)]
    placements = [placed("p-0", "a1", cpus=3), placed("p-1", "a2", cpus=14)]
    result = match([req("w-0", cpus=0.5)], offers, placements, now=0, config=FULL_SEARCH_CPU)
    assert where(result) == {"w-0": "a2"}


def test_mantis_fitness_keeps_transient_tasks_off_perpetual_hosts() -> None:
    # a1 (less free, first in the scan) runs a Perpetual task: for a Transient task its
    # duration affinity is 0 and its fitness 0.3 * packing + 0.2 < 0.63; the empty a2 scores
    # 0.45 + 0.2 + packing > 0.63, good enough.
    offers = [offer("o1", "a1", cpus=2), offer("o2", "a2", cpus=4)]
    placements = [placed("p-0", "a1", duration=PERPETUAL)]
    result = match(
        [req("w-0", duration=TRANSIENT), req("w-1", job="j-2")], offers, placements, now=0
    )
    assert where(result) == {"w-0": "a2", "w-1": "a1"}


def test_preferred_cluster_breaks_otherwise_equal_hosts() -> None:
    offers = [offer("o1", "a1", cluster="east"), offer("o2", "a2", cluster="west")]
    full = MatchConfig(good_enough=1.0)
    result = match([req("w-0")], offers, [], 0, full, preferred_clusters={"w-0": "west"})
    assert where(result) == {"w-0": "a2"}
    assert where(match([req("w-0")], offers, [], 0, full)) == {"w-0": "a1"}


def test_mantis_fitness_values() -> None:
    from core.scheduling.hosts import Host, Machine, TaskRequest

    fit = MantisFitness()
    host = Host("a1", "h1", Machine("h1"))
    host.total_cpus, host.cpus, host.total_mem, host.mem, host.total_net, host.net = (
        8,
        4,
        1000,
        500,
        100,
        100,
    )
    task = TaskRequest(
        "w", "j", 1, 0, 0, 0.0, 2, 250, 0, 50, 5, True, "", (), (), False, False, False
    )
    packing = ((8 - 4 + 2) / 8 + (1000 - 500 + 250) / 1000 + (100 - 100 + 50) / 100) / 3
    assert fit(task, host) == pytest.approx(0.3 * packing + 0.5 * 0.9 + 0.2 * 1.0)
    host.tasks, host.perpetual = 4, 1
    assert fit(task, host) == pytest.approx(0.3 * packing + 0.5 * 0.25 + 0.2)
    task.perpetual, task.preferred_cluster = False, "west"
    assert fit(task, host) == pytest.approx(0.3 * packing + 0.5 * 0.75 + 0.2 * 0.8)


# ---------------------------------------------------------------------------- constraints


def test_hard_unique_host_leaves_the_extra_worker_unplaced() -> None:
    offers = [offer("o1", "a1"), offer("o2", "a2")]
    result = match([req(f"w-{i}", hard=(C.UniqueHost,)) for i in range(3)], offers, [], now=0)
    assert sorted(where(result).values()) == ["a1", "a2"]
    assert reasons(result) == (("w-2", UNIQUE),)


def test_a_host_is_a_hostname_unless_configured_per_agent() -> None:
    # Two agents on one machine, and a third: UniqueHost places two workers, not three.
    offers = [offer("o1", "a1"), offer("o2", "a2"), offer("o3", "a3")]
    offers[1] = dataclasses.replace(offers[1], hostname="a1.example")
    requests = [req(f"w-{i}", hard=(C.UniqueHost,)) for i in range(3)]
    result = match(requests, offers, [], now=0)
    assert sorted(where(result).values()) == ["a1", "a3"]
    assert reasons(result) == (("w-2", UNIQUE),)
    per_agent = match(requests, offers, [], 0, MatchConfig(host_identity="agent"))
    assert sorted(where(per_agent).values()) == ["a1", "a2", "a3"]


def test_a_restarted_agent_is_still_the_host_of_its_old_tasks() -> None:
    # a1 came back as a1b on the same host; its old worker is not known lost yet.
    offers = [offer("o1", "a1b", cpus=2), offer("o2", "a2")]
    offers[0] = dataclasses.replace(offers[0], hostname="a1.example")
    placements = [placed("p-0", "a1", job="j-1")]
    result = match([req("w-0", hard=(C.UniqueHost,))], offers, placements, now=0)
    assert where(result) == {"w-0": "a2"}


def test_a_task_on_one_agent_of_a_host_changes_how_its_other_agents_rank() -> None:
    # `as` and `ac` share host h. w-0 takes ac (m3, so it breaks no soft constraint); w-1
    # must then see that `as` breaks UniqueHost too now, and take ac again (fuller than ay).
    offers = [
        offer("o1", "as", cpus=2, asg="other"),
        offer("o2", "ac", cpus=3, asg="mantisagent-main-m3-v1"),
        offer("o3", "ay", cpus=8),
    ]
    offers[:2] = [dataclasses.replace(o, hostname="h.example") for o in offers[:2]]
    placements = [dataclasses.replace(placed("p-0", "as", cpus=6), hostname="h.example")]
    requests = [req(f"w-{i}", soft=(C.UniqueHost, C.M3Cluster)) for i in range(2)]
    result = match(requests, offers, placements, now=0, config=FULL_SEARCH_CPU)
    assert where(result) == {"w-0": "ac", "w-1": "ac"}


def test_an_agent_has_one_hostname() -> None:
    offers = [offer("o1", "a1"), dataclasses.replace(offer("o2", "a1"), hostname="x.example")]
    with pytest.raises(ValueError, match="is on"):
        match([], offers, [], now=0)


def test_unique_host_counts_running_workers_of_the_stage_only() -> None:
    offers = [offer("o1", "a1"), offer("o2", "a2", cpus=2)]
    placements = [placed("p-0", "a2", job="j-1", stage=1), placed("p-1", "a1", job="j-1", stage=2)]
    result = match([req("w-0", hard=(C.UniqueHost,))], offers, placements, now=0)
    assert where(result) == {"w-0": "a1"}


def test_soft_unique_host_spreads_when_it_can_and_packs_when_it_must() -> None:
    offers = [offer("o1", "a1"), offer("o2", "a2")]
    result = match([req(f"w-{i}", soft=(C.UniqueHost,)) for i in range(3)], offers, [], now=0)
    assert len(result.assignments) == 3
    assert sorted(where(result).values()) in (["a1", "a1", "a2"], ["a1", "a2", "a2"])
    assert where(result)["w-0"] != where(result)["w-1"]


def test_hard_exclusive_host_needs_a_host_without_other_jobs_and_keeps_them_off() -> None:
    offers = [offer("o1", "a1", cpus=2), offer("o2", "a2", cpus=8)]
    requests = [
        req("w-0", job="j-1", hard=(C.ExclusiveHost,)),
        req("w-1", job="j-1", hard=(C.ExclusiveHost,)),
        req("w-0b", job="j-2"),
        req("w-1b", job="j-2", cpus=6),
    ]
    placements = [placed("p-0", "a1", job="j-3")]
    result = match(requests, offers, placements, now=0)
    # j-1 shares a2 with itself; j-2's small task then finds a1, its big one no host.
    assert where(result) == {"w-0": "a2", "w-1": "a2", "w-0b": "a1"}
    assert reasons(result) == (
        ("w-1b", "no agent of 2 on offer fits: cpus on 1, another job's ExclusiveHost on 1"),
    )


def test_exclusive_placement_keeps_other_jobs_off_its_host() -> None:
    placements = [placed("p-0", "a1", job="j-3", hard=(C.ExclusiveHost,))]
    result = match([req("w-0"), req("w-1", job="j-3")], [offer("o1", "a1")], placements, now=0)
    assert where(result) == {"w-1": "a1"}
    assert reasons(result) == (
        ("w-0", "no agent of 1 on offer fits: another job's ExclusiveHost on 1"),
    )


def test_zone_balance_fills_the_least_loaded_zone_first() -> None:
    offers = [offer(f"o{i}", f"a{i}", cpus=8, zone=z) for i, z in enumerate("aabbcc")]
    placements = [placed("p-0", "a0", job="j-1", zone="a")]
    requests = [req(f"w-{i}", hard=(C.ZoneBalance,)) for i in range(1, 6)]
    result = match(requests, offers, placements, now=0)
    # Hosts are scanned by free CPUs, then agent id; each worker goes to a least-loaded zone:
    # b (a2), c (a4), then b again on a2 (now the fullest host), c on a4, a on a0.
    assert where(result) == {"w-1": "a2", "w-2": "a4", "w-3": "a2", "w-4": "a4", "w-5": "a0"}


def test_zone_balance_reopens_hosts_a_worker_before_ruled_out() -> None:
    # w-0 must go to zone a; then a and b tie, and b1, the fullest host, is first again.
    offers = [offer("o1", "b1", cpus=2, zone="b"), offer("o2", "a1", cpus=4, zone="a")]
    placements = [placed("p-0", "b1", job="j-1", zone="b")]
    for kind in ("hard", "soft"):
        constraint = {kind: (C.ZoneBalance,)}
        requests = [req(f"w-{i}", **constraint) for i in range(2)]  # type: ignore[arg-type]
        assert where(match(requests, offers, placements, now=0)) == {"w-0": "a1", "w-1": "b1"}


def test_zone_balance_waits_for_an_empty_zone_that_offers_nothing_that_fits() -> None:
    # Zone c is known (a host there is on offer) but its host is too small: hard ZoneBalance
    # may then place one worker in a and one in b, and no more.
    offers = [
        offer("o1", "a1", zone="a"),
        offer("o2", "a2", zone="b"),
        offer("o3", "a3", cpus=0.5, zone="c"),
    ]
    requests = [req(f"w-{i}", hard=(C.ZoneBalance,)) for i in range(3)]
    result = match(requests, offers, [], now=0)
    assert sorted(where(result).values()) == ["a1", "a2"]
    assert reasons(result) == (
        (
            "w-2",
            "hard constraint ZoneBalance not satisfiable on any agent with 1 CPU free (1 more lack CPUs)",
        ),
    )
    soft = match(
        [
            dataclasses.replace(r, hard_constraints=(), soft_constraints=(C.ZoneBalance,))
            for r in requests
        ],
        offers,
        [],
        now=0,
    )
    assert len(soft.assignments) == 3


def test_mantis_cluster_constraints_read_the_asg_attribute_by_prefix() -> None:
    assert resolve(C.M4Cluster, "asg") == HostAttrValue("asg", "mantisagent-main-m4", prefix=True)
    offers = [
        offer("o1", "a1", asg="mantisagent-main-m3-v007"),
        offer("o2", "a2", asg="mantisagent-main-m4-v001"),
        offer("o3", "a3"),
    ]
    result = match(
        [
            req("w-0", hard=(C.M4Cluster,)),
            req("w-1", soft=(C.M3Cluster,)),
            req("w-2", hard=(C.M5Cluster,)),
        ],
        offers,
        [],
        now=0,
    )
    assert where(result) == {"w-0": "a2", "w-1": "a1"}
    assert reasons(result) == (
        ("w-2", "hard constraint asg^=mantisagent-main-m5 not satisfiable on any agent on offer"),
    )


def test_constrained_tasks_go_first() -> None:
    # j-1's plain task would take a1 (the fullest) if placed first; j-2 needs a1's asg.
    offers = [offer("o1", "a1", cpus=1, asg="mantisagent-main-m3-v1"), offer("o2", "a2", cpus=4)]
    requests = [req("w-0", job="j-1"), req("w-1", job="j-2", hard=(C.M3Cluster,))]
    assert where(match(requests, offers, [], now=0)) == {"w-0": "a2", "w-1": "a1"}
    # ExclusiveHost first of all: it needs the empty a2, the best fit for j-1's task (hard
    # constrained too, and earlier in FIFO order).
    placements = [placed("p-0", "a1", job="j-9")]
    requests = [
        req("w-0", job="j-1", hard=(C.UniqueHost,)),
        req("w-1", job="j-2", hard=(C.ExclusiveHost,)),
    ]
    offers = [offer("o1", "a1", cpus=4), offer("o2", "a2", cpus=1)]
    assert where(match(requests, offers, placements, now=0)) == {"w-0": "a1", "w-1": "a2"}


def test_soft_constrained_tasks_go_before_plain_ones() -> None:
    offers = [offer("o1", "a1", cpus=1, asg="mantisagent-main-m3-v1"), offer("o2", "a2", cpus=4)]
    requests = [req("w-0", job="j-1"), req("w-1", job="j-2", soft=(C.M3Cluster,))]
    assert where(match(requests, offers, [], now=0)) == {"w-0": "a2", "w-1": "a1"}


def test_requests_waiting_longest_go_first() -> None:
    requests = [req("w-0", ready_at=3.0), req("w-1", ready_at=1.0)]
    result = match(requests, [offer("o1", "a1", cpus=1)], [], now=5.0)
    assert where(result) == {"w-1": "a1"}


def test_host_attr_value_equality_on_any_attribute() -> None:
    offers = [offer("o1", "a1", rack="r1"), offer("o2", "a2", rack="r2")]
    result = match([req("w-0", hard=(HostAttrValue("rack", "r2"),))], offers, [], now=0)
    assert where(result) == {"w-0": "a2"}


def test_soft_constraint_beats_fitness() -> None:
    # a1 is the better bin-packing fit, but only a2 keeps the soft UniqueHost.
    offers = [offer("o1", "a1", cpus=2), offer("o2", "a2", cpus=8)]
    result = match(
        [req("w-0", soft=(UniqueHost(),))],
        offers,
        [placed("p-0", "a1", job="j-1")],
        now=0,
        config=FULL_SEARCH_CPU,
    )
    assert where(result) == {"w-0": "a2"}


def test_other_jobs_avoid_a_soft_exclusive_host_while_they_can() -> None:
    offers = [offer("o1", "a1", cpus=2), offer("o2", "a2", cpus=8)]
    placements = [
        Placement(
            "p-0",
            "j-3",
            1,
            "a1",
            "a1.example",
            (),
            PERPETUAL,
            1,
            512,
            0,
            128,
            (),
            (C.ExclusiveHost,),
        )
    ]
    assert where(match([req("w-0")], offers, placements, now=0)) == {"w-0": "a2"}
    small = [offer("o1", "a1", cpus=2), offer("o2", "a2", cpus=0.5)]
    assert where(match([req("w-0")], small, placements, now=0)) == {"w-0": "a1"}


# ---------------------------------------------------------------------------- determinism, state


def test_permuted_inputs_give_the_same_result() -> None:
    offers = [offer(f"o{i}", f"a{i % 3}", cpus=1 + i % 2, zone="abc"[i % 3]) for i in range(6)]
    requests = [
        req(
            f"w-{i}", job=f"j-{i % 2}", hard=(C.UniqueHost,) if i % 2 else (), soft=(C.ZoneBalance,)
        )
        for i in range(5)
    ]
    placements = [placed("p-0", "a1", job="j-1"), placed("p-1", "a2", job="j-0")]
    expected = match(requests, offers, placements, now=0)
    for perm in itertools.islice(itertools.permutations(range(5)), 0, 120, 7):
        again = match([requests[i] for i in perm], list(reversed(offers)), placements[::-1], now=0)
        assert again == expected


HASH_SEED_SCRIPT = """
import random
from core.effects import LaunchRequest
from core.model import DurationType, JobConstraint as C, MachineDefinition
from core.scheduling import Offer, match
rng = random.Random(3)
names = [(), (C.UniqueHost,), (C.ZoneBalance,), (C.ExclusiveHost,), (C.M3Cluster,)]
offers = [Offer(f"o{i}", f"a{i % 40}", f"h{i % 40}", rng.choice([1.0, 2.0, 4.0]), 4096.0, 0.0,
                1000.0, ((100, 200),), (("zone", "abc"[i % 3]), ("asg", rng.choice(["m", "x"]))))
          for i in range(60)]
requests = [LaunchRequest(f"w{i}", f"j{i % 7}", 1, i, i, MachineDefinition(0.5, 256.0),
                          rng.choice(names), rng.choice(names), DurationType.Perpetual, 0.0)
            for i in range(80)]
print(repr(match(requests, offers, [], 0.0)))
"""


def test_output_does_not_depend_on_the_hash_seed() -> None:
    runs = [
        subprocess.run(
            [sys.executable, "-c", HASH_SEED_SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        ).stdout
        for seed in ("0", "4242")
    ]
    assert runs[0] == runs[1] and "Assignment(" in runs[0]


def test_matcher_consumes_used_offers_and_remembers_its_placements() -> None:
    m = Matcher(MatchConfig())
    m.add_offers([offer("o1", "a1", cpus=2), offer("o2", "a2", cpus=2)])
    first = m.match([req("w-0", hard=(C.UniqueHost,))], now=0)
    assert where(first) == {"w-0": "a1"} and first.declined == ("o2",)
    m.add_offers([offer("o3", "a1", cpus=1)])  # Mesos offers a1's remainder again
    second = m.match([req("w-1", hard=(C.UniqueHost,)), req("w-2", hard=(C.UniqueHost,))], now=0)
    assert where(second) == {"w-1": "a2"}
    assert reasons(second) == (("w-2", UNIQUE),)
    assert second.declined == ("o3",)  # a1 holds w-0: its new offer stays unused
    m.remove_placements(["w-0"])
    m.add_offers([offer("o4", "a2", cpus=1)])
    third = m.match([req("w-2", hard=(C.UniqueHost,))], now=0)
    assert where(third) == {"w-2": "a1"}
    assert third.assignments[0].offer_ids == ("o3",) and third.declined == ("o4",)


# ---------------------------------------------------------------------------- greedy limits


def test_greedy_can_miss_a_packing_that_exists() -> None:
    """Bin-packing is NP-hard: placed one at a time, 4, 4, 3, 3, 2, 2 CPUs on two hosts of 9
    leave a 2 over, though 4+3+2 twice fits."""
    offers = [offer("o1", "a1", cpus=9), offer("o2", "a2", cpus=9)]
    requests = [req(f"w-{i}", cpus=c) for i, c in enumerate([4, 4, 3, 3, 2, 2])]
    result = match(requests, offers, [], now=0)
    assert len(result.assignments) == 5
    assert reasons(result) == (("w-5", "no agent offers 2 CPUs (largest offer: 1 CPU)"),)


def test_greedy_can_miss_a_placement_of_two_unique_stages() -> None:
    """Two UniqueHost stages compete for hosts: the first takes the two small hosts (the best
    fits), so the second has one host left for two workers; a1+a3 and a2+a3 would place all."""
    offers = [offer("o1", "a1", cpus=1), offer("o2", "a2", cpus=1), offer("o3", "a3", cpus=2)]
    requests = [req(f"w-{i}", job="j-1", stage=1 + i // 2, hard=(C.UniqueHost,)) for i in range(4)]
    result = match(requests, offers, [], now=0)
    assert where(result) == {"w-0": "a1", "w-1": "a2", "w-2": "a3"}
    assert reasons(result) == (
        (
            "w-3",
            "hard constraint UniqueHost not satisfiable on any agent with 1 CPU free (2 more lack CPUs)",
        ),
    )


def test_a_resource_no_agent_has_is_named_with_the_largest_offer() -> None:
    offers = [offer("o1", "a1", cpus=8, mem=15000), offer("o2", "a2", cpus=8, mem=12000)]
    result = match([req("w-0", cpus=1, mem=28000)], offers, [], now=0)
    ((wid, failure),) = result.unplaced
    assert (failure.kind, failure.name, failure.asked, failure.largest) == (
        "resource",
        "mem",
        28000,
        15000,
    )
    assert str(failure) == "no agent offers 28000 MB memory (largest offer: 15000 MB memory)"
    # Memory that only agents short of CPUs have: the reason says which agents were compared.
    offers = [offer("o1", "a1", cpus=1, mem=30000), offer("o2", "a2", cpus=8, mem=12000)]
    ((_, failure),) = match([req("w-0", cpus=2, mem=28000)], offers, [], now=0).unplaced
    assert str(failure) == (
        "no agent with 2 CPUs free offers 28000 MB memory (largest offer: 12000 MB memory)"
    )
    assert failure.ruled_out == (("cpus", 1), ("mem", 1))

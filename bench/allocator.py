"""Times one allocation cycle of mesoslite's allocators in Mesos' DeclineOffers benchmark shape.

The shape of `HierarchicalAllocator_BENCHMARK_Test.DeclineOffers` (Mesos'
src/tests/hierarchical_allocator_tests.cpp), at the size of the published figure
DeclineOffers/21 (Mesos commit 86653356d): 1,000 frameworks in role "*", 10,000 agents of
`cpus:24;mem:4096;disk:4096;ports:[31000-32000]`, each with `cpus:16;mem:2014;disk:1024` and 16
ports in use by one framework (round robin). Every round, each framework declines everything it
was offered with `refuse_seconds = INT_MAX` (capped at 365 days), the clock advances one
allocation interval, and one `allocate()` is timed. Round 0 offers every agent; in later rounds
each agent carries one more filter, so they show what filters cost. Mesos (C++, 2018, commit
86653356d): 1.06 s per round, 3.18-3.40 s before. `drf_cycle_s` is round 0 of `HierarchicalDRF`.
A naive peer (every framework's share recomputed and the minimum searched for every agent) runs
on a slice of the agents.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mesoslite.allocator import Grant  # noqa: E402
from mesoslite.allocator.drf import HierarchicalDRF  # noqa: E402
from mesoslite.allocator.hierarchical import HierarchicalAllocator, dominant_share  # noqa: E402
from mesoslite.allocator.priority import StrictPriority  # noqa: E402
from mesoslite.resources import Resources  # noqa: E402

MESOS_CYCLE_S = 1.06  # DeclineOffers/21, after 86653356d (2018)
MESOS_BEFORE_S = (3.18, 3.40)  # the same rounds before it
MESOS_ADD_AGENTS_S = 1.61  # add 10,000 agents, after 86653356d
TARGET_CYCLE_S = 0.5
INT_MAX = 2**31 - 1
AGENT = Resources.parse("cpus:24;mem:4096;disk:4096;ports:[31000-32000]")
USED = Resources.parse("cpus:16;mem:2014;disk:1024")


def used_on(i: int) -> Resources:
    """The tasks already on agent i: 16 cpus and 16 single ports spread over the range."""
    first = 31000 + (i * 7) % 60
    return USED + Resources(ports=tuple((first + 61 * k, first + 61 * k) for k in range(16)))


def build(
    cls: type[HierarchicalAllocator], agents: int, frameworks: int
) -> tuple[HierarchicalAllocator, list[str], float, float]:
    """An allocator with the frameworks and agents added; returns it, the framework ids and timings."""
    alloc = cls()
    fids = [f"framework-{j:05d}" for j in range(frameworks)]
    t0 = time.perf_counter()
    for fid in fids:
        alloc.add_framework(fid, "*", 0.0)
    add_frameworks_s = time.perf_counter() - t0
    used = [used_on(i) for i in range(agents)]
    t0 = time.perf_counter()
    for i in range(agents):
        alloc.add_agent(f"agent-{i:06d}", AGENT, {fids[i % frameworks]: used[i]})
    add_agents_s = time.perf_counter() - t0
    return alloc, fids, add_frameworks_s, add_agents_s


def decline_rounds(
    alloc: HierarchicalAllocator, rounds: int
) -> tuple[list[float], list[int], float]:
    """Allocate `rounds` times, declining every offer with INT_MAX between rounds.

    Returns the time of each allocate(), the offers each made, and the mean time of one decline.
    """
    times, offers, decline_s, declines = [], [], 0.0, 0
    grants: list[Grant] = []
    now = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for g in grants:
            alloc.recover(g.framework_id, g.agent_id, g.resources, now, refuse_seconds=INT_MAX)
        decline_s += time.perf_counter() - t0
        declines += len(grants)
        now += alloc.allocation_interval
        gc.collect()  # start each timed cycle with the same (empty) collector backlog
        t0 = time.perf_counter()
        grants = alloc.allocate(now)
        times.append(time.perf_counter() - t0)
        offers.append(len(grants))
    return times, offers, decline_s / max(declines, 1)


def naive_round0(agents: int, frameworks: int, sample: int) -> float:
    """Seconds per agent-offer when every framework's share is recomputed for every agent."""
    total = [agents * v for v in (AGENT.cpus_m, AGENT.mem_m, AGENT.disk_m, AGENT.gpus_m)]
    alloc = {f"framework-{j:05d}": [0, 0, 0, 0] for j in range(frameworks)}
    count = dict.fromkeys(alloc, 0)
    fids = list(alloc)
    for i in range(agents):
        a = alloc[fids[i % frameworks]]
        for k, v in enumerate((USED.cpus_m, USED.mem_m, USED.disk_m, USED.gpus_m)):
            a[k] += v
        count[fids[i % frameworks]] += 1
    free = AGENT - used_on(0)
    t0 = time.perf_counter()
    for _ in range(sample):
        best = min(fids, key=lambda f: (dominant_share(alloc[f], total), count[f], f))
        for k, v in enumerate((free.cpus_m, free.mem_m, free.disk_m, free.gpus_m)):
            alloc[best][k] += v
        count[best] += 1
    return (time.perf_counter() - t0) / sample


def row(label: str, seconds: float, note: str = "") -> None:
    print(f"{label:<34} {seconds:8.3f} s   {note}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--frameworks", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3, help="allocation rounds (>= 1)")
    parser.add_argument("--quick", action="store_true", help="1,000 agents, 100 frameworks")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.frameworks = 1_000, 100
    n, f = args.agents, args.frameworks
    scale = n / 10_000  # Mesos' figures are for 10,000 agents; scaled linearly for other sizes
    mesos = MESOS_CYCLE_S * scale
    print(
        f"DeclineOffers shape: {n:,} agents of {AGENT}, {f:,} frameworks in role '*';"
        f" each agent has {USED} and 16 ports in use"
    )
    if scale != 1:
        print(f"(Mesos figures scaled by {scale:g} for {n:,} agents)")

    drf, _, add_f_s, add_a_s = build(HierarchicalDRF, n, f)
    row(f"add {f:,} frameworks", add_f_s)
    row(
        f"add {n:,} agents",
        add_a_s,
        f"Mesos {MESOS_ADD_AGENTS_S * scale:.2f} s   x{MESOS_ADD_AGENTS_S * scale / add_a_s:.2f}",
    )
    times, offers, decline_s = decline_rounds(drf, args.rounds)
    for r, (t, o) in enumerate(zip(times, offers, strict=True)):
        what = "no filters yet" if r == 0 else f"up to {r} filter{'s' * (r > 1)} per agent"
        row(
            f"drf round {r} allocate()",
            t,
            f"Mesos {mesos:.2f} s   x{mesos / t:.2f}   {o:,} offers, {what}",
        )
    print(f"{'decline (recover + filter), each':<34} {decline_s * 1e6:8.1f} us")
    lo, hi = (b * scale / times[0] for b in MESOS_BEFORE_S)
    print(
        f"Mesos before 86653356d: {MESOS_BEFORE_S[0] * scale:.2f}-{MESOS_BEFORE_S[1] * scale:.2f} s"
        f" per round: round 0 is x{lo:.1f}-{hi:.1f} faster"
    )
    target = TARGET_CYCLE_S * scale
    verdict = "met" if times[0] <= target else "MISSED"
    print(f"target round 0 <= {target:.2f} s: {verdict} (x{target / times[0]:.2f})")

    prio, _, _, _ = build(StrictPriority, n, f)
    p_times, p_offers, _ = decline_rounds(prio, 1)
    row("priority round 0 allocate()", p_times[0], f"{p_offers[0]:,} offers")
    sample = min(n, 200)
    naive = naive_round0(n, f, sample) * n
    row(
        "naive DRF round 0 (extrapolated)",
        naive,
        f"every share recomputed per agent ({sample} agents timed): x{naive / times[0]:.0f} slower",
    )
    if args.json:
        print(
            json.dumps(
                {
                    "drf_cycle_s": round(times[0], 4),
                    "drf_rounds_s": [round(t, 4) for t in times],
                    "offers": offers,
                    "drf_later_rounds_median_s": round(statistics.median(times[1:] or times), 4),
                    "add_agents_s": round(add_a_s, 4),
                    "add_frameworks_s": round(add_f_s, 4),
                    "decline_us": round(decline_s * 1e6, 2),
                    "priority_cycle_s": round(p_times[0], 4),
                    "naive_cycle_s": round(naive, 3),
                    "agents": n,
                    "frameworks": f,
                    "mesos_cycle_s": round(mesos, 4),
                    "ratio_vs_mesos": round(mesos / times[0], 2),
                    "target_cycle_s": round(target, 4),
                }
            )
        )


if __name__ == "__main__":
    main()

"""Times offer -> launch -> TASK_RUNNING for 1,000 tasks on 4 mesoslite agents through pymesos.

A mesoslite master and 4 agents run as processes on 127.0.0.1 (`mesoslite.local`), agents of
`cpus:64;mem:65536`. A pymesos `MesosSchedulerDriver` (implicit acknowledgements, as the
product's adapter runs it) subscribes; on its first offers it spreads the 1,000 tasks
(`sleep 600`, 0.05 cpu, 16 MB) evenly over them, one LAUNCH per offer. Per task, the time to
RUNNING runs from just before its launchTasks call to the TASK_RUNNING callback.
`tasks_per_s` is 1,000 / (last TASK_RUNNING - first offer received); `running_p99_ms` the 99th
percentile of the time to RUNNING.

There is no real Mesos here, so the peer, measured in the same run, is the floor: the same
1,000 commands started as bare processes with the agent's own spawn function (sandbox folder,
stdout/stderr files, own session), all requested at once, with no master, agent, HTTP or
pymesos in between. The ratios are mesoslite's overhead over doing nothing but spawning.
Everything shares this machine's CPUs (the master, 4 agents, the framework and 1,000 sleeps).
Also printed: launch -> TASK_STARTING, and the framework's rate of status updates. pymesos
handles updates one at a time on its IO thread, each followed by a synchronous ACKNOWLEDGE
round trip, and an agent's TASK_RUNNING reaches the framework only once its TASK_STARTING is
acknowledged (per-task ordering, as Mesos' status update manager does): with 2 updates per task
that rate, not the master or the agents, bounds tasks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pymesos  # noqa: E402

from mesoslite.agent import TaskProcess, spawn  # noqa: E402
from mesoslite.local import AgentSpec, LocalCluster  # noqa: E402
from mesoslite.resources import Resources  # noqa: E402

COMMAND = "sleep 600"
TASK = Resources.of(cpus=0.05, mem=16)
AGENT_RESOURCES = "cpus:64;mem:65536;disk:10000;ports:[31000-32000]"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


class LaunchAll(pymesos.Scheduler):  # type: ignore[misc]
    """A pymesos Scheduler: all tasks on the first offers, spread evenly; records the times."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pending = [f"bench-{i:05d}" for i in range(n)]
        self.launched_at: dict[str, float] = {}
        self.running_at: dict[str, float] = {}
        self.starting_at: dict[str, float] = {}
        self.first_offer: float | None = None
        self.done = threading.Event()
        self.errors: list[str] = []
        self.updates = 0

    # pymesos calls these on its IO thread
    def slaveLost(self, driver: Any, agent_id: Any) -> None:  # noqa: N802
        self.errors.append(f"agent lost: {agent_id}")

    def error(self, driver: Any, message: str) -> None:
        self.errors.append(message)

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:  # noqa: N802
        try:
            now = time.perf_counter()
            if self.first_offer is None:
                self.first_offer = now
            per_offer = math.ceil(len(self.pending) / max(1, len(offers)))
            for offer in offers:
                free = Resources.from_mesos(offer["resources"])
                tasks = []
                while self.pending and len(tasks) < per_offer and free.contains(TASK):
                    task_id = self.pending.pop()
                    free = free - TASK
                    tasks.append(
                        {
                            "name": task_id,
                            "task_id": {"value": task_id},
                            "agent_id": offer["agent_id"],
                            "resources": TASK.to_mesos(),
                            "command": {"value": COMMAND},
                        }
                    )
                if not tasks:
                    driver.declineOffer(offer["id"], {"refuse_seconds": 600})
                    continue
                launched = time.perf_counter()
                for task in tasks:
                    self.launched_at[task["task_id"]["value"]] = launched
                driver.launchTasks(offer["id"], tasks, {"refuse_seconds": 600})
        except Exception as e:  # never let pymesos' IO thread die
            self.errors.append(repr(e))
            self.done.set()

    def statusUpdate(self, driver: Any, status: dict[str, Any]) -> None:  # noqa: N802
        self.updates += 1
        state = status["state"]
        task_id = status["task_id"]["value"]
        if state == "TASK_STARTING":
            self.starting_at.setdefault(task_id, time.perf_counter())
        elif state == "TASK_RUNNING" and task_id not in self.running_at:
            self.running_at[task_id] = time.perf_counter()
            if len(self.running_at) == self.n:
                self.done.set()
        elif state not in ("TASK_STARTING", "TASK_RUNNING"):
            self.errors.append(f"{task_id}: {state} {status.get('message', '')}")
            self.done.set()


def through_mesoslite(n: int, agents: int, work_dir: Path, allocator: str) -> dict[str, float]:
    logging.getLogger("pymesos").setLevel(logging.CRITICAL)
    specs = [AgentSpec(AGENT_RESOURCES, f"name:agent-{i}") for i in range(agents)]
    master_args = ["--allocator", allocator, "--allocation-interval", "1"]
    with LocalCluster(work_dir, specs, master_args=master_args, log_level="warning") as cluster:
        scheduler = LaunchAll(n)
        driver = pymesos.MesosSchedulerDriver(
            scheduler, {"user": "bench", "name": "bench"}, cluster.address
        )
        subscribed = time.perf_counter()
        driver.start()
        try:
            if not scheduler.done.wait(timeout=300):
                raise SystemExit(f"timed out: {len(scheduler.running_at)}/{n} RUNNING")
            if scheduler.errors:
                raise SystemExit(f"errors: {scheduler.errors[:5]}")
        finally:
            driver.stop()  # TEARDOWN: the agents kill the 1,000 sleeps
            driver.join()
        assert scheduler.first_offer is not None
        latencies = [
            scheduler.running_at[t] - scheduler.launched_at[t] for t in scheduler.running_at
        ]
        to_starting = [
            scheduler.starting_at[t] - scheduler.launched_at[t] for t in scheduler.starting_at
        ]
        span = max(scheduler.running_at.values()) - scheduler.first_offer
        return {
            "tasks_per_s": n / span,
            "span_s": span,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "first_offer_ms": (scheduler.first_offer - subscribed) * 1000,
            "updates_per_s": scheduler.updates / span,
            "starting_p50_ms": statistics.median(to_starting) * 1000,
            "starting_p99_ms": percentile(to_starting, 99) * 1000,
        }


async def bare_processes(n: int, work_dir: Path) -> dict[str, float]:
    env = dict(os.environ)
    start = time.perf_counter()

    async def one(i: int) -> tuple[float, TaskProcess]:
        sandbox = work_dir / f"bare-{i:05d}"
        proc = await spawn(
            "/bin/sh",
            ["/bin/sh", "-c", COMMAND],
            sandbox,
            {**env, "MESOS_TASK_ID": f"bare-{i}", "MESOS_SANDBOX": str(sandbox)},
        )
        return time.perf_counter() - start, proc

    results = await asyncio.gather(*(one(i) for i in range(n)))
    span = max(t for t, _ in results)
    for _, proc in results:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.gather(*(proc.wait() for _, proc in results))
    latencies = [t for t, _ in results]
    return {
        "tasks_per_s": n / span,
        "span_s": span,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--allocator", default="drf")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where sandboxes go (default: a temporary folder; try /dev/shm)",
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()

    work_dir = Path(tempfile.mkdtemp(prefix="bench-mesoslite-", dir=args.work_dir))
    try:
        bare = asyncio.run(bare_processes(args.tasks, work_dir / "bare"))
        lite = through_mesoslite(args.tasks, args.agents, work_dir / "cluster", args.allocator)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    n = args.tasks
    print(f"{n:,} tasks, {args.agents} agents, {os.cpu_count()} CPUs, allocator {args.allocator}")
    print("                     mesoslite+pymesos   bare spawn (peer)   ratio")
    print(
        f"tasks/s              {lite['tasks_per_s']:>17,.0f}   {bare['tasks_per_s']:>17,.0f}"
        f"   x{lite['tasks_per_s'] / bare['tasks_per_s']:.2f}"
    )
    print(
        f"p50 to RUNNING (ms)  {lite['p50_ms']:>17,.0f}   {bare['p50_ms']:>17,.0f}"
        f"   x{lite['p50_ms'] / bare['p50_ms']:.1f}"
    )
    print(
        f"p99 to RUNNING (ms)  {lite['p99_ms']:>17,.0f}   {bare['p99_ms']:>17,.0f}"
        f"   x{lite['p99_ms'] / bare['p99_ms']:.1f}"
    )
    print(f"all RUNNING (s)      {lite['span_s']:>17.2f}   {bare['span_s']:>17.2f}")
    print(
        f"subscribe -> first offer: {lite['first_offer_ms']:.0f} ms; launch -> TASK_STARTING"
        f" (master, agent, the update back; no spawn yet): p50 {lite['starting_p50_ms']:,.0f} ms,"
        f" p99 {lite['starting_p99_ms']:,.0f} ms"
    )
    print(
        f"the framework took {lite['updates_per_s']:,.0f} status updates/s (pymesos handles them one"
        " by one on its IO thread, each with a synchronous ACKNOWLEDGE; RUNNING is sent once"
        " STARTING is acknowledged)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "tasks_per_s": round(lite["tasks_per_s"], 1),
                    "running_p99_ms": round(lite["p99_ms"], 1),
                    "running_p50_ms": round(lite["p50_ms"], 1),
                    "starting_p99_ms": round(lite["starting_p99_ms"], 1),
                    "framework_updates_per_s": round(lite["updates_per_s"], 1),
                    "bare_tasks_per_s": round(bare["tasks_per_s"], 1),
                    "bare_p99_ms": round(bare["p99_ms"], 1),
                    "tasks_per_s_vs_bare": round(lite["tasks_per_s"] / bare["tasks_per_s"], 3),
                    "p99_vs_bare": round(lite["p99_ms"] / bare["p99_ms"], 2),
                    "tasks": n,
                    "agents": args.agents,
                }
            )
        )


if __name__ == "__main__":
    main()

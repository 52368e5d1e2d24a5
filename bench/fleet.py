"""Fleet scale: what the master costs at 10,000 agents, 1,000 jobs and 100,000 workers.

- The fleet (adapters/sim/fleet.py): the real `MasterService`, core, matcher and file store
  against simulated agents on a virtual clock for `--virtual-seconds` (600): the jobs are
  submitted over the first 120 s (the ramp), then users kill, resubmit and scale, workers fail
  (0.05 per worker-hour), agents are lost and come back. `master_cpu_s_per_sim_s`: CPU time
  inside the master per simulated second, the whole run; `sched_round_p99_ms`: the CPU time of
  an offer round (match, persist, launch) after the ramp, with the ramp's rounds (100,000
  workers placed in 120 s) given apart; `peak_rss_mb`: the peak RSS of this process, which
  holds the simulated fleet too.
- Recovery: at the end the fleet's store is compacted into a snapshot; `recover_s` is a new
  master, in a fresh process as after a restart, opening it, replaying and recovering the live
  jobs and their workers, and serving its API.
- API reads, over real HTTP on 127.0.0.1, against that recovered master:
  `list_jobs_p99_ms` over job lists with Mantis' filters and a page of 20 (newest first,
  a cluster's jobs, `matching`, `labels`, worker filters), `get_job_p99_ms` for one job with
  its 100 workers (a page of 20 such jobs is 1 MB of JSON); `list_all_jobs_ms`, every active
  job with every worker (50 MB), is the size of the world, given for information. The master
  is frozen after recovery (`gc.freeze`), as `mantis master` does.
- An idle worker (`--idle-workers`, 100): `mantis up --agents 8` runs a job of that many
  workers of bench/jobs/trickle.py (one event a second); once all are Started and have
  settled, `idle_worker_rss_mb` is the median RSS of the worker processes (`idle_worker_pss_mb`
  their PSS, shared pages divided among the processes sharing them: what one more worker
  costs) and `idle_worker_cpu_pct` their median share of one core over `--idle-window`
  seconds (/proc).
- The peer: the same fleet at `--peer` size on the commit before the fleet work (a git
  worktree on PYTHONPATH, the fleet module copied in), whose control plane rebuilt the
  matcher's hosts from every offer and placement each round and looked at every worker each
  tick: `peer_master_cpu_ratio` and `peer_sched_round_p50_ratio` are old / new. Later
  commits changed the core too (scale-down drains, for one), so the two runs' events differ
  a little (`peer_events_old`, `peer_events_new`).

Targets at full size: master CPU <= 0.5 s per simulated second, round p99 <= 100 ms, peak
RSS <= 2 GB, recovery <= 10 s, list jobs p99 <= 50 ms, idle worker RSS <= 40 MB and CPU
<= 0.5 % of a core. `--json` prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from adapters.http.app import create_app, serve  # noqa: E402
from adapters.sim.fleet import Fleet, FleetConfig, IdleResourceManager  # noqa: E402
from adapters.store.log import EventLog  # noqa: E402
from common.logs import configure as configure_logging  # noqa: E402
from service.master import MasterService  # noqa: E402

FULL = "agents=10000,jobs=1000,workers=100000"
PEER = "agents=1000,jobs=100,workers=10000,clusters=20,ramp_seconds=60"
BEFORE_FLEET = "cff6d9c^"  # the commit before the kept matcher and the deadline heap
TRICKLE = ROOT / "bench" / "jobs" / "trickle.py"
TARGETS = {
    "master_cpu_s_per_sim_s": 0.5,
    "sched_round_p99_ms": 100.0,
    "peak_rss_mb": 2048.0,
    "recover_s": 10.0,
    "list_jobs_p99_ms": 50.0,
    "idle_worker_rss_mb": 40.0,
    "idle_worker_cpu_pct": 0.5,
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# ---------------------------------------------------------------------------- the fleet


def fleet(spec: str, seconds: float, folder: Path) -> dict[str, Any]:
    config = FleetConfig.parse(spec, virtual_seconds=seconds)
    summary = Fleet(config, folder).run().summary()
    return {
        "master_cpu_s_per_sim_s": summary["master_cpu_s_per_sim_s"],
        "steady_master_cpu_s_per_sim_s": summary["steady_master_cpu_s_per_sim_s"],
        "sched_round_p50_ms": summary["steady_sched_round_p50_ms"],
        "sched_round_p99_ms": summary["steady_sched_round_p99_ms"],
        "ramp_sched_round_p99_ms": summary["sched_round_p99_ms"],
        "peak_rss_mb": summary["peak_rss_mb"],
        "events_per_sim_s": summary["events_per_sim_s"],
        "heartbeats_per_sim_s": summary["heartbeats_per_sim_s"],
        "fleet_agents": summary["agents"],
        "fleet_jobs": summary["jobs"],
        "fleet_workers": summary["workers"],
        "fleet_wall_s": summary["wall_s"],
        "violations": summary["violations"],
    }


# ---------------------------------------------------------------------------- API reads


def recovered_master(folder: Path, rounds: int) -> dict[str, float]:
    """In a fresh process, as a restarted master: the recovery, then the reads."""
    configure_logging(level="critical")
    return asyncio.run(api_reads(folder, rounds))


async def api_reads(folder: Path, rounds: int) -> dict[str, float]:
    started = time.perf_counter()
    store = EventLog(folder / "store")
    master = MasterService(store, IdleResourceManager(), group_commit=False)
    master.start()
    gc.collect()
    gc.freeze()  # as `mantis master` does after recovery
    runner, port = await serve(create_app(master))
    recover_s = time.perf_counter() - started
    base = f"http://127.0.0.1:{port}/api/v1"
    jobs = master.plane.active_jobs()
    newest = jobs[-1]
    lists = [
        f"{base}/jobs?pageSize=20",
        f"{base}/jobClusters/{newest.cluster}/jobs?pageSize=20",
        f"{base}/jobs?matching=fleet1.*&pageSize=20",
        f"{base}/jobs?labels=_mantis.artifact={newest.definition.artifact_name}&pageSize=20",
        f"{base}/jobs?stageNumber=2&workerState=Active&pageSize=20",
        f"{base}/jobs?jobState=Active&limit=100&pageSize=20&offset=40",
    ]
    try:
        async with aiohttp.ClientSession() as http:

            async def timed(url: str) -> float:
                start = time.perf_counter()
                async with http.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status}")
                return (time.perf_counter() - start) * 1000

            list_ms = [await timed(url) for _ in range(rounds) for url in lists]
            get_ms = [
                await timed(f"{base}/jobs/{jobs[i * 7919 % len(jobs)].job_id}")
                for i in range(rounds * 2)
            ]
            all_ms = [await timed(f"{base}/jobs") for _ in range(3)]
    finally:
        await runner.cleanup()
        store.close()
    return {
        "recover_s": round(recover_s, 2),
        "list_jobs_p50_ms": round(percentile(list_ms, 50), 2),
        "list_jobs_p99_ms": round(percentile(list_ms, 99), 2),
        "get_job_p99_ms": round(percentile(get_ms, 99), 2),
        "list_all_jobs_ms": round(statistics.median(all_ms), 1),
    }


# ---------------------------------------------------------------------------- idle workers


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS): PSS shares each page among the processes mapping it (the interpreter and
    its libraries are mapped by every worker), so it is what one more worker adds."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


def worker_pids(data: Path) -> list[int]:
    """The `python -m runtime.worker` processes whose sandbox is under `data`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if b"runtime.worker" in cmdline and cwd.startswith(str(data)):
            found.append(int(entry))
    return found


@contextmanager
def mantis_up(data: Path, agents: int) -> Iterator[str]:
    """`mantis up --agents N` on a free port: yields the API's URL."""
    mantis = Path(sys.executable).parent / "mantis"
    proc = subprocess.Popen(
        [str(mantis), "up", "--agents", str(agents), "--port", "0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 120
        while not url and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.search(r"API\s+(http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else ""
        if not url:
            raise RuntimeError(f"mantis up did not print its API; see {data}/master.log")
        yield url
    finally:
        proc.send_signal(2)  # Ctrl-C: it stops the master, the agents and their workers
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def cli(url: str, data: Path, *args: str) -> None:
    mantis = Path(sys.executable).parent / "mantis"
    subprocess.run(
        [str(mantis), "--log-level", "error", *args, "--url", url, "--data-dir", str(data)],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def idle_workers(n: int, window: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mantis-idle-") as tmp:
        data = Path(tmp)
        with mantis_up(data, agents=8) as url:
            shape = ("--stages", f"1:{n}", "--cpus", "0.1", "--memory", "128")
            cli(url, data, "cluster", "create", "trickle", "--artifact", str(TRICKLE), *shape)
            cli(url, data, "job", "submit", "trickle", "--wait", "--timeout", "240")
            deadline = time.monotonic() + 60
            while len(pids := worker_pids(data)) < n and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(5)  # imports done, connections made: idle from here
            before = {p: proc_cpu(p) for p in pids}
            start = time.monotonic()
            time.sleep(window)
            elapsed = time.monotonic() - start
            cpu = [(proc_cpu(p) - before[p]) / elapsed * 100 for p in pids]
            rss, pss = zip(*(proc_memory_mb(p) for p in pids), strict=True)
    return {
        "idle_workers": len(pids),
        "idle_worker_rss_mb": round(statistics.median(rss), 1),
        "idle_worker_rss_max_mb": round(max(rss), 1),
        "idle_worker_pss_mb": round(statistics.median(pss), 1),
        "idle_worker_cpu_pct": round(statistics.median(cpu), 3),
        "idle_worker_cpu_max_pct": round(max(cpu), 3),
    }


# ---------------------------------------------------------------------------- the peer


def peer(spec: str, seconds: float) -> dict[str, Any]:
    """The same small fleet, here and on the commit before the fleet work."""
    script = (
        "import json, sys\n"
        "from adapters.sim.fleet import Fleet, FleetConfig\n"
        "from common.logs import configure\n"
        "configure(level='critical')\n"
        "config = FleetConfig.parse(sys.argv[1], virtual_seconds=float(sys.argv[2]))\n"
        "print(json.dumps(Fleet(config).run().summary()))\n"
    )
    with tempfile.TemporaryDirectory(prefix="mantis-peer-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), BEFORE_FLEET],
            check=True,
            capture_output=True,
        )
        try:
            shutil.copy(ROOT / "adapters" / "sim" / "fleet.py", tree / "adapters" / "sim")
            runs = {}
            for name, path in (("new", ROOT), ("old", tree)):
                out = subprocess.run(
                    [sys.executable, "-c", script, spec, str(seconds)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(path)},
                    cwd=path,
                )
                runs[name] = json.loads(out.stdout.splitlines()[-1])
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
            )
    new, old = runs["new"], runs["old"]
    return {
        "peer_size": spec,
        "peer_master_cpu_s_per_sim_s_old": old["master_cpu_s_per_sim_s"],
        "peer_master_cpu_s_per_sim_s_new": new["master_cpu_s_per_sim_s"],
        "peer_master_cpu_ratio": round(
            old["master_cpu_s_per_sim_s"] / new["master_cpu_s_per_sim_s"], 1
        ),
        "peer_sched_round_p50_ms_old": old["steady_sched_round_p50_ms"],
        "peer_sched_round_p50_ms_new": new["steady_sched_round_p50_ms"],
        "peer_sched_round_p50_ratio": round(
            old["steady_sched_round_p50_ms"] / new["steady_sched_round_p50_ms"], 1
        ),
        "peer_events_old": old["events_appended"],
        "peer_events_new": new["events_appended"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", default=FULL, help=f"the fleet's size ({FULL})")
    parser.add_argument("--virtual-seconds", type=float, default=600.0)
    parser.add_argument("--peer", default=PEER, help=f"the peer runs' size ({PEER})")
    parser.add_argument("--idle-workers", type=int, default=100)
    parser.add_argument("--idle-window", type=float, default=20.0)
    parser.add_argument("--api-rounds", type=int, default=50)
    parser.add_argument("--skip", action="append", default=[], choices=["idle", "peer"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_logging(level="critical")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mantis-fleet-", dir="/dev/shm") as tmp:
        results.update(fleet(args.fleet, args.virtual_seconds, Path(tmp)))
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as child:
            results.update(child.submit(recovered_master, Path(tmp), args.api_rounds).result())
    if "idle" not in args.skip:
        results.update(idle_workers(args.idle_workers, args.idle_window))
    if "peer" not in args.skip:
        results.update(peer(args.peer, 300.0))
    for key, target in TARGETS.items():
        if key in results:
            verdict = "ok" if results[key] <= target else "MISSED"
            print(f"{key:28} {results[key]:>10}   target <= {target:g}  {verdict}")
    for key, value in results.items():
        if key not in TARGETS:
            print(f"{key:28} {value}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()

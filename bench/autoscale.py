"""Measures autoscaling: the pure autoscaler's decisions per second under a simulated step load,
a real scale-up's reaction time, and what a worker's metrics cost its throughput.

`sim_autoscale_decisions_per_s`: one stage of 10..50 workers with Mantis' RPS and DataDrop rules
(3 of 5, cooldown 60 s) on a virtual clock; every 20 s each worker reports its share of a step
load (adapters.sim.load: the same payloads the simulation's workers send), and the autoscaler
takes a sample of its workers' reports (signals) and decides; the stage follows the decisions.
Timed: the sample and the decision (not the heartbeats' payload parsing, which is measured
apart as `payload_parses_per_s`). Mantis' job master decides once per 30 s per stage
(WorkerMetricHandler.metricsIntervalSeconds), so one core's rate is stages served.

`scale_up_reaction_s`: real worker processes on a local master (adapters.cli.local
ProcessMaster, its timers ticking every 0.2 s as `mantis up`'s do): tests/integration/jobs/
rate_file.py, whose stage 2 has an RPS policy (up by 2 above 300 events/s per worker in 2 of 3
samples, sampled every second: `mantis.job.worker.heartbeat.interval.secs` 1), runs at 20
events/s; the load steps to 750/s; timed from the step to both new workers Started, with the
autoscaler's decision on the way. Mantis' job master averages its workers' metrics every 30 s,
so the same rule reacts there in a minute or more.

`metrics_overhead_pct`: two jobs of bench/jobs/flat_out.py (one worker each, making and passing
on events as fast as it can) side by side, one worker's metrics port served and scraped every
second (`/metrics`, as a Prometheus would), the other's not served at all
(MANTIS_METRICS_PORT=-1); throughput is the RPS their heartbeats report over the same window;
the figure is 100 * (1 - on / off), the median over rounds (which starts first alternates).
Target <= 5 %. (Counting on the hot path is plain int additions and cannot be turned off.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.cli.local import ProcessMaster  # noqa: E402
from adapters.local.agent import HOST  # noqa: E402
from adapters.sim.load import Step, payloads  # noqa: E402
from common.logs import configure as configure_logging  # noqa: E402
from core.autoscaling import (  # noqa: E402
    AUTOSCALER_USER,
    INITIAL_COOLDOWN_PARAM,
    JobAutoscaleSettings,
    StageAutoscaler,
)
from core.control import HEARTBEAT_INTERVAL_PARAM, ControlPlane, Outcome  # noqa: E402
from core.model import (  # noqa: E402
    JobClusterConfig,
    JobClusterDefinition,
    MachineDefinition,
    ScalingStrategy,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
    metrics_port,
)

ROOT = Path(__file__).resolve().parent.parent
RATE_JOB = ROOT / "tests" / "integration" / "jobs" / "rate_file.py"
FLAT_OUT = ROOT / "bench" / "jobs" / "flat_out.py"

PERIOD = 20.0
WORKER_RPS = 100.0
MACHINE = MachineDefinition(1.0, 1024.0)
POLICY = StageScalingPolicy(
    1,
    10,
    50,
    2,
    1,
    60,
    (
        ScalingStrategy("RPS", WORKER_RPS * 0.3, WORKER_RPS * 0.8, 3, 5),
        ScalingStrategy("DataDrop", 1.0, 5.0, 3, 5),
    ),
)


def run(samples: int) -> tuple[int, int, float, int, float]:
    """(decisions, scalings, seconds deciding, payloads parsed, seconds parsing them)."""
    scaler = StageAutoscaler(POLICY, MACHINE, JobAutoscaleSettings(), 1)
    curve = Step(WORKER_RPS * 5, WORKER_RPS * 40, PERIOD * samples / 4)
    size, scalings, last, parses = POLICY.min, 0, None, 0
    decide_s = parse_s = 0.0
    for i in range(samples):
        now = PERIOD * i
        if i % 200 == 0:  # the load steps up, then back down, and again
            curve = Step(curve.after, curve.before, now + PERIOD * 50)
        beat = payloads(curve.rps(now), size, WORKER_RPS, MACHINE, PERIOD)
        t0 = time.perf_counter()
        for index in range(size):
            scaler.observe(index, f"w{index}", beat, now)
        parse_s += time.perf_counter() - t0
        parses += size
        live = {index: f"w{index}" for index in range(size)}
        t0 = time.perf_counter()
        decision = scaler.decide(scaler.signals(live, now, PERIOD), size, now, last)
        decide_s += time.perf_counter() - t0
        if decision is not None:
            size, last, scalings = decision.workers, now, scalings + 1
    assert scalings > 0, "the step load should have scaled the stage"
    return samples, scalings, decide_s, parses, parse_s


async def poll(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def local_master(work: Path) -> AsyncIterator[ProcessMaster]:
    """A local master with real worker processes, its timers ticking as `mantis up`'s do."""
    master = ProcessMaster(work, env={"PYTHONPATH": str(ROOT)})
    await master.start()

    async def tick() -> None:
        while True:
            master.service.tick()
            await asyncio.sleep(0.2)

    ticker = asyncio.create_task(tick())
    try:
        yield master
    finally:
        ticker.cancel()
        await master.close()


async def scale_up_reaction(work: Path) -> tuple[float, float]:
    """(seconds from the load step to the autoscaler's decision, to the new workers Started)."""
    machine = MachineDefinition(0.1, 64)
    policy = StageScalingPolicy(2, 1, 3, 2, 2, 2, (ScalingStrategy("RPS", 50.0, 300.0, 2, 3),))
    info = SchedulingInfo(
        (
            StageSchedulingInfo(1, machine),
            StageSchedulingInfo(1, machine, scalable=True, scaling_policy=policy),
        )
    )
    config = JobClusterConfig("job.py", "1", time.time(), info, job_jar_url=str(RATE_JOB))
    rate = work / "rate"
    rate.write_text("20")
    async with local_master(work) as m:
        m.service.run(lambda p, now: p.create_cluster(JobClusterDefinition("rate", (config,)), now))
        parameters = {
            "rateFile": rate,
            HEARTBEAT_INTERVAL_PARAM: 1,
            INITIAL_COOLDOWN_PARAM: "false",
        }
        jid = m.submit("rate", RATE_JOB, [1, 1], parameters)
        await poll(lambda: len(m.started(jid)) == 2, "the job Started")
        await asyncio.sleep(3.0)  # a few samples at the low load
        job = m.service.plane.job(jid)
        assert not job.scalings.get(2), "scaled before the step"
        step = time.time()
        rate.write_text("750")
        await poll(lambda: len(m.started(jid, stage=2)) == 3, "the new workers Started")
        started = time.time() - step
        decided = next(s.at for s in job.scalings[2] if s.user == AUTOSCALER_USER) - step
        return decided, started


async def start_flat_out(m: ProcessMaster, metrics: bool) -> str:
    """Submit the flat-out job, its worker's metrics port served or not; wait until Started."""
    if metrics:
        m.agent.env.pop("MANTIS_METRICS_PORT", None)
    else:  # the agent's env comes last: it overrides the port the master assigned
        m.agent.env["MANTIS_METRICS_PORT"] = "-1"
    jid = m.submit("flat-out", FLAT_OUT, [1])
    await poll(lambda: len(m.started(jid)) == 1, "the flat-out worker Started")
    return jid


def kill(jid: str, plane: ControlPlane, now: float) -> Outcome:
    return plane.kill_job(jid, "bench", "round over", now)


async def metrics_round(m: ProcessMaster, first_on: bool, secs: float) -> tuple[float, float]:
    """Both jobs side by side over the same window (the shared machine's noise hits both):
    events/s (their heartbeats' RPS, mean) with metrics served and scraped, and without."""
    jobs = {on: await start_flat_out(m, on) for on in (first_on, not first_on)}
    workers = {on: m.started(jid)[0] for on, jid in jobs.items()}
    port = metrics_port(workers[True].ports)
    assert port > 0, workers[True].ports
    rates: dict[bool, list[float]] = {True: [], False: []}
    seen = {on: w.last_heartbeat_at for on, w in workers.items()}
    async with aiohttp.ClientSession() as http:
        await asyncio.sleep(2.0)  # warm-up
        end, scraped = time.monotonic() + secs, 0.0
        while time.monotonic() < end:
            if time.monotonic() - scraped >= 1.0:
                scraped = time.monotonic()
                async with http.get(f"http://{HOST}:{port}/metrics") as resp:
                    assert resp.status == 200
                    await resp.read()
            for on, w in workers.items():
                if w.last_heartbeat_at != seen[on]:
                    seen[on] = w.last_heartbeat_at
                    rates[on].append(float(json.loads(w.payloads["WorkerMetrics"])["RPS"]))
            await asyncio.sleep(0.05)
    for jid in jobs.values():
        m.service.run(partial(kill, jid))
    tasks = [m.processes[w.worker_id] for w in workers.values()]
    await poll(lambda: all(t.popen.poll() is not None for t in tasks), "the workers exited")
    return statistics.mean(rates[True]), statistics.mean(rates[False])


async def metrics_overhead(work: Path, rounds: int, secs: float) -> tuple[list[float], list[float]]:
    """Events/s with metrics served and scraped, and without, round by round."""
    on: list[float] = []
    off: list[float] = []
    async with local_master(work) as m:
        for i in range(rounds):  # which starts first alternates
            with_metrics, without = await metrics_round(m, i % 2 == 0, secs)
            on.append(with_metrics)
            off.append(without)
    return on, off


async def real_runs(rounds: int, secs: float) -> dict[str, float]:
    configure_logging(level="warning")  # the master's request log is not the benchmark's output
    with tempfile.TemporaryDirectory(prefix="bench-autoscale-") as tmp:
        work = Path(tmp)
        (work / "reaction").mkdir()
        (work / "overhead").mkdir()
        decided, started = await scale_up_reaction(work / "reaction")
        print(
            f"scale-up reaction: load step -> decision {decided:.2f} s -> new workers Started "
            f"{started:.2f} s (sampling every 1 s, 2 of 3 samples; Mantis' job master samples "
            f"every 30 s)"
        )
        on, off = await metrics_overhead(work / "overhead", rounds, secs)
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    overhead = 100.0 * (1.0 - statistics.median(ratios))
    print(
        f"worker throughput: metrics served and scraped {statistics.median(on):,.0f} events/s, "
        f"off {statistics.median(off):,.0f} events/s (medians of {rounds} rounds); "
        f"on/off {statistics.median(ratios):.3f}: overhead {overhead:.1f} % (target <= 5 %); "
        f"rounds' on/off: {', '.join(f'{r:.3f}' for r in ratios)}"
    )
    return {
        "scale_up_reaction_s": round(started, 2),
        "scale_up_decision_s": round(decided, 2),
        "metrics_overhead_pct": round(overhead, 1),
        "worker_events_per_s_metrics_on": round(statistics.median(on)),
        "worker_events_per_s_metrics_off": round(statistics.median(off)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="samples (decisions) to time")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--rounds", type=int, default=4, help="metrics on/off rounds")
    parser.add_argument("--secs", type=float, default=4.0, help="seconds measured per round")
    parser.add_argument(
        "--sim-only", action="store_true", help="skip the runs with real worker processes"
    )
    args = parser.parse_args()
    decisions, scalings, decide_s, parses, parse_s = run(args.samples)
    per_s = decisions / decide_s
    print(
        f"autoscaler: {decisions:,} samples and decisions ({scalings:,} scalings) "
        f"in {decide_s:.2f} s: {per_s:,.0f} decisions/s"
    )
    print(f"  stages one core serves at Mantis' 30 s cadence: {per_s * 30:,.0f}")
    print(f"heartbeat payloads parsed: {parses:,} in {parse_s:.2f} s: {parses / parse_s:,.0f}/s")
    real = {} if args.sim_only else asyncio.run(real_runs(args.rounds, args.secs))
    if args.json:
        print(
            json.dumps(
                {
                    **real,
                    "sim_autoscale_decisions_per_s": round(per_s),
                    "payload_parses_per_s": round(parses / parse_s),
                }
            )
        )


if __name__ == "__main__":
    main()

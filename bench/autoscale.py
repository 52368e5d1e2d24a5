"""Measures the pure stage autoscaler: decisions per second under a simulated step load.

`sim_autoscale_decisions_per_s`: one stage of 10..50 workers with Mantis' RPS and DataDrop rules
(3 of 5, cooldown 60 s) on a virtual clock; every 20 s each worker reports its share of a step
load (adapters.sim.load: the same payloads the simulation's workers send), and the autoscaler
takes a sample of its workers' reports (signals) and decides; the stage follows the decisions.
Timed: the sample and the decision (not the heartbeats' payload parsing, which is measured
apart as `payload_parses_per_s`). Mantis' job master decides once per 30 s per stage
(WorkerMetricHandler.metricsIntervalSeconds), so one core's rate is stages served.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.sim.load import Step, payloads  # noqa: E402
from core.autoscaling import JobAutoscaleSettings, StageAutoscaler  # noqa: E402
from core.model import MachineDefinition, ScalingStrategy, StageScalingPolicy  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="samples (decisions) to time")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    decisions, scalings, decide_s, parses, parse_s = run(args.samples)
    per_s = decisions / decide_s
    print(
        f"autoscaler: {decisions:,} samples and decisions ({scalings:,} scalings) "
        f"in {decide_s:.2f} s: {per_s:,.0f} decisions/s"
    )
    print(f"  stages one core serves at Mantis' 30 s cadence: {per_s * 30:,.0f}")
    print(f"heartbeat payloads parsed: {parses:,} in {parse_s:.2f} s: {parses / parse_s:,.0f}/s")
    if args.json:
        print(
            json.dumps(
                {
                    "sim_autoscale_decisions_per_s": round(per_s),
                    "payload_parses_per_s": round(parses / parse_s),
                }
            )
        )


if __name__ == "__main__":
    main()

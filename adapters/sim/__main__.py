"""Run simulated clusters: `python -m adapters.sim --seed N` or `--seeds A..B` or `--soak SECONDS`.

A failing seed prints its trace and the command that replays it, and exits 1.
`--fleet agents=10000,jobs=1000,workers=100000 --virtual-seconds 600` runs the master against
a simulated fleet instead and reports what it costs (adapters/sim/fleet.py); it exits 1 if an
invariant broke.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator

from adapters.sim.fleet import Fleet, FleetConfig
from adapters.sim.world import RunResult, World
from common.logs import configure as configure_logging


def _seed_range(text: str) -> range:
    first, sep, last = text.partition("..")
    if not sep or not first.isdigit() or not last.isdigit() or int(last) < int(first):
        raise argparse.ArgumentTypeError(f"expected A..B with A <= B, got {text!r}")
    return range(int(first), int(last) + 1)


def _seeds(args: argparse.Namespace) -> Iterator[int]:
    if args.soak:
        deadline = time.monotonic() + args.soak
        seed = args.seed or 0
        while time.monotonic() < deadline:
            yield seed
            seed += 1
    elif args.seeds:
        yield from args.seeds
    else:
        yield args.seed or 0


def _report_failure(result: RunResult, steps: int) -> None:
    out = sys.stdout
    out.write(f"seed {result.seed} FAILED at t={result.now:.2f}s, step {result.steps}:\n")
    for v in result.violations:
        out.write(f"  {v.kind}: {v.message}\n")
    out.write("last steps:\n")
    out.writelines(f"  {line}\n" for line in result.trace)
    out.write(f"replay with: python -m adapters.sim --seed {result.seed} --steps {steps}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.sim", description=__doc__)
    parser.add_argument("--seed", type=int, help="run one world with this seed")
    parser.add_argument("--seeds", type=_seed_range, help="run every seed in A..B (inclusive)")
    parser.add_argument(
        "--steps", type=int, default=1_000_000, help="at most this many steps per world"
    )
    parser.add_argument(
        "--soak", type=float, metavar="SECONDS", help="run seeds for this wall time"
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON summary object")
    parser.add_argument(
        "--fleet",
        metavar="NAME=VALUE,...",
        help="a fleet-scale run, e.g. agents=10000,jobs=1000,workers=100000 "
        "(any field of adapters.sim.fleet.FleetConfig)",
    )
    parser.add_argument(
        "--virtual-seconds", type=float, help="simulated seconds of a --fleet run (600)"
    )
    args = parser.parse_args(argv)
    configure_logging(
        level="critical"
    )  # the master's own lines (a full disk, say) are the sim's faults
    if args.fleet is not None or args.virtual_seconds is not None:
        return _fleet(parser, args)
    started = time.perf_counter()
    runs = failures = events = 0
    digests = []
    for seed in _seeds(args):
        result = World(seed).run(args.steps)
        runs += 1
        events += result.steps
        digests.append(result.digest)
        if not result.ok:
            failures += 1
            _report_failure(result, args.steps)
        elif not (args.seeds or args.soak):
            sys.stdout.write(
                f"seed {seed}: ok, {result.steps} steps, {result.events} persisted events, "
                f"t={result.now:.0f}s, digest {result.digest}\n"
            )
    elapsed = time.perf_counter() - started
    summary = {
        "seeds": runs,
        "violations": failures,
        "events": events,
        "events_per_s": round(events / elapsed) if elapsed else 0,
    }
    sys.stdout.write(
        f"{runs} seeds, {failures} with violations, {events:,} simulated events "
        f"in {elapsed:.1f}s ({summary['events_per_s']:,}/s)\n"
    )
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    return 1 if failures else 0


def _fleet(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    extra = {} if args.virtual_seconds is None else {"virtual_seconds": args.virtual_seconds}
    if args.seed is not None:
        extra["seed"] = args.seed
    try:
        config = FleetConfig.parse(args.fleet or "", **extra)
    except (TypeError, ValueError) as e:
        parser.error(f"--fleet: {e}")
    summary = Fleet(config).run().summary()
    out = sys.stdout
    out.writelines(f"{key}: {value}\n" for key, value in summary.items() if key != "violations")
    violations = summary["violations"]
    assert isinstance(violations, list)
    out.writelines(f"violation: {v}\n" for v in violations)
    if args.json:
        out.write(json.dumps(summary) + "\n")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())

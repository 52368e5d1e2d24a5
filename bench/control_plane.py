"""Measures worker events/s through the pure ControlPlane core, and the replay time of 1M events.

`worker_events_per_s`: submit 1,000 jobs of 10 workers, then launch every worker, report
StartInitiated, heartbeat (Started), 10 rounds of heartbeats, fail 1% and launch and heartbeat the
replacements, with `tick(now)` on a virtual clock (timed, not counted). `replay_1m_events_s`:
`ControlPlane.replay` of 1,000,000 events logged by job generations (submit, start, fail, scale,
kill). Peers in the same run: Mantis' targets, and a naive dict-of-states baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core.model as m  # noqa: E402
from core.control import ControlPlane, Outcome  # noqa: E402
from core.effects import LaunchRequest  # noqa: E402
from core.worker import ALLOWED, RUNNING, WorkerState  # noqa: E402

TARGET_EVENTS_PER_S = 50_000.0
FLEET_EVENTS_PER_S = 100_000 / 20.0  # 100,000 workers, one heartbeat per 20 s
TARGET_REPLAY_S = 10.0
PORTS = (7000, 7001, 7002, 7003, 7004)
BEAT = 20.0  # virtual seconds between heartbeat rounds
S = WorkerState
STAGE = m.StageSchedulingInfo(10, m.MachineDefinition(1, 512), scalable=True)
PERPETUAL = m.DurationType.Perpetual
LAUNCH = LaunchRequest("", "", 1, 0, 0, STAGE.machine_definition, (), (), PERPETUAL, 0.0)


class NaiveBaseline:
    """Bare bookkeeping: a dict of worker states, moves validated by one set lookup."""

    def __init__(self, wids: list[str]) -> None:
        self.state = dict.fromkeys(wids, S.Accepted)
        self.seen: dict[str, float] = {}

    def _move(self, wid: str, dest: WorkerState) -> None:
        if (self.state[wid], dest) not in ALLOWED:
            raise ValueError(f"{wid}: {self.state[wid]} -> {dest}")
        self.state[wid] = dest

    def worker_launched(self, wid: str, _a: str, _h: str, _p: object, now: float) -> Outcome:
        self._move(wid, S.Launched)
        self.seen[wid] = now
        return Outcome()

    def worker_status(self, wid: str, state: WorkerState, now: float) -> Outcome:
        self._move(wid, state)
        if state is not S.Failed:
            return Outcome()
        new = wid + "+"  # a replacement id
        self.state[new] = S.Accepted
        return Outcome(effects=[replace(LAUNCH, worker_id=new, ready_at=now)])

    def heartbeat(self, wid: str, now: float) -> Outcome:
        self.seen[wid] = now
        if self.state[wid] in (S.Launched, S.StartInitiated):
            self._move(wid, S.Started)
        return Outcome()

    def tick(self, now: float) -> Outcome:
        for wid, state in self.state.items():
            if state in RUNNING and now - self.seen[wid] > 90.0:  # the core's 60 s x 1.5
                self._move(wid, S.Failed)
        return Outcome()


def launches(out: Outcome) -> list[str]:
    """The workers an outcome asks to launch (its LaunchRequest effects)."""
    return [e.worker_id for e in out.effects if isinstance(e, LaunchRequest)]


def observe(plane, wids: list[str], now: float, rounds: int, fail_every: int, log: list):
    """Feed the observation workload; returns (worker events fed, virtual clock at the end)."""
    keep = log.extend
    for wid in wids:
        keep(plane.worker_launched(wid, "agent-1", "host-1", PORTS, now).events)
    for wid in wids:
        keep(plane.worker_status(wid, S.StartInitiated, now).events)
    for wid in wids:
        keep(plane.heartbeat(wid, now).events)  # the first heartbeat: Started
    plane.tick(now)
    for r in range(rounds):
        now += BEAT
        for wid in wids:
            keep(plane.heartbeat(wid, now).events)
        if r % 5 == 4:
            plane.tick(now)
    failing, replacements = wids[::fail_every], []
    for wid in failing:
        out = plane.worker_status(wid, S.Failed, now)
        replacements += launches(out)
        keep(out.events)
    now += 1.0
    for wid in replacements:
        keep(plane.worker_launched(wid, "agent-2", "host-2", PORTS, now).events)
        keep(plane.heartbeat(wid, now).events)
    plane.tick(now)
    return (3 + rounds) * len(wids) + len(failing) + 2 * len(replacements), now


def new_plane(now: float, log: list) -> ControlPlane:
    """A plane with one cluster "bench": one scalable stage of 10 workers of 1 CPU, 512 MB."""
    config = m.JobClusterConfig("bench-artifact", "1.0", now, m.SchedulingInfo((STAGE,)))
    plane = ControlPlane()
    log.extend(plane.create_cluster(m.JobClusterDefinition("bench", (config,)), now).events)
    return plane


def submit(plane: ControlPlane, jobs: int, now: float, log: list) -> tuple[list[str], list[str]]:
    """Submit `jobs` jobs; returns their ids and the workers they ask to launch."""
    jids, wids = [], []
    for _ in range(jobs):
        out = plane.submit_job("bench", m.JobRequest(), "bench", now)
        jids.append(out.job_id)
        wids += launches(out)
        log.extend(out.events)
    return jids, wids


def generation(plane: ControlPlane, jobs: int, now: float, log: list) -> float:
    """One generation of the replay workload: submit, start, fail 10%, scale up 10%, kill all."""
    jids, wids = submit(plane, jobs, now, log)
    _, now = observe(plane, wids, now, rounds=1, fail_every=10, log=log)
    now += BEAT
    for jid in jids[::10]:
        out = plane.scale_stage(jid, 1, 15, "bench", "load", now)
        log.extend(out.events)
        for wid in launches(out):
            log.extend(plane.worker_launched(wid, "agent-3", "host-3", PORTS, now).events)
            log.extend(plane.heartbeat(wid, now).events)
    now += BEAT
    for jid in jids:
        log.extend(plane.kill_job(jid, "bench", "generation done", now).events)
    return now + BEAT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs of 10 workers per run")
    parser.add_argument("--replay-events", type=int, default=1_000_000, help="events to replay")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()

    plane = new_plane(0.0, [])
    t0 = time.perf_counter()
    _, wids = submit(plane, args.jobs, 0.0, [])
    submit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    events, _ = observe(plane, wids, 1.0, rounds=10, fail_every=100, log=[])
    core_s = time.perf_counter() - t0
    assert all(j.state.value == "Launched" for j in plane.jobs.values()), "a job is not Launched"
    baseline = NaiveBaseline(wids)
    t0 = time.perf_counter()
    assert observe(baseline, wids, 1.0, rounds=10, fail_every=100, log=[])[0] == events
    base_s = time.perf_counter() - t0

    log: list = []
    live, now = new_plane(0.0, log), 0.0
    t0 = time.perf_counter()
    while len(log) < args.replay_events:
        now = generation(live, args.jobs, now, log)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ControlPlane.replay(log[: args.replay_events])
    replay_s = time.perf_counter() - t0
    assert ControlPlane.replay(log).snapshot() == live.snapshot(), "replay diverged from live state"

    eps, base_eps = events / core_s, events / base_s
    replay_1m = replay_s * 1_000_000 / args.replay_events
    print(f"submit: {args.jobs:,} jobs, {len(wids):,} workers: {args.jobs / submit_s:,.0f} jobs/s")
    print(f"observations: {events:,} worker events in {core_s:.2f} s")
    print(f"worker events/s      {eps:>9,.0f}   target 50,000   x{eps / TARGET_EVENTS_PER_S:.2f}")
    print(
        f"  fleet need         {FLEET_EVENTS_PER_S:>9,.0f}   (100,000 workers, 1 heartbeat / 20 s)"
        f"   x{eps / FLEET_EVENTS_PER_S:.2f}"
    )
    print(f"  naive baseline     {base_eps:>9,.0f}   core costs x{base_eps / eps:.1f} over it")
    print(
        f"replay log: {len(log):,} events of {len(live.jobs):,} jobs, logged live at"
        f" {len(log) / build_s:,.0f} events/s; replayed full log == live snapshot"
    )
    print(
        f"replay 1M events (s) {replay_1m:>9.2f}   target 10 s     x{TARGET_REPLAY_S / replay_1m:.2f}"
        f"   ({args.replay_events:,} events in {replay_s:.2f} s)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "worker_events_per_s": round(eps),
                    "replay_1m_events_s": round(replay_1m, 3),
                    "submit_jobs_per_s": round(args.jobs / submit_s),
                    "baseline_events_per_s": round(base_eps),
                    "core_cost_vs_baseline": round(base_eps / eps, 2),
                    "worker_events": events,
                    "replay_events": args.replay_events,
                    "replay_log_events": len(log),
                    "live_log_events_per_s": round(len(log) / build_s),
                }
            )
        )


if __name__ == "__main__":
    main()

"""Measures the file store: appends/s with an fsync per append vs group commit, and latencies.

`fsync_appends_per_s`: one caller, `EventLog.append` of one event at a time, each fsynced
before the next. `group_commit_appends_per_s`: 100 concurrent asyncio callers, each awaiting
`EventLog.commit` of one event at a time, sharing writes and fsyncs. Latencies are per call,
from the call to its return (durable). The peer in the same run is the floor: a bare
`os.write` + `os.fdatasync` of the same record bytes per event, no encoding, no store.
`load_events_per_s`: reading and decoding the log back. The events are a real
ControlPlane run's (worker launches and state changes, job submissions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.sim.world import World  # noqa: E402
from adapters.store.codec import encode  # noqa: E402
from adapters.store.log import EventLog  # noqa: E402
from adapters.store.records import frame  # noqa: E402
from core.events import Event  # noqa: E402

CALLERS = 100


def workload(n: int) -> list[Event]:
    """The events masters persist: those of simulated clusters (adapters.sim), seed after seed."""
    events: list[Event] = []
    seed = 0
    while len(events) < n:
        world = World(seed)
        world.run()
        events += world.master.store.load()
        seed += 1
    return events[:n]


def quantile_ms(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[q - 1] * 1000


def bare_fsync(folder: Path, events: list[Event]) -> float:
    records = [frame([encode(e)]) for e in events]
    fd = os.open(folder / "bare.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t0 = time.perf_counter()
    for record in records:
        os.write(fd, record)
        os.fdatasync(fd)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    return len(records) / elapsed


def fsync_each(folder: Path, events: list[Event]) -> tuple[float, list[float]]:
    latencies = []
    with EventLog(folder, snapshot_every=None) as store:
        t0 = time.perf_counter()
        for e in events:
            start = time.perf_counter()
            store.append([e])
            latencies.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - t0
    return len(events) / elapsed, latencies


def group_commit(folder: Path, events: list[Event]) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    syncs = 0
    real = os.fdatasync

    def counted(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        real(fd)

    async def caller(mine: list[Event], store: EventLog) -> None:
        for e in mine:
            start = time.perf_counter()
            await store.commit([e])
            latencies.append(time.perf_counter() - start)

    async def main(store: EventLog) -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(events[i::CALLERS], store) for i in range(CALLERS)))
        return time.perf_counter() - t0

    with EventLog(folder, snapshot_every=None) as store:
        os.fdatasync = counted
        try:
            elapsed = asyncio.run(main(store))
        finally:
            os.fdatasync = real
    return len(events) / elapsed, latencies, syncs


def load_rate(folder: Path) -> tuple[float, int]:
    with EventLog(folder, snapshot_every=None) as store:
        t0 = time.perf_counter()
        n = len(store.load())
        return n / (time.perf_counter() - t0), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events per measurement")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings up
    events = workload(args.events)
    with tempfile.TemporaryDirectory(dir=os.environ.get("STORE_BENCH_DIR")) as tmp:
        root = Path(tmp)
        floor = bare_fsync(root, events)
        fsync_rate, fsync_lat = fsync_each(root / "fsync", events)
        group_rate, group_lat, syncs = group_commit(root / "group", events)
        loaded_rate, loaded = load_rate(root / "group")
    assert loaded == len(events)
    p50, p99 = quantile_ms(fsync_lat, 50), quantile_ms(fsync_lat, 99)
    g50, g99 = quantile_ms(group_lat, 50), quantile_ms(group_lat, 99)
    print(
        f"events: {len(events):,} from ControlPlane runs, {sum(map(len, map(encode, events))) / len(events):.0f} B each encoded"
    )
    print(
        f"fsync per append     {fsync_rate:>9,.0f} appends/s   p50 {p50:.3f} ms  p99 {p99:.3f} ms"
    )
    print(
        f"  bare write+fsync   {floor:>9,.0f} /s           store costs x{floor / fsync_rate:.2f} over it"
    )
    print(
        f"group commit ({CALLERS} callers) {group_rate:>9,.0f} appends/s   p50 {g50:.3f} ms  p99 {g99:.3f} ms"
        f"   {len(events) / syncs:.1f} events per fsync   x{group_rate / fsync_rate:.1f} over fsync per append"
    )
    print(f"load (read + decode) {loaded_rate:>9,.0f} events/s")
    if args.json:
        print(
            json.dumps(
                {
                    "fsync_appends_per_s": round(fsync_rate),
                    "group_commit_appends_per_s": round(group_rate),
                    "append_p50_ms": round(p50, 3),
                    "append_p99_ms": round(p99, 3),
                    "group_commit_p50_ms": round(g50, 3),
                    "group_commit_p99_ms": round(g99, 3),
                    "events_per_fsync": round(len(events) / syncs, 1),
                    "bare_fsync_per_s": round(floor),
                    "load_events_per_s": round(loaded_rate),
                    "events": len(events),
                }
            )
        )


if __name__ == "__main__":
    main()

"""A store writer for the crash tests: appends batches and prints `ack <n>` once each is durable.

    python -m tests.integration.store_writer FOLDER SEED MODE KIND

MODE `sync` appends one batch at a time; `group` keeps 16 `commit`s in flight on one loop.
KIND `plain`: small synthetic events, no snapshots (so load() is exactly what was appended);
`plane`: the batches of a seeded ControlPlane run, with tiny segments and a snapshot every
100 events, so kills also land in rotations and compactions. The batches are a function of
(SEED, KIND) only, so the test can recompute them.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from adapters.store.log import EventLog
from core.events import CronFired, Event

STEPS = 600


def batches(seed: int, kind: str) -> list[list[Event]]:
    if kind == "plain":
        return [
            [CronFired(f"s{seed}-b{b}-e{i}", float(b)) for i in range(1 + b % 5)]
            for b in range(5_000)
        ]
    from tests.contracts.store import control_plane_batches  # the plain writer starts faster

    return control_plane_batches(seed, STEPS)[1]


def options(kind: str) -> dict[str, Any]:
    if kind == "plain":
        return {"snapshot_every": None, "segment_bytes": 256 << 10}
    return {"snapshot_every": 100, "segment_bytes": 8 << 10}


def ack(n: int) -> None:
    sys.stdout.write(f"ack {n}\n")
    sys.stdout.flush()


async def group(store: EventLog, work: list[list[Event]]) -> None:
    slots = asyncio.Semaphore(16)

    async def one(n: int, batch: list[Event]) -> None:
        try:
            await store.commit(batch)
            ack(n)
        finally:
            slots.release()

    tasks = []
    for n, batch in enumerate(work):
        await slots.acquire()
        tasks.append(asyncio.create_task(one(n, batch)))
    await asyncio.gather(*tasks)


def main() -> None:
    folder, seed, mode, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    work = batches(seed, kind)
    store = EventLog(folder, **options(kind))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if mode == "sync":
        for n, batch in enumerate(work):
            store.append(batch)
            ack(n)
    else:
        asyncio.run(group(store, work))
    store.close()
    sys.stdout.write("done\n")


if __name__ == "__main__":
    main()

"""Loopback pieces of the job-source tests: an upstream master and its sinks, readers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.http.app import create_app, serve
from common.sse_sink import SseSink
from core.model import (
    ClusterSla,
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.worker import WorkerState
from runtime.context import Context, WorkerInfo
from runtime.job import Source
from runtime.sources import (
    Backoff,
)
from service.master import MasterService
from tests.fakes import memory_master

HOST = "127.0.0.1"
T0 = 1_800_000_000.0

FAST = Backoff(initial=0.01, maximum=0.05)


class Reader:
    """A source iterated by a task of its own, its events collected in `events`."""

    def __init__(self, source: Source, context: Context | None = None) -> None:
        self.context = context or Context()
        self.events: list[Any] = []
        self.task = asyncio.create_task(self._read(source))

    async def _read(self, source: Source) -> None:
        async for batch in source.batches(self.context):
            self.events.extend(batch)

    def metric(self, name: str) -> float:
        return self.context.metrics.snapshot().get(name, 0)

    async def stop(self) -> None:
        """Cancel the reading task: the source must close everything it opened."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def consumer(index: int = 0, job_id: str = "down-1") -> Context:
    return Context(worker=WorkerInfo("down", job_id, 1, index, index + 1, 2, 1))


async def wait_subscribers(sinks: list[SseSink], n: int) -> None:
    for sink in sinks:
        await sink.wait_for_subscribers(n, timeout=5)


@dataclass
class Upstream:
    """A real master app with cluster `up`, and a real SseSink per Started worker."""

    master: MasterService
    runner: web.AppRunner | None = None
    url: str = ""
    sinks: dict[str, SseSink] = field(default_factory=dict)

    def submit(self) -> str:
        self.master.run(lambda p, now: p.submit_job("up", JobRequest(), "alice", now))
        return self.master.last_submitted["up"]

    def workers(self, jid: str, stage: int) -> list[str]:
        job = self.master.plane.job(jid)
        return [w.worker_id for w in job.stages[stage] if not w.terminal]

    async def start(self, wid: str) -> SseSink:
        """Serve a sink for worker `wid` and make it Started with that sink port."""
        sink = SseSink()
        port = await sink.serve(HOST, 0)
        self.master.run(lambda p, now: p.worker_launched(wid, "agent-1", HOST, (port,), now))
        self.master.run(lambda p, now: p.worker_status(wid, WorkerState.Started, now))
        self.sinks[wid] = sink
        return sink

    async def start_job(self, jid: str) -> tuple[SseSink, list[SseSink]]:
        """Start every worker: (the stage-1 sink, the last stage's sinks)."""
        (first,) = [await self.start(w) for w in self.workers(jid, 1)]
        return first, [await self.start(w) for w in self.workers(jid, 2)]

    def fail(self, wid: str) -> None:
        self.master.run(lambda p, now: p.worker_status(wid, WorkerState.Failed, now))

    async def serve(self, port: int = 0) -> None:
        self.runner, bound = await serve(create_app(self.master), HOST, port)
        self.url = f"http://{HOST}:{bound}"

    def watchers(self) -> int:
        w = self.master.watchers
        return len(w._jobs) + len(w._clusters)  # noqa: SLF001  # open streams

    async def close(self) -> None:
        for sink in self.sinks.values():
            await sink.close()
        if self.runner is not None:
            await self.runner.cleanup()


def upstream_master() -> MasterService:
    master = memory_master(lambda: T0)
    stages = tuple(StageSchedulingInfo(n, MachineDefinition(1, 512)) for n in (1, 2))
    config = JobClusterConfig("up.zip", "1", T0, SchedulingInfo(stages))
    definition = JobClusterDefinition("up", (config,), sla=ClusterSla())
    master.run(lambda p, now: p.create_cluster(definition, now))
    return master


@asynccontextmanager
async def upstream(serve_now: bool = True) -> AsyncIterator[Upstream]:
    up = Upstream(upstream_master())
    if serve_now:
        await up.serve()
    try:
        yield up
    finally:
        await up.close()


def publish(sink: SseSink, tag: str, n: int) -> list[dict[str, Any]]:
    events = [{"from": tag, "i": i} for i in range(n)]
    sink.publish_many(events)
    return events

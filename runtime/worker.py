"""``python -m runtime.worker``: the process an agent starts for one worker of a job.

It learns who it is from its task environment (``TaskEnvironment``: ``MANTIS_*`` variables),
tells the master StartInitiated, fetches and loads the job artifact, starts its stage with
its output (the TCP stage output for a middle stage, the job's sink for the last), tells the
master Started, and then runs until stopped:

- input: the job's source (stage 1) or connections to the Started workers of the previous
  stage, kept in step with the job's scheduling-info stream (``StageInput.set_upstreams``),
  read only while the stage has demand (lazy sinks, as in Mantis): a downstream worker
  connected (the first time, the whole next stage), a client of its SSE sink, or a sink that
  is always on; without demand the input is paused, which pauses its upstream in turn;
- keyed output: hashed over the next stage's slots from the scheduling info
  (``downstream_indices``), so a key never goes to another worker while its own is missing;
- time: the stage's windows are ticked at their deadlines;
- heartbeats every ``MANTIS_HEARTBEAT_SECS`` with payloads: ``SubscriptionState`` (sink
  workers), and ``IncomingDataDrop``, ``ResourceUsage`` and ``WorkerMetrics`` since the
  previous heartbeat (runtime.metrics);
- metrics: Prometheus text and Mantis' metrics stream on ``MANTIS_METRICS_PORT``
  (runtime.metrics); the hot path only adds batch sizes to plain ints (``StageCounts``).

A sink worker of a transient job (``MANTIS_SUBSCRIPTION_TIMEOUT_SECS`` > 0) kills its job
through the master once its sink has had no subscriber for that long and the job has run for
``MANTIS_MIN_RUNTIME_SECS`` (as Mantis' SubscriptionStateHandler does).

Ending: the job calling ``context.complete_and_exit()`` closes the stage (open windows are
emitted), flushes the output, reports Completed and exits 0: only the job's code can say the
job is done. SIGTERM or SIGINT (the agent stops the task: the master killed it, or the agent
or the whole cluster is shutting down) closes and flushes the same way and exits 0 without
reporting anything: a stop is not a completion, and the master learns of it from Mesos
(TASK_KILLED, then it replaces the worker if it still wants it). A bad artifact, bad parameters
or an error in the job's code is reported as Failed with a message saying what is wrong, and
the exit status is 1; so is a refusal by an upstream worker (this worker was replaced: see
runtime.transport, Admission). A finite source that ends completes the stage the same way
(Rx's onCompleted, as a Mantis source Observable that completes): open windows are emitted,
the output flushed, an END frame tells every downstream worker that nothing more will come
(``StageOutputServer.finish``), and the worker reports Completed. A downstream worker whose
upstream workers have all ended completes in turn, so a finite job ends Completed.

Scale-down: a worker whose index the scheduling info no longer declares (``numWorkers`` <= its
index: a scale-down removed it) takes input for ``SCALE_DOWN_SETTLE_SECS`` more (what its
upstream workers sent before they, seeing the same scheduling info, moved its keys to the
remaining workers), then ends as a finite source does (windows emitted, output flushed, END
downstream) and reports Completed. The master keeps it listed meanwhile so that its downstream
and sink clients read what it flushes, and kills its task if it is still running after the
grace period (core.control, ControlConfig.scale_down_grace_secs).

Containment: on Linux the worker asks for SIGTERM when its parent dies (PR_SET_PDEATHSIG),
and stops as above. Its parent is the agent or the agent's `/bin/sh -c`, whose own
parent-death signal does not pass to its children, and a worker that outlived its agent would
go on as a second consumer of a slot that has been given to a newer worker. SIGTERM, not
SIGKILL: a shell between dies at once of the SIGTERM its agent sends the task's group, and the
worker must still close cleanly then. (A worker too busy to stop is refused by its upstream
once replaced, and killed by the next agent on its work dir.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import inspect
import os
import signal
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import structlog
from reactivex.scheduler.eventloop import AsyncIOScheduler

from common import logs
from common.sse_sink import SseSink
from common.task_environment import TaskEnvironment, TaskEnvironmentError
from runtime.artifact import fetch_artifact
from runtime.context import (
    Context,
    Metrics,
    WorkerHost,
    WorkerInfo,
    slot_name,
    worker_map_from_scheduling_info,
)
from runtime.engines import RunningStage, StageError
from runtime.job import (
    ArtifactError,
    FunctionSink,
    Job,
    ManySink,
    ServerSentEventsSink,
    StdoutSink,
    load_job,
)
from runtime.master_client import MasterClient
from runtime.metrics import IoReading, StageCounts, WorkerMetrics
from runtime.parameters import ParameterError, stage_concurrency
from runtime.stage_input import StageInput
from runtime.stage_output import StageOutputServer
from runtime.transport import Backpressure, Routing, WorkerId
from runtime.tuning import tune_gc

log = structlog.get_logger()


def _mql_filter(
    query: Mapping[str, str],
) -> tuple[str, Callable[[Sequence[Any]], list[Any]]] | None:
    """common.mql's sink_filter, imported by the first connection to the sink: lark and RE2
    would cost every idle worker ~6 MB of memory."""
    from common.mql import sink_filter

    return sink_filter(query)


SCALE_DOWN_SETTLE_SECS = 1.0
"""How long a worker removed by a scale-down still takes input: its upstream workers move its
keys once they see the scheduling info that removed it, and what they sent before must count."""

DOWNSTREAM_GRACE_SECS = 10.0
"""How long a worker with a next stage waits, once one downstream worker connected, for the
others before its first output (a worker that cannot be placed must not stall the job)."""


class Instances:
    """A stage's running instances: ``StageConfig.concurrency`` of them (Mantis'
    ``concurrentInput(n)``), each with its own state. Scalar input goes to them batch by batch
    in turn; keyed input by key, so that one key's windows stay in one instance."""

    def __init__(self, instances: list[RunningStage], keyed: bool) -> None:
        self.instances = instances
        self.keyed = keyed and len(instances) > 1
        self._turn = 0

    def on_batch(self, batch: list[Any], now: float) -> None:
        instances = self.instances
        if len(instances) == 1:
            instances[0].on_batch(batch, now)
        elif not self.keyed:
            self._turn = (self._turn + 1) % len(instances)
            instances[self._turn].on_batch(batch, now)
        else:
            shares: list[list[Any]] = [[] for _ in instances]
            for pair in batch:
                shares[zlib.crc32(orjson.dumps(pair[0])) % len(shares)].append(pair)
            for instance, share in zip(instances, shares, strict=True):
                if share:
                    instance.on_batch(share, now)

    def on_tick(self, now: float) -> None:
        for instance in self.instances:
            instance.on_tick(now)

    @property
    def next_deadline(self) -> float | None:
        deadlines = [d for i in self.instances if (d := i.next_deadline) is not None]
        return min(deadlines) if deadlines else None

    @property
    def error(self) -> BaseException | None:
        return next((i.error for i in self.instances if i.error is not None), None)

    def close(self) -> None:
        for instance in self.instances:
            instance.close()


class WorkerFailed(Exception):
    """The worker cannot go on; the message goes to the job's status."""


Send = Callable[[list[Any]], Awaitable[None]]


class WorkerProcess:
    """One running worker: its stage, input, output and conversation with the master."""

    def __init__(self, env: TaskEnvironment, session: aiohttp.ClientSession) -> None:
        self.env = env
        self.master = MasterClient(
            session,
            env.master_url,
            env.job_id,
            env.stage,
            env.index,
            env.number,
            env.hostname or None,
            env.api_token or None,
            zk=env.zk,
            zk_root=env.zk_root,
        )
        self.session = session
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.completed = False
        self.scaled_down = False
        self.failure: str | None = None
        self.context: Context | None = None
        self.job: Job | None = None
        self.running: Instances | None = None
        self.output: StageOutputServer | None = None
        self.sink: SseSink | None = None
        self.input: StageInput | None = None
        self._send: Send | None = None
        self._pending: list[Any] = []
        self._blocking = False
        self._always_on = False
        self._concurrency = 1
        self._slot_indices: set[int] | None = None
        self._demand_known = False
        self._active = asyncio.Event()
        self.counts = StageCounts()
        self.worker_metrics = WorkerMetrics(
            self.counts,
            self._io,
            self.metrics,
            {
                "mantisJobName": env.job_name,
                "mantisJobId": env.job_id,
                "mantisStageNum": str(env.stage),
                "mantisWorkerIndex": str(env.index),
                "mantisWorkerNumber": str(env.number),
            },
            env.cpu_cores,
            env.memory_mb,
        )

    @property
    def identity(self) -> WorkerId:
        """This worker as the stage-to-stage handshake names it."""
        env = self.env
        return WorkerId(env.job_id, env.stage, env.index, env.number)

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until stopped, report how it ended; returns the exit status."""
        env = self.env
        log.info(
            "worker_starting",
            job_id=env.job_id,
            stage=env.stage,
            index=env.index,
            number=env.number,
            artifact=env.artifact,
        )
        try:
            started = await self._unless_stopped(self._start_up())
        except WorkerFailed as e:
            return await self._failed(str(e))
        if not started:  # stopped while starting: its agent or the cluster is shutting down
            return await self._finish()
        tasks = [
            asyncio.create_task(self._pump(), name="pump"),
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._follow_scheduling_info(), name="discovery"),
        ]
        if self.sink is not None and env.subscription_timeout_secs > 0:
            tasks.append(asyncio.create_task(self._subscription_timeout(), name="subscriptions"))
        tasks.append(asyncio.create_task(self._wait_stop(), name="stop"))
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                self._fail_from(t.exception())
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return await self._finish()

    async def _start_up(self) -> None:
        await self.master.post_status("StartInitiated", "INFO", "worker process started")
        job = await self._load()
        await self._start(job)
        tune_gc()  # after loading: the job's code is frozen out of later collections
        await self.master.post_status("Started", "INFO", f"stage {self.env.stage} running")

    async def _unless_stopped(self, work: Awaitable[None]) -> bool:
        """Run `work` unless a stop comes first (then it is cancelled); True if it ran.

        Starting can take long (a master that does not answer is retried), and a worker told
        to stop meanwhile must not hold up its agent's shutdown until it has started."""
        running = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if running.done():
            running.result()
            return True
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, WorkerFailed):
            await running
        return False

    async def _wait_stop(self) -> None:
        await self.stopping.wait()

    def stop(self) -> None:
        """End cleanly without completing the job (SIGTERM, SIGINT: the task is stopped)."""
        self.stopping.set()

    def complete(self) -> None:
        """End cleanly and report Completed: the job's code says the job is done."""
        self.completed = True
        self.stopping.set()

    async def _load(self) -> Job:
        env = self.env
        try:
            fetched = await fetch_artifact(env.artifact, env.artifact_cache, self.session)
            job = load_job(fetched.spec)
        except ArtifactError as e:
            raise WorkerFailed(str(e)) from e
        # The job's scheduling info (its first discovery frame) says how many stages it was
        # submitted with; code with another number would wire its stages wrongly.
        with contextlib.suppress(TimeoutError):
            info = await asyncio.wait_for(anext(self.master.scheduling_changes()), 10.0)
            submitted = len(info.get("workerAssignments") or ())
            if submitted and submitted != job.stage_count:
                raise WorkerFailed(
                    f"the job defines {job.stage_count} stages but was submitted with {submitted}"
                )
        if not 1 <= env.stage <= job.stage_count:
            raise WorkerFailed(
                f"MANTIS_STAGE is {env.stage} but the job {job.name or env.artifact!r} has "
                f"stages 1..{job.stage_count}"
            )
        try:
            parameters = job.resolve_parameters(env.parameters)
            self._concurrency = stage_concurrency(
                parameters, job.stage(env.stage).config.concurrency
            )
        except ParameterError as e:
            raise WorkerFailed(f"bad job parameters: {e}") from e
        self.context = Context(
            parameters=parameters,
            worker=WorkerInfo(
                env.job_name,
                env.job_id,
                env.stage,
                env.index,
                env.number,
                env.stage_workers,
                job.stage_count,
            ),
            metrics=self.metrics,
            on_complete=self.complete,
        )
        log.info(
            "artifact_loaded",
            artifact=env.artifact,
            source=fetched.source,
            job=job.name,
            stages=job.stage_count,
            concurrency=self._concurrency,
        )
        return job

    async def _start(self, job: Job) -> None:
        """Start the stage and its output (the data port listens before we say Started)."""
        env, context = self.env, self.context
        assert context is not None
        stage = job.stage(env.stage)
        port = env.ports[0] if env.ports else 0
        self.job = job
        try:
            if env.stage < job.stage_count:
                self.output = StageOutputServer(
                    env.host,
                    port,
                    routing=Routing.KEYED if stage.output_keyed else Routing.ROUND_ROBIN,
                    backpressure=stage.config.backpressure,
                    codec=stage.config.codec,
                    worker=self.identity,
                )
                await self.output.start()
                out = self.output
                self._send = out.send_keyed_many if stage.output_keyed else out.send_many
            else:
                self._send = await self._start_sinks(job, context, port)
        except OSError as e:
            raise WorkerFailed(f"cannot listen on {env.host}:{port}: {e.strerror or e}") from e
        try:
            scheduler = AsyncIOScheduler(asyncio.get_running_loop())
            self.running = Instances(
                [
                    stage.start(context, self._pending.extend, scheduler)
                    for _ in range(self._concurrency)
                ],
                keyed=stage.input_keyed,
            )
        except Exception as e:
            raise WorkerFailed(f"stage {env.stage} failed to start: {_describe(e)}") from e
        if env.stage > 1:
            self.input = StageInput(context.worker.slot, worker=self.identity)
            self.input.set_paused(True)  # until the stage has demand (see _await_demand)
        if self.output is not None:
            self.output.on_connections_change(self._demand_changed)
        if self.sink is not None:
            self.sink.on_subscription_change(self._demand_changed)
        if env.metrics_port > 0:  # metrics are not worth failing the job for
            try:
                await self.worker_metrics.serve(env.host, env.metrics_port)
            except OSError as e:
                log.warning("metrics_port_unavailable", port=env.metrics_port, error=str(e))

    async def _start_sinks(self, job: Job, context: Context, port: int) -> Send:
        """The last stage's sinks (several with ``to_many``); the one send that feeds them."""
        sinks = job.sink.sinks if isinstance(job.sink, ManySink) else (job.sink,)
        sends: list[Send] = []
        for sink in sinks:
            if isinstance(sink, ServerSentEventsSink):
                self.sink = SseSink(
                    backpressure=sink.backpressure,
                    buffer_events=sink.buffer_events,
                    connection_filter=_mql_filter,  # the `mql` parameter
                )
                await self.sink.serve(self.env.host, port)
                self._blocking = sink.backpressure is Backpressure.BLOCKING
                self._always_on = self._always_on or sink.eager
                sends.append(self.sink.send_many)
            elif isinstance(sink, StdoutSink):
                self._always_on = True
                sends.append(self._stdout_sink(sink))
            else:
                self._always_on = True
                sends.append(self._function_sink(sink, context))
        if len(sends) == 1:
            return sends[0]

        async def send_all(batch: list[Any]) -> None:
            for send in sends:
                await send(batch)

        return send_all

    @staticmethod
    def _function_sink(sink: FunctionSink, context: Context) -> Send:
        async def send(batch: list[Any]) -> None:
            result = sink.fn(context, batch)
            if inspect.isawaitable(result):
                await result

        return send

    @staticmethod
    def _stdout_sink(sink: StdoutSink) -> Send:
        async def send(batch: list[Any]) -> None:
            sink.write(batch)

        return send

    # -- demand (lazy sinks) ----------------------------------------------------------------------

    def _has_demand(self) -> bool:
        """Whether anyone takes this stage's output: a downstream worker connected, a client
        of its sink, or a sink that is always on (eager SSE, function, stdout)."""
        if self.output is not None:
            return self.output.connection_count > 0
        if self.sink is not None and not self._always_on:
            return self.sink.has_subscribers
        return True

    def _demand_changed(self, *_: object) -> None:
        """Resume or pause the stage's input as its demand comes and goes: a paused input
        drops its upstream connections, so the pause travels up to the source."""
        if not self._demand_known:
            return
        active = self._has_demand()
        if active == self._active.is_set():
            return
        if active:
            self._active.set()
        else:
            self._active.clear()
        env = self.env
        log.info("stage_resumed" if active else "stage_paused", job_id=env.job_id, stage=env.stage)
        if self.input is not None:
            self.input.set_paused(not active)

    async def _await_demand(self) -> None:
        """Until the stage has demand; the first time, a worker with a next stage waits for
        its whole downstream (see _whole_downstream)."""
        if not self._demand_known:
            await self._whole_downstream()
            self._demand_known = True
            self._demand_changed()
        await self._active.wait()

    # -- the work -------------------------------------------------------------------------------

    def _batches(self) -> AsyncIterator[list[Any]]:
        if self.input is not None:
            return self.input.batches()
        assert self.context is not None and self.job is not None
        return self.job.source.batches(self.context)

    async def _pump(self) -> None:
        """Feed input batches to the stage and its output onwards, until input ends."""
        running = self.running
        assert running is not None
        await self._await_demand()
        counts = self.counts
        async for batch in self._batches():
            if not self._active.is_set():  # lazy: nobody takes the output now; the batch the
                await self._await_demand()  # source was reading meanwhile waits for someone
            counts.events_in += len(batch)
            counts.batches_in += 1
            running.on_batch(batch, time.time())
            await self._flush()
            await asyncio.sleep(0)  # a backlog must not hold up the windows' ticks
        log.info("input_completed", job_id=self.env.job_id, stage=self.env.stage)
        self.complete()

    async def _ticker(self) -> None:
        """Tick the stage's windows at their deadlines (wall-clock seconds)."""
        running = self.running
        assert running is not None
        while True:
            deadline = running.next_deadline
            now = time.time()
            if deadline is not None and deadline <= now:
                running.on_tick(now)
                await self._flush()
                continue
            delay = 0.05 if deadline is None else min(deadline - now, 0.05)
            await asyncio.sleep(delay)

    async def _flush(self) -> None:
        running = self.running
        assert running is not None and self._send is not None
        if running.error is not None:
            raise running.error
        if self._pending:
            if self._blocking:
                await self._wait_for_downstream()
            batch, self._pending[:] = list(self._pending), []
            self.counts.events_out += len(batch)
            await self._send(batch)

    async def _whole_downstream(self) -> None:
        """Before its first input, a worker with a next stage waits for its whole downstream:
        a worker of every slot the scheduling info declares connected (their keys would be
        dropped, or held, until then), or DOWNSTREAM_GRACE_SECS after the first one."""
        output = self.output
        if output is None:
            return
        await output.wait_for_connections(1)
        try:
            await output.wait_for_declared_slots(DOWNSTREAM_GRACE_SECS)
        except TimeoutError:
            log.warning(
                "downstream_incomplete",
                job_id=self.env.job_id,
                stage=self.env.stage,
                connections=output.connection_count,
            )

    async def _wait_for_downstream(self) -> None:
        """Blocking mode loses nothing, so before its first output a sink worker waits for a
        client of its sink."""
        if self.sink is not None:
            await self.sink.wait_for_subscribers(1)
        self._blocking = False  # once: later, output goes to whoever is connected

    def _check_not_replaced(self, hosts: Iterable[WorkerHost]) -> None:
        """A newer worker Started in this slot: this one was written off and must go (a paused
        worker has no upstream connection that would refuse it, see runtime.transport)."""
        env = self.env
        newer = [h.worker_number for h in hosts if h.worker_index == env.index]
        if newer and max(newer) > env.number:
            raise WorkerFailed(
                f"worker {env.number} of stage {env.stage} index {env.index} was replaced "
                f"by worker {max(newer)}"
            )

    def _check_scaled_down(self, mine: object) -> None:
        """A scale-down removed this worker's slot: end gracefully after a settling time."""
        count = mine.get("numWorkers") if isinstance(mine, dict) else None
        if self.scaled_down or not isinstance(count, int) or not 0 < count <= self.env.index:
            return
        self.scaled_down = True
        env = self.env
        log.info(
            "worker_scaled_down", job_id=env.job_id, stage=env.stage, index=env.index, workers=count
        )
        asyncio.get_running_loop().call_later(SCALE_DOWN_SETTLE_SECS, self.stopping.set)

    async def _follow_scheduling_info(self) -> None:
        """Keep the worker map (and, past stage 1, the upstream connections) current."""
        context = self.context
        assert context is not None
        stage = self.env.stage
        async for info in self.master.scheduling_changes():
            try:
                worker_map = worker_map_from_scheduling_info(info)
            except ValueError as e:
                log.warning("bad_scheduling_info", error=str(e))
                continue
            context.update_worker_map(worker_map)
            self._check_not_replaced(worker_map.get(stage, ()))
            self._check_scaled_down(info.get("workerAssignments", {}).get(str(stage)))
            downstream = info.get("workerAssignments", {}).get(str(stage + 1))
            if self.output is not None:  # replaced downstream workers are refused
                self.output.set_downstream_workers(
                    (h.worker_index, h.worker_number) for h in worker_map.get(stage + 1, ())
                )
                count = downstream.get("numWorkers") if isinstance(downstream, dict) else None
                if isinstance(count, int) and count > 0:  # keys hash over these slots
                    started = {h.worker_index for h in worker_map.get(stage + 1, ())}
                    self._slot_indices = downstream_indices(self._slot_indices, started, count)
                    self.output.set_downstream_slots(
                        slot_name(stage + 1, i) for i in sorted(self._slot_indices)
                    )
            if self.input is not None:
                upstream = [(h.host, h.port) for h in worker_map.get(stage - 1, ())]
                self.input.set_upstreams(upstream)

    async def _heartbeats(self) -> None:
        while True:
            await self.master.post_status(
                None, "HEARTBEAT", "heartbeat", payloads=self.payloads(), attempts=1
            )
            await asyncio.sleep(self.env.heartbeat_secs)

    async def _subscription_timeout(self) -> None:
        """Kill the (transient) job once its sink went unsubscribed for the timeout."""
        sink, env = self.sink, self.env
        assert sink is not None
        started = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            idle = sink.idle_since
            now = time.monotonic()
            if (
                idle is not None
                and now - idle >= env.subscription_timeout_secs
                and now - started >= env.min_runtime_secs
            ):
                reason = f"no subscriber for {env.subscription_timeout_secs:g}s"
                log.info("subscription_timeout", job_id=env.job_id, reason=reason)
                if await self.master.kill_job(reason):
                    return

    def payloads(self) -> dict[str, str]:
        """Heartbeat payloads: subscription state (sink), then what runtime.metrics measured
        since the previous heartbeat."""
        out: dict[str, str] = {}
        if self.sink is not None:
            out["SubscriptionState"] = "true" if self.sink.has_subscribers else "false"
        out.update(self.worker_metrics.payloads())
        return out

    def _io(self) -> IoReading:
        """The input's and output's counters, for runtime.metrics. The drops are the output's
        (the next stage's connections, or the sink's subscribers, did not keep up)."""
        inp, out, sink = self.input, self.output, self.sink
        received = inp.received_bytes if inp is not None else 0
        queued = inp.queued_batches if inp is not None else 0
        upstream = inp.connected_count if inp is not None else 0
        if out is not None:
            return IoReading(
                out.on_next_count,
                out.dropped_count,
                out.sent_count,
                received + out.sent_bytes,
                queued,
                out.pending_events,
                upstream,
                out.connection_count,
            )
        if sink is not None:
            return IoReading(
                sink.on_next_count,
                sink.dropped_count,
                sink.sent_count,
                received + sink.sent_bytes,
                queued,
                sink.pending_events,
                upstream,
                sink.subscriber_count,
            )
        return IoReading(net_bytes=received, input_queue=queued, upstream=upstream)

    # -- ending -----------------------------------------------------------------------------------

    def _fail_from(self, error: BaseException | None) -> None:
        if self.failure is None and error is not None:
            self.failure = _describe(error)
            log.error("worker_error", error=self.failure)

    async def _finish(self) -> int:
        running = self.running
        if running is not None and self.failure is None:
            try:
                running.close()
                await asyncio.wait_for(self._flush(), 5.0)
                if (self.completed or self.scaled_down) and self.output is not None:
                    await self.output.finish(5.0)
            except Exception as e:  # an error while closing is still an error of the job
                self._fail_from(e)
        for closing in (self.input, self.output, self.sink, self.worker_metrics):
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing.close()
        if self.failure is not None:
            return await self._failed(self.failure)
        env = self.env
        if self.completed or self.scaled_down:
            message = "scaled down: drained" if self.scaled_down else "the job completed"
            await self.master.post_status("Completed", "INFO", message, reason="Normal")
            log.info("worker_completed", job_id=env.job_id, stage=env.stage, index=env.index)
        else:  # stopped: the master hears it from Mesos, and decides whether to replace us
            log.info(
                "worker_stopped",
                job_id=env.job_id,
                stage=env.stage,
                index=env.index,
                number=env.number,
            )
        return 0

    async def _failed(self, message: str) -> int:
        log.error("worker_failed", job_id=self.env.job_id, message=message)
        await self.master.post_status("Failed", "ERROR", message, reason="Error")
        return 1


def downstream_indices(known: set[int] | None, started: set[int], count: int) -> set[int]:
    """The next stage's worker indices its keys are hashed over (runtime.transport).

    At first all `count` of them, Started or not (so that no key goes to another worker while
    its own starts). Then an index stays while the stage has it, even while its worker is
    replaced; a new index (the stage scaled up) joins once its worker has Started, so that
    the keys it takes over stay with their old owner until then; an index the stage no longer
    has (scaled down) leaves at once."""
    if known is None:
        return set(range(count))
    return {i for i in known | started if i < count}


def _describe(e: BaseException) -> str:
    if isinstance(e, StageError):
        return str(e)
    return f"{type(e).__name__}: {e}"


PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Linux: ask for SIGTERM when the parent process dies; False if it is already gone.

    "Gone" is seen as having been adopted by init while not being the session leader (a task
    the agent runs leads its own session, and `/bin/sh -c` between them leads it instead).
    """
    if not sys.platform.startswith("linux"):
        return True
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return True
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return not (os.getppid() == 1 and os.getsid(0) != os.getpid())


async def run_worker(env: TaskEnvironment) -> int:
    """Run a worker until it ends; SIGTERM and SIGINT stop it cleanly (without completing)."""
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        worker = WorkerProcess(env, session)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        async with worker.master:  # follows the leader, with MANTIS_ZK
            return await worker.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.worker",
        description="One worker of a job, set by MANTIS_* variables.",
    )
    logs.add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_json, args.log_level)
    if not die_with_parent():
        log.error(
            "worker_orphaned", reason="its parent (the agent or its shell) died before it started"
        )
        return 1
    try:
        env = TaskEnvironment.from_environ()
    except TaskEnvironmentError as e:
        log.error("bad_task_environment", error=str(e))
        return 2
    return asyncio.run(run_worker(env))


if __name__ == "__main__":
    sys.exit(main())

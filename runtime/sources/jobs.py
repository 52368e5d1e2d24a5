"""Job-to-job chaining: a source reading the sinks of another job, found by cluster name.

Mantis' ``JobSource`` (mantis-connector-job-source, with the ``target`` parameter of
io.mantisrx.runtime.parameter.SourceJobParameters), over the master's v1 streams:

1. ``GET /api/v1/lastSubmittedJobIdStream/{cluster}?sendHB=true`` names the cluster's newest
   job; when another job is submitted the source switches to it (closing the old job's
   connections).
2. ``GET /api/v1/jobDiscoveryStream/{jobId}?sendHB=true`` lists the job's Started workers;
   the source keeps one SSE connection to the sink port of each worker of the job's last
   stage, diffing the set on every change (new workers connected, removed ones closed).
3. Every connection asks the sink for ``clientId`` (default: this job's id; with
   ``broadcast``, ``<clientId>_<workerIndex>``), ``sample``/``sampleMSec``,
   ``enableMetaMessages``, ``mql`` (an MQL ``criterion``) and any extra parameters; the sinks then broadcast across client
   ids and load-balance within one (common.sse_sink). Events from all connections are merged
   into one stream of batches.

``criterion`` is an MQL query (common.mql), as in Mantis, checked when the source is defined
and applied upstream by every sink (its ``mql`` parameter), so that only what it selects
crosses the wire; a Python predicate is applied here instead, after the events arrived.
An unknown cluster (404 from the master) raises
UnknownClusterError after ``not_found_retries`` further attempts with back-off (a master that
is still recovering may not know the cluster yet); an unreachable master is retried for ever
with back-off, counted in ``master_reconnects``. After the job ends its discovery stream is
re-read with back-off (capped) until the cluster names a new job. With several masters
(``MANTIS_ZK`` set and no ``master_url`` given) both streams follow the elected leader
(runtime.master_location): they reconnect to the new one as soon as ZooKeeper names it.

Metrics: ``events_emitted``, ``job_source_workers`` (gauge: sink connections held),
``job_source_switches``, ``master_reconnects``, ``reconnects`` (sink connections),
``decode_errors``.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from common.backoff import Backoff
from common.master_leader import DEFAULT_ZK_ROOT
from common.master_location import MasterLocation
from common.sse import HB_JOB_ID
from common.sse_client import RETRYABLE, HttpStatusError, describe, sse_payloads
from runtime.context import (
    Context,
    Metrics,
    WorkerHost,
    WorkerInfo,
    worker_map_from_scheduling_info,
)
from runtime.master_location import followed
from runtime.sources.merge import MergedSource, Merger, cancel, closing
from runtime.sources.sse import EventDecoder, SourceError, reconnecting_batches

log = structlog.get_logger()

MASTER_URL_ENV = "MANTIS_MASTER_URL"
ZK_ENV, ZK_ROOT_ENV = "MANTIS_ZK", "MANTIS_ZK_ROOT"
MASTER_READ_TIMEOUT = 90.0
"""The master heartbeats its streams every 29 s (sendHB=true): three missed is a dead link."""


class UnknownClusterError(SourceError):
    """The master does not know the source job's cluster."""

    def __init__(self, cluster: str, master_url: str) -> None:
        super().__init__(f"job source: the master at {master_url} has no job cluster {cluster!r}")
        self.cluster = cluster
        self.master_url = master_url


def master_url_from_env(given: str | None = None) -> str:
    """`given`, else $MANTIS_MASTER_URL, without a trailing slash; SourceError if neither."""
    url = given or os.environ.get(MASTER_URL_ENV)
    if not url:
        raise SourceError(f"job source: no master URL (pass master_url or set ${MASTER_URL_ENV})")
    return url.rstrip("/")


def sink_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def last_stage_workers(info: Mapping[str, Any]) -> tuple[WorkerHost, ...]:
    """The Started workers of the highest-numbered stage of a JobSchedulingInfo object."""
    workers = worker_map_from_scheduling_info(info)
    return workers[max(workers)] if workers else ()


@dataclass(frozen=True)
class JobSource:
    """The output of the newest job of cluster `cluster`; see the module docstring."""

    cluster: str
    client_id: str | None = None
    """Default: the consuming job's id (``context.worker.job_id``)."""
    broadcast: bool = False
    """Mantis' isBroadcastMode: every consuming worker gets the whole stream."""
    sample: float | None = None
    """Seconds; the sinks send the newest event of each period."""
    sample_msec: int | None = None
    criterion: str | Callable[[Any], bool] | None = None
    """An MQL query the sinks apply (``select ... where ...``), or a predicate applied here."""
    enable_meta_messages: bool = False
    extra_params: Mapping[str, str] = field(default_factory=dict)
    master_url: str | None = None
    """Default: $MANTIS_MASTER_URL (and the leader in $MANTIS_ZK), read when the source
    starts."""
    backoff: Backoff = Backoff()
    not_found_retries: int = 2
    master_read_timeout: float | None = MASTER_READ_TIMEOUT
    max_batches: int = 64

    def __post_init__(self) -> None:
        if not self.cluster:
            raise ValueError("job source: cluster (sourceJobName) must not be empty")
        if self.not_found_retries < 0:
            raise ValueError(f"not_found_retries must be >= 0, got {self.not_found_retries}")
        if isinstance(self.criterion, str):
            from common.mql import compile_query  # lark and RE2: only for a criterion (6 MB)

            compile_query(self.criterion)  # MqlError (a ValueError) naming the position

    def resolve_client_id(self, worker: WorkerInfo) -> str:
        client_id = self.client_id or worker.job_id
        return f"{client_id}_{worker.worker_index}" if self.broadcast else client_id

    def query(self, worker: WorkerInfo) -> dict[str, str]:
        """The query parameters every sink connection of this worker sends."""
        params = {k: str(v) for k, v in self.extra_params.items()}
        params["clientId"] = self.resolve_client_id(worker)
        if self.sample_msec is not None:
            params["sampleMSec"] = str(self.sample_msec)
        elif self.sample is not None:
            params["sample"] = str(self.sample)
        if self.enable_meta_messages:
            params["enableMetaMessages"] = "true"
        if isinstance(self.criterion, str):
            from common.mql import PARAMETER

            params[PARAMETER] = self.criterion
        return params

    async def batches(self, context: Context) -> AsyncIterator[list[Any]]:
        master = master_url_from_env(self.master_url)
        zk = "" if self.master_url else os.environ.get(ZK_ENV, "")
        zk_root = os.environ.get(ZK_ROOT_ENV, "") or DEFAULT_ZK_ROOT
        params = self.query(context.worker)
        emitted = context.metrics.counter("events_emitted")
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with (
            followed(master, zk, zk_root) as location,
            aiohttp.ClientSession(connector=connector) as session,
        ):
            merger = Merger(self.max_batches)
            sub = _Subscription(self, context.metrics, session, merger, location, params)
            try:
                merger.spawn(sub.follow_cluster(), name=f"job-source-{self.cluster}")
                while (batch := await merger.get()) is not None:
                    emitted.inc(len(batch))
                    yield batch
            finally:
                await merger.close()
                sub.workers.clear()
                sub.workers_gauge.set(0)


class _Subscription:
    """The running state of one JobSource: the current job and its sink connections."""

    def __init__(
        self,
        source: JobSource,
        metrics: Metrics,
        session: aiohttp.ClientSession,
        merger: Merger,
        master: MasterLocation,
        params: dict[str, str],
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.session = session
        self.merger = merger
        self.master = master
        self.params = params
        self.decoder = EventDecoder.for_query(params, metrics)
        self.rng = random.Random()
        self.job_id: str | None = None
        self.job_task: asyncio.Task[None] | None = None
        self.workers: dict[tuple[str, int, int], asyncio.Task[None]] = {}
        self.workers_gauge = metrics.gauge("job_source_workers")
        self.switches = metrics.counter("job_source_switches")
        self.master_reconnects = metrics.counter("master_reconnects")
        self.decode_errors = metrics.counter("decode_errors")

    async def _master_stream(self, path: str, on_value: Callable[[dict[str, Any]], Any]) -> None:
        """Read one master stream until it ends; `on_value` (a coroutine function) gets each
        non-heartbeat JSON object."""
        url = f"{self.master.url}{path}"
        stream = sse_payloads(
            self.session, url, {"sendHB": "true"}, self.source.master_read_timeout
        )
        async with closing(stream):
            async for payloads in self.master.until_moved(stream):
                for payload in payloads:
                    try:
                        value = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        self.decode_errors.inc()
                        continue
                    if isinstance(value, dict) and value.get("jobId") != HB_JOB_ID:
                        await on_value(value)

    async def _retry(self, what: str, attempt: int, reason: str) -> None:
        self.master_reconnects.inc()
        delay = self.source.backoff.delay(attempt, self.rng)
        log.info("job_source_master_retry", stream=what, reason=reason, delay=round(delay, 3))
        await self.master.sleep(delay)

    # the cluster's newest job -----------------------------------------------------------------

    async def follow_cluster(self) -> None:
        cluster = self.source.cluster
        path = f"/api/v1/lastSubmittedJobIdStream/{quote(cluster, safe='')}"
        attempt = not_found = 0

        async def on_value(value: dict[str, Any]) -> None:
            nonlocal attempt, not_found
            attempt = not_found = 0
            jid = value.get("jobId")
            if isinstance(jid, str) and jid and jid != self.job_id:
                await self.switch(jid)

        while True:
            try:
                await self._master_stream(path, on_value)
                reason = "end of stream"
            except HttpStatusError as e:
                if e.status == 404:
                    not_found += 1
                    if not_found > self.source.not_found_retries:
                        raise UnknownClusterError(cluster, self.master.url) from e
                elif 400 <= e.status < 500:
                    raise
                reason = str(e)
            except RETRYABLE as e:
                reason = describe(e)
            await self._retry("lastSubmittedJobIdStream", attempt, reason)
            attempt += 1

    async def switch(self, jid: str) -> None:
        log.info("job_source_switching", cluster=self.source.cluster, old=self.job_id, new=jid)
        if self.job_task is not None:
            await cancel([self.job_task])
            self.switches.inc()
        await self.set_workers(())
        self.job_id = jid
        self.job_task = self.merger.spawn(self.follow_job(jid), name=f"job-source-{jid}")

    # the job's last-stage workers -------------------------------------------------------------

    async def follow_job(self, jid: str) -> None:
        path = f"/api/v1/jobDiscoveryStream/{quote(jid, safe='')}"
        attempt = 0

        async def on_value(info: dict[str, Any]) -> None:
            nonlocal attempt
            attempt = 0
            try:
                workers = last_stage_workers(info)
            except ValueError as e:
                self.decode_errors.inc()
                log.warning("job_source_bad_scheduling_info", job=jid, error=str(e))
                return
            await self.set_workers(workers)

        while True:
            try:
                await self._master_stream(path, on_value)
                reason = "end of stream"  # the job ended, or the master is going away
            except RETRYABLE as e:  # a 404 too: the cluster's stream will name the next job
                reason = describe(e)
            await self._retry("jobDiscoveryStream", attempt, reason)
            attempt += 1

    async def set_workers(self, workers: Sequence[WorkerHost]) -> None:
        wanted = {(w.host, w.port, w.worker_number): w for w in workers}
        gone = [key for key in self.workers if key not in wanted]
        await cancel([self.workers.pop(key) for key in gone])
        added = [key for key in wanted if key not in self.workers]
        for key in added:
            self.workers[key] = self.merger.spawn(
                self.read_worker(wanted[key]), name=f"job-source-sink-{key[0]}:{key[1]}"
            )
        self.workers_gauge.set(len(self.workers))
        if gone or added:
            log.info(
                "job_source_workers",
                job=self.job_id,
                connected=[f"{h}:{p}" for h, p, _ in added],
                closed=[f"{h}:{p}" for h, p, _ in gone],
                total=len(self.workers),
            )

    async def read_worker(self, worker: WorkerHost) -> None:
        stream = reconnecting_batches(
            self.session,
            sink_url(worker.host, worker.port),
            self.params,
            self.decoder,
            self.metrics,
            self.source.backoff,
            rng=self.rng,
        )
        keep = None if isinstance(self.source.criterion, str) else self.source.criterion
        async with closing(stream):
            async for batch in stream:
                if keep is not None:
                    batch = [e for e in batch if keep(e)]
                if batch:
                    await self.merger.put(batch)


# ---------------------------------------------------------------------------------------------
# Mantis' `target` parameter


@dataclass(frozen=True)
class Target:
    """One entry of Mantis' ``target`` parameter (``SourceJobParameters.TargetInfo``)."""

    source_job_name: str
    client_id: str | None = None
    broadcast: bool = False
    sample: float | None = None
    enable_meta_messages: bool = False
    extra_params: Mapping[str, str] = field(default_factory=dict)
    criterion: str | None = None
    """MQL, applied by the source job's sinks."""


def _bool(where: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{where}: expected true or false, got {value!r}")


def parse_target(value: str | bytes | Mapping[str, Any]) -> tuple[Target, ...]:
    """Mantis' ``{"targets": [{"sourceJobName", "clientId", "isBroadcastMode", "sample",
    "enableMetaMessages", "criterion", "mantis.EnableCompressedBinary",
    "mantis.CompressionDelimiter", "additionalParams"}, ...]}``; ValueError naming the field.

    ``criterion`` is MQL (the error names its position; one that selects everything is
    dropped); ``subscriptionId`` is ignored.
    """
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"target: not valid JSON: {e}") from None
    targets = value.get("targets") if isinstance(value, Mapping) else None
    if not isinstance(targets, list) or not targets:
        raise ValueError('target: expected {"targets": [...]} with at least one target')
    out: list[Target] = []
    for n, t in enumerate(targets):
        where = f"target: targets[{n}]"
        if not isinstance(t, Mapping):
            raise ValueError(f"{where}: expected an object, got {t!r}")
        name = t.get("sourceJobName")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.sourceJobName: missing or not a non-empty string")
        client_id = t.get("clientId") or None
        if client_id is not None and not isinstance(client_id, str):
            raise ValueError(f"{where}.clientId: expected a string, got {client_id!r}")
        criterion = t.get("criterion") or None
        if criterion is not None:
            if not isinstance(criterion, str):
                raise ValueError(f"{where}.criterion: expected MQL text, got {criterion!r}")
            from common.mql import MqlError, compile_query

            try:
                everything = compile_query(criterion).passes_everything
            except MqlError as e:
                raise ValueError(f"{where}.criterion: {e.message}") from None
            criterion = None if everything else criterion
        sample: float | None = None
        raw_sample = t.get("sample", -1)
        if raw_sample is not None and raw_sample != -1:
            if isinstance(raw_sample, bool) or not isinstance(raw_sample, int | float | str):
                raise ValueError(f"{where}.sample: expected seconds, got {raw_sample!r}")
            try:
                sample = float(raw_sample)
            except ValueError:
                raise ValueError(f"{where}.sample: expected seconds, got {raw_sample!r}") from None
        extra = t.get("additionalParams") or {}
        if not isinstance(extra, Mapping):
            raise ValueError(f"{where}.additionalParams: expected an object, got {extra!r}")
        params = {str(k): str(v) for k, v in extra.items()}
        if _bool(
            f"{where}.mantis.EnableCompressedBinary", t.get("mantis.EnableCompressedBinary", False)
        ):
            params["mantis.EnableCompressedBinary"] = "true"
        if t.get("mantis.CompressionDelimiter"):
            params["mantis.CompressionDelimiter"] = str(t["mantis.CompressionDelimiter"])
        out.append(
            Target(
                source_job_name=name,
                client_id=client_id,
                broadcast=_bool(f"{where}.isBroadcastMode", t.get("isBroadcastMode", False)),
                sample=sample,
                enable_meta_messages=_bool(
                    f"{where}.enableMetaMessages", t.get("enableMetaMessages", False)
                ),
                extra_params=params,
                criterion=criterion,
            )
        )
    return tuple(out)


def unique_client_ids(targets: Sequence[Target], default_client_id: str) -> list[str]:
    """Each target's client id (default: `default_client_id`); a (sourceJobName, clientId)
    pair seen before gets ``_1``, ``_2``, ... as Mantis does, so that two targets on the same
    job each get the whole stream instead of sharing it."""
    seen: dict[tuple[str, str], int] = {}
    out: list[str] = []
    for t in targets:
        client_id = t.client_id or default_client_id
        key = (t.source_job_name, client_id)
        count = seen.get(key)
        seen[key] = 0 if count is None else count + 1
        out.append(client_id if count is None else f"{client_id}_{count + 1}")
    return out


def job_sources(
    targets: Sequence[Target], default_client_id: str, **kwargs: Any
) -> list[JobSource]:
    """One JobSource per target, with unique client ids; `kwargs` go to every JobSource
    (``master_url``, ``criterion``, ``backoff``, ...), a target's own criterion first."""
    return [
        JobSource(
            cluster=t.source_job_name,
            client_id=client_id,
            broadcast=t.broadcast,
            sample=t.sample,
            enable_meta_messages=t.enable_meta_messages,
            extra_params=t.extra_params,
            **({**kwargs, "criterion": t.criterion} if t.criterion else kwargs),
        )
        for t, client_id in zip(targets, unique_client_ids(targets, default_client_id), strict=True)
    ]


@dataclass(frozen=True)
class TargetSource:
    """The JobSources of a Mantis ``target`` parameter, merged: `target` (JSON text or an
    object), else the job parameter named `parameter` when the source starts. Client ids
    default to the consuming job's id. `options` go to every JobSource."""

    target: str | Mapping[str, Any] | None = None
    parameter: str = "target"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target is not None:
            parse_target(self.target)  # a bad target fails when the job is defined

    async def batches(self, context: Context) -> AsyncIterator[list[Any]]:
        value = self.target if self.target is not None else context.parameters.get(self.parameter)
        if value is None:
            raise SourceError(
                f"job source: no target given and no job parameter {self.parameter!r}"
            )
        if not isinstance(value, str | bytes | Mapping):
            raise SourceError(
                f"job source: parameter {self.parameter!r} is a {type(value).__name__}"
            )
        sources = job_sources(parse_target(value), context.worker.job_id, **self.options)
        merged = MergedSource(sources)
        stream = merged.batches(context)
        async with closing(stream):
            async for batch in stream:
                yield batch

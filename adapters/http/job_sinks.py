"""Where a job's sink workers are, for the job-output routes (adapters.http.job_output).

The leader reads its own control plane (`PlaneSinks`). A follower reads the leader's
discovery streams (`LeaderSinks`: `jobDiscoveryStream` and `lastSubmittedJobIdStream`, the
ones workers follow), so every master serves job output, as every instance of Mantis' API tier
does: streaming clients spread over the masters, and a failover only moves a follower's
discovery stream to the new leader while its connections to the sink workers stay up.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from common.backoff import Backoff
from common.master_location import MasterLocation
from common.sse import HB_JOB_ID
from common.sse_client import RETRYABLE, HttpStatusError, describe, sse_payloads
from core.errors import CommandRejected, NotFound
from core.job import TERMINAL
from service.master import MasterService

log = structlog.get_logger()

Sink = tuple[str, int]
"""A sink worker's host and SSE port."""

DISCOVERY_READ_TIMEOUT = 90.0
"""The leader's discovery streams send a heartbeat every 29 s (sendHB): three missed, the
stream is given up (the worker's master client waits as long)."""


TERMINAL_JOB_STATES = frozenset(s.value for s in TERMINAL)


class LeaderUnknown(CommandRejected):
    """No leader to ask right now: a 503, worth a retry."""

    status = 503


class JobSinks(Protocol):
    async def job_id(self, job_id: str) -> str:
        """The job's id as the master names it; NotFound for an unknown job."""

    async def check_cluster(self, name: str) -> None:
        """NotFound for an unknown cluster."""

    def sinks(self, job_id: str) -> AsyncGenerator[frozenset[Sink], None]:
        """The job's sink workers at once, then on each change; ends when the job ends."""

    def latest_jobs(self, name: str) -> AsyncGenerator[str, None]:
        """The cluster's newest job at once (if any), then each newer one."""


def sinks_of(info: Any) -> frozenset[Sink]:
    """The last stage's workers in Mantis' JobSchedulingInfo JSON (`workerAssignments`)."""
    assignments = info.get("workerAssignments") if isinstance(info, dict) else None
    if not isinstance(assignments, dict) or not assignments:
        return frozenset()
    last = max(assignments, key=lambda stage: int(stage) if str(stage).isdigit() else -1)
    hosts = assignments[last].get("hosts") if isinstance(assignments[last], dict) else None
    found: set[Sink] = set()
    for host in (hosts or {}).values():
        ports = host.get("port") if isinstance(host, dict) else None
        if isinstance(ports, list) and ports and isinstance(ports[0], int):
            found.add((str(host.get("host")), ports[0]))
    return frozenset(found)


class PlaneSinks:
    """The leader's own view: its control plane, woken by its watchers."""

    def __init__(self, master: MasterService) -> None:
        self.master = master

    async def job_id(self, job_id: str) -> str:
        return self.master.plane.job(job_id).job_id

    async def check_cluster(self, name: str) -> None:
        self.master.plane.cluster(name)

    async def sinks(self, job_id: str) -> AsyncGenerator[frozenset[Sink], None]:
        master = self.master
        with master.watchers.job(job_id) as signal:
            while not master.watchers.closing:
                signal.clear()
                job = master.plane.jobs.get(job_id)
                if job is None or job.terminal:
                    return
                info = master.plane.scheduling_info(job_id)
                stage = info.stages[-1].hosts if info.stages else ()
                yield frozenset((h.hostname, h.ports[0]) for h in stage if h.ports)
                await signal.wait()

    async def latest_jobs(self, name: str) -> AsyncGenerator[str, None]:
        master = self.master
        with master.watchers.cluster(name) as signal:
            last = None
            while not master.watchers.closing:
                signal.clear()
                jid = master.last_submitted.get(name)
                if jid is not None and jid != last:
                    last = jid
                    yield jid
                await signal.wait()


class LeaderSinks:
    """A follower's view: the leader's discovery streams, followed across failovers.

    `location` is the leader's URL ("" while none is known), moved by the election; a stream
    is dropped at once when it moves, and opened again on the new leader."""

    def __init__(self, location: MasterLocation) -> None:
        self.location = location
        self.backoff = Backoff(initial=0.05, maximum=2.0)
        self._session: aiohttp.ClientSession | None = None
        self._closing = False

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        self._closing = True
        if self._session is not None:
            await self._session.close()

    async def job_id(self, job_id: str) -> str:
        body = await self._get(f"/api/v1/jobs/{quote(job_id, safe='')}", "job", job_id)
        return str(body.get("jobMetadata", {}).get("jobId") or job_id)

    async def check_cluster(self, name: str) -> None:
        await self._get(f"/api/v1/jobClusters/{quote(name, safe='')}", "job cluster", name)

    async def _get(self, path: str, kind: str, name: str) -> dict[str, Any]:
        """The leader's answer to a read; NotFound for its 404, CommandRejected (503) while
        it cannot be asked."""
        url = self.location.url
        if not url:
            raise LeaderUnknown("no leader is known yet; try again shortly")
        try:
            async with self.session().get(url + path, timeout=aiohttp.ClientTimeout(5)) as resp:
                if resp.status == 404:
                    raise NotFound(kind, name)
                if resp.status != 200:
                    raise LeaderUnknown(f"the leader at {url} answered HTTP {resp.status}")
                body = await resp.json(loads=orjson.loads)
        except RETRYABLE as e:
            raise LeaderUnknown(f"the leader at {url} cannot be reached: {describe(e)}") from e
        return body if isinstance(body, dict) else {}

    async def sinks(self, job_id: str) -> AsyncGenerator[frozenset[Sink], None]:
        last: frozenset[Sink] | None = None
        path = f"/api/v1/jobDiscoveryStream/{quote(job_id, safe='')}"
        async for info in self._follow(
            path, lambda: self._gone(f"/api/v1/jobs/{quote(job_id, safe='')}")
        ):
            found = sinks_of(info)
            if info.get("jobId") != HB_JOB_ID and found != last:
                last = found
                yield found

    async def latest_jobs(self, name: str) -> AsyncGenerator[str, None]:
        last = None
        path = f"/api/v1/lastSubmittedJobIdStream/{quote(name, safe='')}"
        async for item in self._follow(
            path, lambda: self._gone(f"/api/v1/jobClusters/{quote(name, safe='')}")
        ):
            jid = item.get("jobId")
            if isinstance(jid, str) and jid not in (HB_JOB_ID, last):
                last = jid
                yield jid

    async def _gone(self, path: str) -> bool:
        """Whether the leader no longer has the job (or it ended), or the cluster."""
        try:
            body = await self._get(path, "path", path)
        except NotFound:
            return True
        except CommandRejected:
            return False
        return body.get("jobMetadata", {}).get("state") in TERMINAL_JOB_STATES

    async def _follow(
        self, path: str, gone: Callable[[], Awaitable[bool]]
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The stream's JSON objects from whoever leads, reconnecting with back-off, until
        a leader ends the stream and `gone()` confirms there is nothing more to follow."""
        attempt, rng = 0, random.Random()
        while not self._closing:
            url = self.location.url
            if url:
                stream = sse_payloads(
                    self.session(), url + path, {"sendHB": "true"}, DISCOVERY_READ_TIMEOUT
                )
                try:
                    async for payloads in self.location.until_moved(stream):
                        attempt = 0
                        for data in payloads:
                            item = orjson.loads(data)
                            if isinstance(item, dict):
                                yield item
                    if self.location.url == url and await gone():
                        return
                except HttpStatusError as e:
                    if e.status == 404:
                        return  # the leader never had it, or no longer has it
                    _lost(url + path, e, attempt)
                except (*RETRYABLE, orjson.JSONDecodeError) as e:
                    _lost(url + path, e, attempt)
            await self.location.sleep(self.backoff.delay(attempt, rng))
            attempt += 1


def _lost(url: str, error: BaseException, attempt: int) -> None:
    """Said once per loss, not per retry."""
    (log.info if attempt == 0 else log.debug)(
        "leader_stream_lost", url=url, error=describe(error), attempt=attempt
    )

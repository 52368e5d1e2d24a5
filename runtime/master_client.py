"""A worker's calls to the master: status and heartbeats, and its job's scheduling changes.

Paths are Mantis' v1 API (io.mantisrx.master.api.akka.route.v1 JobsRoute and
JobDiscoveryStreamRoute): ``POST
/api/v1/jobs/actions/postJobStatus`` and ``GET /api/v1/jobDiscoveryStream/{jobId}?sendHB=true``.
A master that cannot be reached is retried with jittered exponential back-off; the worker
keeps running meanwhile (a restarting master must not take healthy workers down with it).

Several masters (``MANTIS_ZK``): the client follows the elected leader published in ZooKeeper
(runtime.master_location), so a failover costs a few failed calls, never the worker. A master
that does not lead redirects (302 for reads, 307 for calls with a body: adapters/http/
follower.py); calls with a body follow the redirect here, keeping method, body and token
(aiohttp would drop the token on the way to another port), and a 503 (no leader known yet) is
waited out like a refused connection.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import aiohttp
import orjson
import structlog
from yarl import URL

from common.backoff import Backoff
from common.master_leader import DEFAULT_ZK_ROOT, MAX_REDIRECTS, REDIRECTS
from common.master_location import MasterLocation
from common.sse import HB_JOB_ID
from common.sse_client import RETRYABLE, sse_payloads
from runtime.master_location import ZkLeaderWatch

STATUS_PATH = "/api/v1/jobs/actions/postJobStatus"
NO_MASTER = frozenset({502, 503, 504})
"""Answers that mean no master can take the call right now (a failover, a restart)."""

log = structlog.get_logger()


class MasterClient:
    """One worker's view of the master at `base_url` (e.g. ``http://127.0.0.1:8100``), or of
    the leader elected in ZooKeeper `zk` (``host:port[/chroot]``, masters under `zk_root`).

    Used as ``async with``: that starts and stops following the leader."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        job_id: str,
        stage: int,
        index: int,
        number: int,
        hostname: str | None = None,
        api_token: str | None = None,
        *,
        zk: str = "",
        zk_root: str = DEFAULT_ZK_ROOT,
    ) -> None:
        self.session = session
        self.location = MasterLocation(base_url)
        self.job_id = job_id
        self.stage = stage
        self.index = index
        self.number = number
        self.hostname = hostname or socket.gethostname()
        self.backoff = Backoff()
        self._auth = {"Authorization": f"Bearer {api_token}"} if api_token else {}
        self._rng = random.Random()
        self._watch = ZkLeaderWatch(self.location, zk, zk_root) if zk else None

    @property
    def base_url(self) -> str:
        """The master's URL now (the leader's, with ZooKeeper)."""
        return self.location.url

    async def __aenter__(self) -> MasterClient:
        if self._watch is not None:
            self._watch.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._watch is not None:
            await self._watch.stop()

    def status_body(
        self,
        state: str | None,
        type_: str = "INFO",
        message: str = "",
        reason: str | None = None,
        payloads: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Mantis' postJobStatus body for this worker."""
        status: dict[str, Any] = {
            "jobId": self.job_id,
            "stageNum": self.stage,
            "workerIndex": self.index,
            "workerNumber": self.number,
            "hostname": self.hostname,
            "type": type_,
            "message": message,
            "timestamp": int(time.time() * 1000),
        }
        if state is not None:
            status["state"] = state
        if reason is not None:
            status["reason"] = reason
        if payloads:
            status["payloads"] = [{"type": k, "data": v} for k, v in payloads.items()]
        return {"jobId": self.job_id, "status": status}

    async def post_status(
        self,
        state: str | None,
        type_: str = "INFO",
        message: str = "",
        reason: str | None = None,
        payloads: Mapping[str, str] | None = None,
        attempts: int = 5,
    ) -> bool:
        """Send a status (or a heartbeat: ``type_="HEARTBEAT"``); True once the master took it.

        While no master answers (a refused or broken connection, 502/503/504: it restarts, or
        a failover is under way) the status is retried with back-off until one does; other
        failures (timeouts, other 5xx) are retried up to `attempts` times. A 4xx is not
        retried (the master refused it: retrying cannot help) and is logged.
        """
        body = orjson.dumps(self.status_body(state, type_, message, reason, payloads))
        headers = {"Content-Type": "application/json"}
        failures = tries = backoff = 0
        tried = self.base_url
        while True:
            tries += 1
            if self.base_url != tried:  # a new master: worth trying again soon
                tried, backoff = self.base_url, 0
            no_master = True
            try:
                status, text = await self._call("POST", STATUS_PATH, data=body, headers=headers)
            except TimeoutError:  # before OSError: aiohttp's timeouts are both
                no_master = False  # a master that hangs is not one that failed over
                log.warning("master_timed_out", attempt=tries, url=self.base_url)
            except (aiohttp.ClientError, OSError) as e:
                log.warning("master_unreachable", attempt=tries, url=self.base_url, error=repr(e))
            else:
                if status < 300:
                    return True
                if 400 <= status < 500:
                    log.warning(
                        "master_refused_status", status=status, body=text, state=state, type=type_
                    )
                    return False
                log.warning("master_status_error", status=status, body=text, url=self.base_url)
                no_master = status in NO_MASTER or status < 400  # < 400: redirected in circles
            if not no_master:
                failures += 1
                if failures >= attempts:
                    return False
            await self.location.sleep(self.backoff.delay(backoff, self._rng))
            backoff += 1

    async def kill_job(self, reason: str) -> bool:
        """Ask the master to kill this worker's job (``DELETE /api/v1/jobs/{jobId}``)."""
        params = {"user": f"{self.job_id}-worker-{self.index}-{self.number}", "reason": reason}
        try:
            status, text = await self._call("DELETE", f"/api/v1/jobs/{self.job_id}", params=params)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("master_unreachable", url=self.base_url, error=repr(e))
            return False
        if status < 300:
            return True
        log.warning("master_refused_kill", status=status, body=text)
        return False

    async def _call(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        """One call to the master, following redirects with its method, body and token:
        the final status and the start of its body. A redirect past `MAX_REDIRECTS` (masters
        pointing at each other while they elect) is returned as it is."""
        url = URL(self.base_url + path)
        for _ in range(MAX_REDIRECTS + 1):
            async with self.session.request(
                method,
                url,
                data=data,
                params=params,
                headers={**(headers or {}), **self._auth},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status not in REDIRECTS or not location:
                    return resp.status, (await resp.text())[:300]
                url = resp.url.join(URL(location))
                params = None  # the Location carries the query
        return resp.status, f"more than {MAX_REDIRECTS} redirects"

    async def scheduling_changes(self) -> AsyncIterator[dict[str, Any]]:
        """The job's JobSchedulingInfo objects as they change, reconnecting for ever (the
        caller stops iterating), to the new leader as soon as it is known; the master's
        heartbeat frames are dropped."""
        attempt = 0
        tried = self.base_url
        while True:
            if self.base_url != tried:  # a new master: worth trying again soon
                tried, attempt = self.base_url, 0
            url = f"{self.base_url}/api/v1/jobDiscoveryStream/{self.job_id}"
            stream = sse_payloads(self.session, url, {"sendHB": "true"}, 90)
            try:
                async for payloads in self.location.until_moved(stream):
                    for data in payloads:
                        info = orjson.loads(data)
                        if info.get("jobId") == HB_JOB_ID:
                            continue
                        attempt = 0
                        yield info
            except (*RETRYABLE, orjson.JSONDecodeError) as e:
                log.warning("discovery_stream_lost", url=url, error=repr(e))
            await self.location.sleep(self.backoff.delay(attempt, self._rng))
            attempt += 1

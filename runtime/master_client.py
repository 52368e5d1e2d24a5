"""A worker's calls to the master: status and heartbeats, and its job's scheduling changes.

Paths are Mantis' v1 API (io.mantisrx.master.api.akka.route.v1 JobsRoute and
JobDiscoveryStreamRoute): ``POST
/api/v1/jobs/actions/postJobStatus`` and ``GET /api/v1/jobDiscoveryStream/{jobId}?sendHB=true``.
A master that cannot be reached is retried with jittered exponential back-off; the worker
keeps running meanwhile (a restarting master must not take healthy workers down with it).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
import structlog

from common.backoff import Backoff
from common.sse import HB_JOB_ID
from common.sse_client import RETRYABLE, sse_payloads

STATUS_PATH = "/api/v1/jobs/actions/postJobStatus"

log = structlog.get_logger()


class MasterClient:
    """One worker's view of the master at `base_url` (e.g. ``http://127.0.0.1:8100``)."""

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
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.job_id = job_id
        self.stage = stage
        self.index = index
        self.number = number
        self.hostname = hostname or socket.gethostname()
        self.backoff = Backoff()
        self._auth = {"Authorization": f"Bearer {api_token}"} if api_token else {}
        self._rng = random.Random()

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

        Retried up to `attempts` times on connection errors and 5xx; a 4xx is not retried
        (the master refused it: retrying cannot help) and is logged.
        """
        body = orjson.dumps(self.status_body(state, type_, message, reason, payloads))
        for attempt in range(1, attempts + 1):
            try:
                async with self.session.post(
                    self.base_url + STATUS_PATH,
                    data=body,
                    headers={"Content-Type": "application/json", **self._auth},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    if resp.status < 300:
                        return True
                    text = (await resp.text())[:300]
                    if resp.status < 500:
                        log.warning(
                            "master_refused_status",
                            status=resp.status,
                            body=text,
                            state=state,
                            type=type_,
                        )
                        return False
                    log.warning("master_status_error", status=resp.status, body=text)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                log.warning("master_unreachable", attempt=attempt, error=repr(e))
            if attempt < attempts:
                await asyncio.sleep(self.backoff.delay(attempt - 1, self._rng))
        return False

    async def kill_job(self, reason: str) -> bool:
        """Ask the master to kill this worker's job (``DELETE /api/v1/jobs/{jobId}``)."""
        params = {"user": f"{self.job_id}-worker-{self.index}-{self.number}", "reason": reason}
        try:
            async with self.session.delete(
                f"{self.base_url}/api/v1/jobs/{self.job_id}",
                params=params,
                headers=self._auth,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                if resp.status < 300:
                    return True
                log.warning(
                    "master_refused_kill", status=resp.status, body=(await resp.text())[:300]
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("master_unreachable", error=repr(e))
        return False

    async def scheduling_changes(self) -> AsyncIterator[dict[str, Any]]:
        """The job's JobSchedulingInfo objects as they change, reconnecting for ever (the
        caller stops iterating); the master's heartbeat frames are dropped."""
        url = f"{self.base_url}/api/v1/jobDiscoveryStream/{self.job_id}"
        attempt = 0
        while True:
            try:
                async for payloads in sse_payloads(self.session, url, {"sendHB": "true"}, 90):
                    for data in payloads:
                        info = orjson.loads(data)
                        if info.get("jobId") == HB_JOB_ID:
                            continue
                        attempt = 0
                        yield info
            except (*RETRYABLE, orjson.JSONDecodeError) as e:
                log.warning("discovery_stream_lost", error=repr(e))
            await asyncio.sleep(self.backoff.delay(attempt, self._rng))
            attempt += 1

"""A small asyncio client of the v1 scheduler HTTP API, for tools, tests and benchmarks.

Not a framework driver (the product uses pymesos): no reconnection, no implicit
acknowledgements. It subscribes, keeps every event it receives, and lets the caller wait for
the next event of given types; calls go on separate connections with the stream id.
Works against mesoslite and against a real Mesos master alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import orjson

from mesoslite.recordio import Decoder

Event = dict[str, Any]


class CallFailed(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


class SchedulerClient:
    def __init__(
        self,
        master_url: str,
        path: str = "/api/v1/scheduler",
        principal: str | None = None,
        secret: str | None = None,
    ) -> None:
        """With `principal` and `secret`, every request presents them (HTTP Basic), as
        pymesos' MesosSchedulerDriver does."""
        self.url = master_url.rstrip("/") + path
        self.headers: dict[str, str] = {}
        if principal is not None and secret is not None:
            self.headers["Authorization"] = aiohttp.encode_basic_auth(principal, secret)
        self.framework_id: str | None = None
        self.stream_id: str | None = None
        self.events: list[Event] = []  # everything received, in order
        self._unread: list[Event] = []
        self._arrived = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def subscribe(
        self,
        framework_info: dict[str, Any],
        framework_id: str | None = None,
        timeout: float = 10.0,
        **subscribe: Any,
    ) -> Event:
        """SUBSCRIBE and wait for SUBSCRIBED; CallFailed if refused, the ERROR event if errored."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None), headers=self.headers
            )
        info = dict(framework_info)
        body: dict[str, Any] = {
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": info, **subscribe},
        }
        if framework_id is not None:
            info["id"] = {"value": framework_id}
            body["framework_id"] = {"value": framework_id}
        resp = await self._http.post(
            self.url,
            data=orjson.dumps(body),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        if resp.status != 200:
            text = await resp.text()
            resp.release()
            raise CallFailed(resp.status, text)
        self.stream_id = resp.headers.get("Mesos-Stream-Id")
        self.closed.clear()
        self._reader = asyncio.create_task(self._read(resp))
        event = await self.next_event("SUBSCRIBED", "ERROR", timeout=timeout)
        if event["type"] == "SUBSCRIBED":
            self.framework_id = event["subscribed"]["framework_id"]["value"]
        return event

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        decoder = Decoder()
        try:
            async for chunk in resp.content.iter_any():
                for record in decoder.feed(chunk):
                    event = orjson.loads(record)
                    self.events.append(event)
                    self._unread.append(event)
                self._arrived.set()
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            resp.release()
            self.closed.set()
            self._arrived.set()

    async def next_event(
        self,
        *types: str,
        timeout: float = 5.0,
        where: Callable[[Event], bool] | None = None,
    ) -> Event:
        """The first unread event of one of `types` (any type if none) that `where` accepts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, event in enumerate(self._unread):
                if (not types or event["type"] in types) and (where is None or where(event)):
                    del self._unread[i]
                    return event
            if self.closed.is_set():
                raise ConnectionError(
                    f"event stream closed while waiting for {types or 'an event'}"
                )
            self._arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = sorted({e["type"] for e in self._unread})
                raise TimeoutError(f"no {types or 'event'} within {timeout} s (unread: {seen})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def drain(self, *types: str) -> list[Event]:
        """Take every unread event (of `types`, if given) without waiting."""
        taken = [e for e in self._unread if not types or e["type"] in types]
        self._unread = [e for e in self._unread if types and e["type"] not in types]
        return taken

    async def call(
        self, call: dict[str, Any], stream_id: str | None = "current"
    ) -> tuple[int, str]:
        """POST a call with this framework's id and stream id; (HTTP status, body text)."""
        assert self._http is not None, "subscribe first"
        body = dict(call)
        if self.framework_id is not None:
            body.setdefault("framework_id", {"value": self.framework_id})
        headers = {"Content-Type": "application/json"}
        sid = self.stream_id if stream_id == "current" else stream_id
        if sid is not None:
            headers["Mesos-Stream-Id"] = sid
        async with self._http.post(self.url, data=orjson.dumps(body), headers=headers) as resp:
            return resp.status, await resp.text()

    async def must(self, call: dict[str, Any]) -> None:
        status, text = await self.call(call)
        if status >= 300:
            raise CallFailed(status, text)

    # -- the common calls -----------------------------------------------------------------------

    async def accept(
        self,
        offer_ids: list[str],
        tasks: list[dict[str, Any]],
        refuse_seconds: float | None = None,
    ) -> None:
        accept: dict[str, Any] = {
            "offer_ids": [{"value": o} for o in offer_ids],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
        }
        if refuse_seconds is not None:
            accept["filters"] = {"refuse_seconds": refuse_seconds}
        await self.must({"type": "ACCEPT", "accept": accept})

    async def decline(self, offer_ids: list[str], refuse_seconds: float | None = None) -> None:
        decline: dict[str, Any] = {"offer_ids": [{"value": o} for o in offer_ids]}
        if refuse_seconds is not None:
            decline["filters"] = {"refuse_seconds": refuse_seconds}
        await self.must({"type": "DECLINE", "decline": decline})

    async def acknowledge(self, status: dict[str, Any]) -> None:
        if "uuid" in status:
            await self.must(
                {
                    "type": "ACKNOWLEDGE",
                    "acknowledge": {
                        "agent_id": status["agent_id"],
                        "task_id": status["task_id"],
                        "uuid": status["uuid"],
                    },
                }
            )

    async def kill(self, task_id: str) -> None:
        await self.must({"type": "KILL", "kill": {"task_id": {"value": task_id}}})

    async def reconcile(self, task_ids: Sequence[str] = ()) -> None:
        tasks = [{"task_id": {"value": t}} for t in task_ids]
        await self.must({"type": "RECONCILE", "reconcile": {"tasks": tasks}})

    async def close(self) -> None:
        """Drop the subscription connection (the framework fails over, it is not torn down)."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self.closed.set()


def command_task(
    task_id: str,
    agent_id: str,
    command: str,
    cpus: float = 0.1,
    mem: float = 32,
    ports: list[tuple[int, int]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A TaskInfo running `command` through the shell."""
    resources: list[dict[str, Any]] = [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ]
    if ports:
        resources.append(
            {
                "name": "ports",
                "type": "RANGES",
                "ranges": {"range": [{"begin": b, "end": e} for b, e in ports]},
            }
        )
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": resources,
        "command": {"shell": True, "value": command},
        **extra,
    }

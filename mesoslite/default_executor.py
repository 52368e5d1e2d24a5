"""mesoslite's default executor: runs task groups (LAUNCH_GROUP) that start and die together.

It plays the part of Mesos' default executor (src/launcher/default_executor.cpp) over the
executor HTTP API of its agent (mesoslite.executor_api): it subscribes with the MESOS_*
environment the agent gives it, and runs each task of a group as the command executor runs a
command (mesoslite.agent.command_argv), in its own process group, in `tasks/<task id>` of the
executor's sandbox (stdout and stderr there), with MESOS_TASK_ID and MESOS_SANDBOX set. It
reports TASK_STARTING and TASK_RUNNING, then TASK_FINISHED (exit 0), TASK_FAILED or TASK_KILLED.

As Mesos' default executor, a group lives and dies as one: when one of its tasks fails or is
killed (a KILL of any task kills the whole group), the others are killed (SIGTERM, then SIGKILL
after the kill policy's grace period, else 3 s). When no task is left and every update has been
acknowledged, or on SHUTDOWN, or when its connection to the agent ends, it stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog

from common import logs
from mesoslite.agent import TaskProcess, command_argv, spawn
from mesoslite.protocol import DEFAULT_KILL_GRACE_SECONDS, duration_seconds
from mesoslite.recordio import Decoder

log = structlog.get_logger()

ACK_WAIT_SECONDS = 10.0  # how long the last updates may wait for their acknowledgement


@dataclass(eq=False)
class GroupTask:
    info: dict[str, Any]
    group: list[GroupTask]
    process: TaskProcess | None = None
    state: str = "TASK_STAGING"
    killing: bool = False

    @property
    def id(self) -> str:
        return str(self.info["task_id"]["value"])

    @property
    def done(self) -> bool:
        return self.state in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED")


@dataclass
class DefaultExecutor:
    endpoint: str
    framework_id: str
    executor_id: str
    sandbox: Path
    tasks: dict[str, GroupTask] = field(default_factory=dict)
    unacknowledged: set[str] = field(default_factory=set)
    http: aiohttp.ClientSession | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}/api/v1/executor"

    def ids(self) -> dict[str, Any]:
        return {
            "framework_id": {"value": self.framework_id},
            "executor_id": {"value": self.executor_id},
        }

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            self.http = http
            subscribe = {**self.ids(), "type": "SUBSCRIBE", "subscribe": {}}
            async with http.post(
                self.url, json=subscribe, headers={"Accept": "application/json"}
            ) as resp:
                if resp.status != 200:
                    log.error("subscribe_refused", status=resp.status, error=await resp.text())
                    return
                reader = asyncio.ensure_future(self._read(resp))
                finished = asyncio.ensure_future(self._until_finished())
                await asyncio.wait({reader, finished}, return_when=asyncio.FIRST_COMPLETED)
                reader.cancel()
                finished.cancel()
            await self._kill_all()

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        decoder = Decoder()
        async for chunk in resp.content.iter_any():
            for record in decoder.feed(chunk):
                event = orjson.loads(record)
                if not self.handle(event):
                    return
        log.info("agent_connection_ended")

    async def _until_finished(self) -> None:
        """Return once every task is done and its updates acknowledged (or waited for)."""
        while True:
            self.changed.clear()
            if self.tasks and all(t.done for t in self.tasks.values()):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ACK_WAIT_SECONDS):
                        while self.unacknowledged:
                            self.changed.clear()
                            await self.changed.wait()
                return
            await self.changed.wait()

    def handle(self, event: dict[str, Any]) -> bool:
        """One event from the agent; False on SHUTDOWN."""
        kind = event.get("type")
        if kind == "SUBSCRIBED":
            log.info("executor_subscribed", executor_id=self.executor_id)
        elif kind == "LAUNCH_GROUP":
            infos = event["launch_group"]["task_group"]["tasks"]
            group: list[GroupTask] = []
            for info in infos:
                task = GroupTask(info, group)
                group.append(task)
                self.tasks[task.id] = task
            for task in group:
                self._spawn(self._run_task(task))
        elif kind == "KILL":
            killed = self.tasks.get(event["kill"]["task_id"]["value"])
            grace = duration_seconds((event["kill"].get("kill_policy") or {}).get("grace_period"))
            if killed is not None:
                self._kill_group(killed.group, grace)
        elif kind == "ACKNOWLEDGED":
            self.unacknowledged.discard(event["acknowledged"]["uuid"])
            self.changed.set()
        elif kind == "SHUTDOWN":
            log.info("executor_shutdown", executor_id=self.executor_id)
            return False
        elif kind == "ERROR":
            log.error("agent_error", message=event.get("error", {}).get("message"))
        else:
            log.debug("event_ignored", type=kind)  # LAUNCH and MESSAGE are not for groups
        return True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _run_task(self, task: GroupTask) -> None:
        sandbox = self.sandbox / "tasks" / task.id
        command = task.info.get("command") or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_EXECUTOR")}
        env.update({"MESOS_TASK_ID": task.id, "MESOS_SANDBOX": str(sandbox)})
        for var in (command.get("environment") or {}).get("variables") or []:
            if var.get("type", "VALUE") == "VALUE" and isinstance(var.get("name"), str):
                env[var["name"]] = str(var.get("value", ""))
        await self._update(task, "TASK_STARTING")
        try:
            executable, argv = command_argv(command)
            task.process = await spawn(executable, argv, sandbox, env)
        except (OSError, KeyError, ValueError) as e:
            await self._update(task, "TASK_FAILED", f"Failed to launch: {e}")
            self._kill_group(task.group, None)
            return
        await self._update(task, "TASK_RUNNING")
        if task.killing:
            _signal_group(task.process.pid, signal.SIGTERM)
        code = await task.process.wait()
        _signal_group(task.process.pid, signal.SIGKILL)  # what it left behind
        if code >= 0:
            message = f"Command exited with status {code}"
        else:
            message = f"Command terminated with signal {signal.Signals(-code).name}"
        if task.killing:
            await self._update(task, "TASK_KILLED", message)
        elif code == 0:
            await self._update(task, "TASK_FINISHED", message)
        else:
            await self._update(task, "TASK_FAILED", message)
            self._kill_group(task.group, None)  # the group dies with it

    def _kill_group(self, group: list[GroupTask], grace: float | None) -> None:
        for task in group:
            if task.killing or task.done:
                continue
            task.killing = True
            policy = task.info.get("kill_policy") or {}
            seconds = grace if grace is not None else duration_seconds(policy.get("grace_period"))
            seconds = DEFAULT_KILL_GRACE_SECONDS if seconds is None else seconds
            if task.process is None:
                continue  # _run_task signals it once spawned
            _signal_group(task.process.pid, signal.SIGTERM)
            pid = task.process.pid
            asyncio.get_running_loop().call_later(seconds, _signal_group, pid, signal.SIGKILL)

    async def _kill_all(self) -> None:
        """On SHUTDOWN or a lost agent: every task killed, waited for (bounded by the grace)."""
        for task in self.tasks.values():
            self._kill_group(task.group, None)
        running = [t.process.wait() for t in self.tasks.values() if t.process is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*running), DEFAULT_KILL_GRACE_SECONDS + 1)

    async def _update(self, task: GroupTask, state: str, message: str | None = None) -> None:
        task.state = state
        status: dict[str, Any] = {
            "task_id": task.info["task_id"],
            "state": state,
            "source": "SOURCE_EXECUTOR",
            "executor_id": {"value": self.executor_id},
            "timestamp": time.time(),
            "uuid": base64.b64encode(uuid.uuid4().bytes).decode("ascii"),
        }
        if message is not None:
            status["message"] = message
        self.unacknowledged.add(status["uuid"])
        body = {**self.ids(), "type": "UPDATE", "update": {"status": status}}
        assert self.http is not None
        try:
            async with self.http.post(self.url, json=body) as resp:
                if resp.status != 202:
                    log.error("update_refused", status=resp.status, error=await resp.text())
        except aiohttp.ClientError as e:
            log.error("update_failed", task_id=task.id, error=str(e))
        self.changed.set()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def main() -> int:
    """Run as `python -m mesoslite.default_executor` by an agent, with its MESOS_* variables."""
    logs.configure(json=True)
    try:
        executor = DefaultExecutor(
            endpoint=os.environ["MESOS_AGENT_ENDPOINT"],
            framework_id=os.environ["MESOS_FRAMEWORK_ID"],
            executor_id=os.environ["MESOS_EXECUTOR_ID"],
            sandbox=Path(os.environ["MESOS_SANDBOX"]),
        )
    except KeyError as e:
        log.error("executor_environment_missing", variable=str(e))
        return 2
    asyncio.run(executor.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Executors on the agent: the executor HTTP API and the executor processes it talks to.

The API is Mesos' v1 executor API (include/mesos/v1/executor/executor.proto; the endpoint is
src/slave/http.cpp's Http::executor, the call checks src/common/validation.cpp's):
`POST /api/v1/executor` with JSON calls SUBSCRIBE (answered by a chunked RecordIO stream of
events: SUBSCRIBED, then LAUNCH, LAUNCH_GROUP, KILL, ACKNOWLEDGED, MESSAGE, SHUTDOWN, ERROR),
UPDATE (a TaskStatus, forwarded to the framework and ACKNOWLEDGED back once the framework
acknowledges it), MESSAGE (to the framework) and HEARTBEAT, each answered 202.

An executor (TaskInfo.executor, or a task group's) is started the first time a task needs it,
in its own sandbox `.../frameworks/<framework>/executors/<executor>/runs/<run>` after its
CommandInfo.uris are fetched (mesoslite.fetcher), with the environment Mesos' agent gives
executors (src/slave/slave.cpp executorEnvironment): MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID,
MESOS_AGENT_ENDPOINT, MESOS_DIRECTORY, MESOS_SANDBOX, MESOS_CHECKPOINT, MESOS_SLAVE_ID,
MESOS_AGENT_ID, MESOS_SLAVE_PID, MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, MESOS_HTTP_COMMAND_EXECUTOR
and the command's own variables. Tasks wait until it subscribes; later tasks for the same
executor are LAUNCHed into it. A task group's executor of type DEFAULT is mesoslite's
default executor (mesoslite.default_executor), run as `python -m mesoslite.default_executor`.

An executor is shut down (SHUTDOWN, then its process group is killed after the grace period)
when the framework asks (the scheduler's SHUTDOWN), when the framework goes, or when the agent
stops. When its process exits the agent fails its unfinished tasks and tells the master, which
sends the framework a FAILURE with the executor's id (see MesosliteAgent.executor_terminated).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web

from mesoslite import fetcher
from mesoslite.httputil import accepts_json, read_call, serve_stream, text
from mesoslite.protocol import TASK_STATES, InvalidCall, id_of, sub_message
from mesoslite.resources import Resources
from mesoslite.streams import EventStream

log = structlog.get_logger()

DEFAULT_EXECUTOR_ARGV = (sys.executable, "-m", "mesoslite.default_executor")
EXECUTOR_CALLS = ("SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT")


@dataclass(eq=False)
class ExecutorRun:
    """One executor process on this agent, from its first task until it exits."""

    framework_info: dict[str, Any]
    info: dict[str, Any]  # ExecutorInfo
    sandbox: Path
    container_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    process: Any = None  # mesoslite.agent.TaskProcess once spawned
    stream: EventStream | None = None  # the SUBSCRIBE connection's events
    pending: list[dict[str, Any]] = field(default_factory=list)  # until it subscribes
    resources: Resources = field(default_factory=Resources)
    shutting_down: bool = False

    @property
    def id(self) -> str:
        return str(self.info["executor_id"]["value"])

    @property
    def framework_id(self) -> str:
        return str(self.framework_info["id"]["value"])

    def deliver(self, event: dict[str, Any]) -> None:
        """Send an event now if it is subscribed, else when it subscribes."""
        if self.stream is not None and not self.stream.closed:
            self.stream.send(event)
        else:
            self.pending.append(event)


class Host(Protocol):
    """What the executors need of their agent (mesoslite.agent.MesosliteAgent)."""

    def executor_sandbox(self, framework_id: str, executor_id: str) -> Path: ...

    def executor_base_environment(self, run: ExecutorRun) -> dict[str, str]: ...

    def spawn_executor(
        self, run: ExecutorRun, executable: str, argv: list[str], env: dict[str, str]
    ) -> Awaitable[Any]: ...

    def executor_terminated(self, run: ExecutorRun, status: int | None, message: str) -> None: ...

    def executor_update(self, run: ExecutorRun, status: dict[str, Any]) -> None: ...

    def executor_message(self, call: dict[str, Any]) -> None: ...

    def agent_info(self) -> dict[str, Any]: ...

    @property
    def kill_grace_period(self) -> float: ...


def wait_status(code: int) -> int:
    """A process's exit (negative: its signal) as the wait status Mesos reports in FAILURE."""
    return -code if code < 0 else code << 8


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"Executor terminated with signal {signal.Signals(-code).name}"
        return f"Executor terminated with signal {-code}"
    return f"Executor exited with status {code}"


class Executors:
    """The executors of one agent, keyed by (framework id, executor id)."""

    def __init__(
        self,
        host: Host,
        work_dir: Path,
        argv_of: Callable[[dict[str, Any]], tuple[str, list[str]]],
        spawn_task: Callable[[Awaitable[Any]], Any],
    ) -> None:
        self.host = host
        self.work_dir = work_dir  # the fetcher's cache is under it
        self.runs: dict[tuple[str, str], ExecutorRun] = {}
        self._argv_of = argv_of  # a CommandInfo's (executable, argv), as for command tasks
        self._spawn_task = spawn_task  # keeps a reference to background coroutines

    def get(self, framework_id: str, executor_id: str) -> ExecutorRun | None:
        return self.runs.get((framework_id, executor_id))

    def resources(self) -> Resources:
        total = Resources()
        for run in self.runs.values():
            total = total + run.resources
        return total

    def launch(
        self, framework_info: dict[str, Any], info: dict[str, Any], event: dict[str, Any]
    ) -> ExecutorRun:
        """Deliver a LAUNCH or LAUNCH_GROUP event to the executor, starting it if needed."""
        fid = str(framework_info["id"]["value"])
        eid = str(info["executor_id"]["value"])
        run = self.runs.get((fid, eid))
        if run is None:
            run = ExecutorRun(
                framework_info,
                info,
                self.host.executor_sandbox(fid, eid),
                resources=Resources.from_mesos(info.get("resources") or []),
            )
            self.runs[(fid, eid)] = run
            self._spawn_task(self._run(run))
        run.deliver(event)
        return run

    async def _run(self, run: ExecutorRun) -> None:
        command = run.info.get("command") or {}
        try:
            await asyncio.to_thread(
                fetcher.fetch_all, fetcher.parse(command), run.sandbox, self.work_dir
            )
        except fetcher.FetchError as e:
            self._ended(run, None, str(e))
            return
        try:
            if command:
                executable, argv = self._argv_of(command)
            else:  # the DEFAULT executor
                executable, argv = DEFAULT_EXECUTOR_ARGV[0], list(DEFAULT_EXECUTOR_ARGV)
            run.process = await self.host.spawn_executor(
                run, executable, argv, self.environment(run)
            )
        except (OSError, KeyError, ValueError) as e:
            self._ended(run, None, f"Failed to launch executor: {e}")
            return
        log.info("executor_started", executor_id=run.id, pid=run.process.pid)
        if run.shutting_down:  # asked while it was being fetched or spawned
            self._kill_later(run, 0)
        code = await run.process.wait()
        self._ended(run, wait_status(code), describe_exit(code))

    def _ended(self, run: ExecutorRun, status: int | None, message: str) -> None:
        log.info("executor_exited", executor_id=run.id, message=message)
        self.runs.pop((run.framework_id, run.id), None)
        if run.stream is not None:
            run.stream.close()
        self.host.executor_terminated(run, status, message)

    def environment(self, run: ExecutorRun) -> dict[str, str]:
        env = self.host.executor_base_environment(run)
        grace = self.host.kill_grace_period
        env.update(
            {
                "MESOS_FRAMEWORK_ID": run.framework_id,
                "MESOS_EXECUTOR_ID": run.id,
                "MESOS_DIRECTORY": str(run.sandbox),
                "MESOS_SANDBOX": str(run.sandbox),
                "MESOS_CHECKPOINT": "1" if run.framework_info.get("checkpoint") else "0",
                "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{grace:g}secs",
                "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            }
        )
        command_env = (run.info.get("command") or {}).get("environment") or {}
        for var in command_env.get("variables") or []:
            if var.get("type", "VALUE") == "VALUE" and isinstance(var.get("name"), str):
                env[var["name"]] = str(var.get("value", ""))
        return env

    # -- the agent's requests -------------------------------------------------------------------

    def kill_task(self, run: ExecutorRun, task_id: str, kill_policy: Any) -> list[str]:
        """KILL a task in the executor. If it has not subscribed yet, the task's launch is
        dropped instead; the ids of the tasks dropped (its whole group) are returned."""
        if run.stream is not None:
            kill: dict[str, Any] = {"task_id": {"value": task_id}}
            if kill_policy:
                kill["kill_policy"] = kill_policy
            run.stream.send({"type": "KILL", "kill": kill})
            return []
        for event in run.pending:
            ids = launched_task_ids(event)
            if task_id in ids:
                run.pending.remove(event)
                return ids
        return []

    def acknowledged(self, framework_id: str, executor_id: str, task_id: str, uid: str) -> None:
        run = self.runs.get((framework_id, executor_id))
        if run is not None:
            run.deliver(
                {
                    "type": "ACKNOWLEDGED",
                    "acknowledged": {"task_id": {"value": task_id}, "uuid": uid},
                }
            )

    def framework_message(self, framework_id: str, executor_id: str, data: str) -> bool:
        """A scheduler's MESSAGE to this executor; False if it is not one of ours."""
        run = self.runs.get((framework_id, executor_id))
        if run is None:
            return False
        run.deliver({"type": "MESSAGE", "message": {"data": data}})
        return True

    def shutdown(self, framework_id: str, executor_id: str | None = None) -> None:
        """SHUTDOWN the framework's executors (or just one), killing them after the grace
        period; one that has not subscribed yet is killed at once."""
        for (fid, eid), run in list(self.runs.items()):
            if fid != framework_id or (executor_id is not None and eid != executor_id):
                continue
            self._shutdown(run)

    def shutdown_all(self) -> None:
        for run in list(self.runs.values()):
            self._shutdown(run)

    def _shutdown(self, run: ExecutorRun) -> None:
        if run.shutting_down:
            return
        run.shutting_down = True
        log.info("executor_shutdown", executor_id=run.id, framework_id=run.framework_id)
        if run.stream is not None:
            run.stream.send({"type": "SHUTDOWN"})
            self._kill_later(run, self.host.kill_grace_period)
        elif run.process is not None:
            self._kill_later(run, 0)
        # else: _run sees shutting_down before or right after spawning

    def _kill_later(self, run: ExecutorRun, delay: float) -> None:
        process = run.process
        if process is None:
            return

        def kill() -> None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

        asyncio.get_running_loop().call_later(delay, kill)

    # -- the executor's calls -------------------------------------------------------------------

    def subscribe(self, call: dict[str, Any]) -> ExecutorRun:
        """SUBSCRIBE: the executor's stream starts with SUBSCRIBED, then what waited for it."""
        sub_message(call, "subscribe")
        run = self._caller(call)
        if run.stream is not None:
            run.stream.close()  # a re-subscription replaces the old connection
        run.stream = stream = EventStream()
        stream.send(
            {
                "type": "SUBSCRIBED",
                "subscribed": {
                    "executor_info": run.info,
                    "framework_info": run.framework_info,
                    "agent_info": self.host.agent_info(),
                    "container_id": {"value": run.container_id},
                },
            }
        )
        for event in run.pending:
            stream.send(event)
        run.pending.clear()
        if run.shutting_down:
            stream.send({"type": "SHUTDOWN"})
        log.info("executor_subscribed", executor_id=run.id, framework_id=run.framework_id)
        return run

    def update(self, call: dict[str, Any]) -> None:
        """UPDATE: checked as Mesos checks it, then handed to the agent."""
        run = self._caller(call)
        status = sub_message(call, "update").get("status")
        if not isinstance(status, dict):
            raise InvalidCall("Expecting 'update.status' to be present")
        id_of(status, "task_id", "update.status")
        if status.get("state") not in TASK_STATES:
            raise InvalidCall(f"'update.status.state' {status.get('state')!r} is not a TaskState")
        if not isinstance(status.get("uuid"), str) or not status["uuid"]:
            raise InvalidCall("Expecting 'uuid' to be present")
        status_executor = (status.get("executor_id") or {}).get("value", run.id)
        if status_executor != run.id:
            raise InvalidCall(
                f"ExecutorID in Call: {run.id} does not match ExecutorID in TaskStatus:"
                f" {status_executor}"
            )
        if status.get("source", "SOURCE_EXECUTOR") != "SOURCE_EXECUTOR":
            raise InvalidCall(
                f"Received Call from executor {run.id} of framework {run.framework_id} with"
                " invalid source, expecting 'SOURCE_EXECUTOR'"
            )
        if status.get("state") == "TASK_STAGING":
            raise InvalidCall(
                f"Received TASK_STAGING from executor {run.id} of framework {run.framework_id}"
                " which is not allowed"
            )
        self.host.executor_update(run, status)

    def _caller(self, call: dict[str, Any]) -> ExecutorRun:
        fid = id_of(call, "framework_id")
        eid = id_of(call, "executor_id")
        run = self.runs.get((fid, eid))
        if run is None:
            if not any(key[0] == fid for key in self.runs):
                raise InvalidCall("Framework cannot be found")
            raise InvalidCall("Executor cannot be found")
        return run


def launched_task_ids(event: dict[str, Any]) -> list[str]:
    """The ids of the tasks a LAUNCH or LAUNCH_GROUP event carries."""
    if event.get("type") == "LAUNCH":
        return [event["launch"]["task"]["task_id"]["value"]]
    if event.get("type") == "LAUNCH_GROUP":
        return [t["task_id"]["value"] for t in event["launch_group"]["task_group"]["tasks"]]
    return []


async def handle(request: web.Request, executors: Executors) -> web.StreamResponse:
    """POST /api/v1/executor, with Mesos' status codes and messages for bad calls."""
    call = await read_call(request)
    if isinstance(call, web.Response):
        return call
    kind = call.get("type")
    if kind is None:
        return text(400, "Expecting 'type' to be present")
    if kind not in EXECUTOR_CALLS:
        return text(400, f"Failed to validate executor::Call: Unknown call type {kind!r}")
    try:
        if kind == "SUBSCRIBE":
            if not accepts_json(request):
                return text(406, "Expecting 'Accept' to allow application/json")
            run = executors.subscribe(call)
            stream = run.stream
            assert stream is not None

            def closed() -> None:
                if run.stream is stream:
                    run.stream = None
                    log.info("executor_disconnected", executor_id=run.id)

            return await serve_stream(request, stream, {}, closed)
        if kind == "UPDATE":
            executors.update(call)
        elif kind == "MESSAGE":
            id_of(call, "framework_id")
            id_of(call, "executor_id")
            executors.host.executor_message(call)
    except InvalidCall as e:
        return text(e.status, str(e))
    except ValueError as e:
        return text(400, str(e))
    return web.Response(status=202)

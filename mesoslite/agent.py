"""The mesoslite agent: registers with the master and runs tasks as local processes.

Each task's CommandInfo runs the way Mesos' command executor runs it
(src/launcher/executor.cpp): `shell` (the default) as `/bin/sh -c <value>`, otherwise `value` is
the executable and `arguments` its argv; a shell command that is one simple command runs as
`exec <command>` (mesoslite.containment), so the shell does not stay between the agent and the
command. The process gets its own session (process group) and a sandbox folder
`<work-dir>/slaves/<agent>/frameworks/<framework>/executors/<task>/runs/<run>` as working
directory, with its output in `stdout` and `stderr` there. Its environment is the agent's
(without MESOSLITE_AGENT_CREDENTIAL and MESOSLITE_CREDENTIALS: a task never learns where the
agent's secret is), then MESOS_TASK_ID, MESOS_FRAMEWORK_ID, MESOS_AGENT_ID, MESOS_EXECUTOR_ID,
MESOS_SANDBOX (and MESOS_DIRECTORY), MESOS_ALLOCATION_ROLE, MESOS_AGENT_ENDPOINT, HOST, and for
the task's ports PORTS (comma-separated), PORT0, PORT1, ... and PORT (= PORT0), then
CommandInfo.environment, which wins. Status updates: TASK_STARTING, TASK_RUNNING once spawned,
then TASK_FINISHED (exit 0), TASK_FAILED (non-zero exit or a signal,
REASON_COMMAND_EXECUTOR_FAILED; a spawn failure is REASON_CONTAINER_LAUNCH_FAILED;
`max_completion_time` reached is REASON_MAX_COMPLETION_TIME_REACHED) or TASK_KILLED; messages
say "Command exited with status N" or "Command terminated with signal S". A kill sends SIGTERM
to the task's process group, then SIGKILL after the grace period (the KILL's or the task's
`kill_policy`, else `--kill-grace-period`, 3 s like the command executor). Once a task's process
exits, whatever is left of its process group is killed too. A task with a `health_check` is
checked as Mesos' command executor checks it (mesoslite.health): TASK_RUNNING updates with
`healthy`, and a kill once it fails too many checks in a row.

An agent that shuts down (SIGTERM, SIGINT) stops its tasks the same way and reports each as
TASK_KILLED with REASON_EXECUTOR_TERMINATED and a message starting "Agent shut down", as
Mesos' command executor reports TASK_KILLED for a task it kills because it is shut down
(src/launcher/executor.cpp); it waits for those updates to reach the master, then
unregisters. A framework learns that its task ended without being asked to (a Mantis master
replaces the worker) and the master keeps the update for it until acknowledged. A RUN_TASK
that comes while the agent shuts down is ignored, as Mesos' agent does (Slave::run): the master
reports it TASK_LOST when the agent unregisters.

Containment (mesoslite.containment): on Linux a task also dies with its agent
(PR_SET_PDEATHSIG), every task's process group is recorded in the work dir, and an agent that
starts SIGKILLs the recorded groups an earlier agent left running; the work dir is locked so
that one agent at a time uses it.

Resources are accounted, not isolated: nothing stops a task from using more CPU, memory, disk
or ports than it was given. The agent only refuses a task that would take its accounted total
beyond `--resources`.

Master <-> agent protocol (HTTP/1.1 on loopback, JSON, RecordIO framing as the scheduler API):

- The agent opens `POST <master>/mesoslite/api/v1/agent` with
  `{"type": "REGISTER", "register": {"agent_info": {"id"?, "hostname", "port", "resources",
  "attributes"}, "tasks": [{"framework_info", "task", "state", "updates": [TaskStatus]}],
  "executors": [{"framework_info", "executor_info"}]}}`
  and keeps the response open: a chunked RecordIO stream of commands, with the header
  `Mesoslite-Agent-Session`. `id` and `tasks` are sent when re-registering (after the stream
  broke, or the master restarted): every task the agent still knows, its latest state, and
  its status updates not yet acknowledged by the framework.
- Master -> agent events on that stream: REGISTERED {agent_id, master_info,
  ping_interval_seconds}; PING {seq}; RUN_TASK {framework_info, task: TaskInfo};
  RUN_TASK_GROUP {framework_info, executor, task_group}; SHUTDOWN_EXECUTOR {framework_id,
  executor_id}; KILL_TASK {framework_id, task_id, kill_policy?}; SHUTDOWN_FRAMEWORK {framework_id};
  ACKNOWLEDGE {framework_id, task_id, uuid}; FRAMEWORK_MESSAGE {framework_id, executor_id,
  data}; ERROR {message}.
- Agent -> master calls, each its own POST to the same path with `agent_id` and the session
  header, answered 202: UPDATE {updates: [{framework_id, status}]} (status updates, sent at
  once, in order; kept until ACKNOWLEDGEd and re-reported on re-registration); PONG {seq};
  EXECUTOR_MESSAGE {framework_id, executor_id, data}; EXECUTOR_EXITED {framework_id,
  executor_id, status?}; UNREGISTER (clean shutdown). A 404 or
  409 (the master does not know this agent or session) makes the agent re-register.
- Authentication: with `--credential PATH` (or MESOSLITE_AGENT_CREDENTIAL naming the file, so
  that the path stays out of `ps`), a JSON `{"principal": ..., "secret": ...}` as Mesos'
  agent `--credential`, every call carries HTTP Basic credentials, for a master started with
  `--authenticate-agents`. A 401 means the master refused them: the agent logs
  `agent_authentication_refused` once, stops its tasks and exits 1, as Mesos' agent exits
  when the master refuses its authentication (Slave::_authenticate in src/slave/slave.cpp);
  a master it cannot reach is retried.
- Masters elected in ZooKeeper (`--master zk://host:port[,host:port]/path`, mesoslite.zk):
  the agent follows the group as Mesos' agent follows its master detector, registers with the
  leader, and re-registers with its tasks whenever another master leads. A standby's 307 (to
  the leader's same path) is followed for the next attempt, a 503 (no leader yet) retried.
- Liveness: the master pings every `--agent-ping-timeout` seconds; an agent that leaves
  `--max-agent-ping-timeouts` pings in a row unanswered is removed. The agent reconnects with
  back-off (0.1 s doubling to `--reconnect-backoff-max`) whenever the stream ends, and also
  when no event (pings included) came for 5 ping intervals.

The agent also serves, on `--host`/`--port` (an ephemeral port by default), Mesos' executor
API `POST /api/v1/executor` (mesoslite.executor_api: custom executors from TaskInfo.executor
and the default executor of task groups, RUN_TASK_GROUP from the master; an executor's exit is
EXECUTOR_EXITED to the master), `GET /state` (Mesos' agent shape: frameworks, their executors
and each one's sandbox `directory`), `GET /health`, and the sandboxes through `/files/browse`,
`/files/read` and `/files/download` (mesoslite.files). CommandInfo.uris are fetched into the
sandbox before a task or executor starts (mesoslite.fetcher).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import orjson
import structlog
from aiohttp import web

from common import logs
from mesoslite import executor_api, fetcher, files, health
from mesoslite.auth import (
    AGENT_CREDENTIAL_ENV,
    CREDENTIALS_ENV,
    Credential,
    CredentialsError,
    load_credential,
)
from mesoslite.containment import TaskGroups, exec_form, lock_work_dir
from mesoslite.flags import positive, zk_url
from mesoslite.protocol import (
    DEFAULT_KILL_GRACE_SECONDS,
    ERROR,
    FAILED,
    FINISHED,
    KILLED,
    KILLING,
    LOST,
    MESOS_VERSION,
    REASON_COMMAND_EXECUTOR_FAILED,
    REASON_CONTAINER_LAUNCH_FAILED,
    REASON_EXECUTOR_TERMINATED,
    REASON_MAX_COMPLETION_TIME_REACHED,
    REASON_TASK_HEALTH_CHECK_STATUS_UPDATED,
    REASON_TASK_INVALID,
    REASON_TASK_KILLED_DURING_LAUNCH,
    RUNNING,
    SOURCE_AGENT,
    SOURCE_EXECUTOR,
    STAGING,
    STARTING,
    TASK_KILLING_STATE,
    TERMINAL,
    duration_seconds,
    framework_role,
    has_capability,
    id_of,
    task_status,
)
from mesoslite.recordio import Decoder
from mesoslite.resources import (
    Attributes,
    ResourceError,
    Resources,
    attributes_to_mesos,
    parse_attributes,
)
from mesoslite.state import resources_json
from mesoslite.zk import MasterGroup, ZkUrl, is_zk

log = structlog.get_logger()

AGENT_PATH = "/mesoslite/api/v1/agent"
SESSION_HEADER = "Mesoslite-Agent-Session"
MAX_PORT_VARIABLES = 256
PRIVATE_ENV = frozenset({AGENT_CREDENTIAL_ENV, CREDENTIALS_ENV})
"""The agent's variables its tasks do not inherit."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    master: str = "http://127.0.0.1:5050"
    resources: Resources = field(default_factory=lambda: Resources.parse(DEFAULT_RESOURCES))
    attributes: Attributes = ()
    work_dir: Path = Path("mesoslite-agent")
    hostname: str = "127.0.0.1"
    host: str = "127.0.0.1"
    port: int = 0
    kill_grace_period: float = DEFAULT_KILL_GRACE_SECONDS
    reconnect_backoff_max: float = 2.0
    credential: Credential | None = None  # presented to the master on every call


DEFAULT_RESOURCES = "cpus:4;mem:8192;disk:10000;ports:[31000-32000]"
COMPLETED_EXECUTORS_KEPT = 150  # as Mesos' agent --max_completed_executors_per_framework


@dataclass(eq=False)
class TaskRun:
    """A task on this agent, from RUN_TASK until its terminal update is acknowledged."""

    framework_info: dict[str, Any]
    info: dict[str, Any]
    resources: Resources
    state: str = STAGING
    updates: deque[dict[str, Any]] = field(default_factory=deque)  # not yet acknowledged
    sandbox: Path | None = None
    process: TaskProcess | None = None
    kill_requested: bool = False  # by the master
    agent_shutdown: bool = False  # stopped because the agent shuts down
    killing: bool = False
    kill_grace: float | None = None
    timed_out: bool = False
    unhealthy: bool = False  # killed for failing its health check (mesoslite.health)
    executor_id: str | None = None  # run by this custom or default executor (executor_api)
    launched_at: float = field(default_factory=time.monotonic)

    @property
    def framework_id(self) -> str:
        return str(self.framework_info["id"]["value"])

    @property
    def id(self) -> str:
        return str(self.info["task_id"]["value"])

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def kill_pending(self) -> bool:
        return (self.kill_requested or self.agent_shutdown) and not self.killing


class AuthenticationRefused(RuntimeError):
    """The master answered 401: it does not accept this agent's credential (or its lack)."""


class Redirected(ValueError):
    """A standby master answered 307: `location` is the leader's URL of the same call."""

    def __init__(self, location: str) -> None:
        super().__init__(f"redirected to {location}")
        self.location = location


def master_url(text: str) -> str:
    """`host:port` or a URL, as a base URL without a trailing slash."""
    text = text.strip().rstrip("/")
    return text if "://" in text else f"http://{text}"


def leader_url(info: dict[str, Any]) -> str | None:
    """The base URL of a master from its MasterInfo's address, as pymesos' detector reads it."""
    address = info.get("address") or {}
    ip, port = address.get("ip"), address.get("port")
    return f"http://{ip}:{port}" if ip and port else None


def _find_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # looked up once, in the agent
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGKILL this process when the agent dies."""
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def command_argv(command: dict[str, Any]) -> tuple[str, list[str]]:
    """(executable, argv) for a CommandInfo, as the command executor does (a simple shell
    command `exec`s, see mesoslite.containment.exec_form)."""
    value = str(command["value"])
    if command.get("shell", True):
        return "/bin/sh", ["/bin/sh", "-c", exec_form(value)]
    arguments = [str(a) for a in command.get("arguments") or []]
    return value, arguments or [value]


def port_variables(resources: Resources) -> dict[str, str]:
    ports: list[int] = []
    for begin, end in resources.flatten().ports:  # reserved ports too
        ports.extend(range(begin, min(end, begin + MAX_PORT_VARIABLES) + 1))
        if len(ports) >= MAX_PORT_VARIABLES:
            break
    ports = ports[:MAX_PORT_VARIABLES]
    env = {f"PORT{i}": str(p) for i, p in enumerate(ports)}
    if ports:
        env["PORTS"] = ",".join(str(p) for p in ports)
        env["PORT"] = str(ports[0])
    return env


@functools.cache
def _pdeathsig_prefix() -> tuple[str, ...]:
    """`setpriv --pdeathsig KILL --` if it works here: PR_SET_PDEATHSIG without a preexec_fn.

    A preexec_fn makes Python fork without vfork and run code in the child: about 17 ms per
    task instead of 3 ms (measured here), so the agent prefers util-linux's setpriv, whose
    setting survives its exec of the command.
    """
    if _PRCTL is None:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    try:
        probe = subprocess.run(
            [setpriv, "--pdeathsig", "KILL", "--", "true"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return (setpriv, "--pdeathsig", "KILL", "--") if probe.returncode == 0 else ()


def _spawn_sync(
    executable: str,
    argv: list[str],
    sandbox: Path,
    env: dict[str, str],
    spawned: Callable[[int], None] | None,
) -> subprocess.Popen[bytes]:
    if "/" not in executable and shutil.which(executable, path=env.get("PATH")) is None:
        raise FileNotFoundError(f"{executable!r} not found on PATH")
    if "/" in executable and not os.access(executable, os.X_OK):
        raise FileNotFoundError(f"{executable!r} is not an executable file")
    sandbox.mkdir(parents=True, exist_ok=True)
    prefix = _pdeathsig_prefix()
    preexec = None
    if prefix and argv and argv[0] == executable:
        argv, executable = [*prefix, *argv], prefix[0]
    elif _PRCTL is not None:
        preexec = _die_with_parent
    with open(sandbox / "stdout", "ab") as out, open(sandbox / "stderr", "ab") as err:
        popen = subprocess.Popen(
            argv,
            executable=executable,
            cwd=sandbox,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=preexec,
        )
    if spawned is not None:
        spawned(popen.pid)
    return popen


_spawner: ThreadPoolExecutor | None = None
SPAWN_THREADS = 2


async def spawn(
    executable: str,
    argv: list[str],
    sandbox: Path,
    env: dict[str, str],
    spawned: Callable[[int], None] | None = None,
) -> TaskProcess:
    """Start a task's process: own session, sandbox as cwd, stdout/stderr files in it;
    `spawned(pid)` is called on the spawning thread once it runs.

    The fork and exec happen on a small thread pool: done on the event loop they would stall
    it for milliseconds per task (pings, updates) and run about half as fast (measured here).
    On Linux the process gets SIGKILL when the agent dies (PR_SET_PDEATHSIG), through
    `setpriv` when argv[0] is the executable itself, else through a preexec_fn.
    """
    global _spawner
    if _spawner is None:
        _spawner = ThreadPoolExecutor(SPAWN_THREADS, thread_name_prefix="mesoslite-spawn")
    loop = asyncio.get_running_loop()
    popen = await loop.run_in_executor(
        _spawner, _spawn_sync, executable, argv, sandbox, env, spawned
    )
    return TaskProcess(popen)


class TaskProcess:
    """A task's process, waited for without a thread per child: a pidfd on Linux, else polls."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None

    async def wait(self) -> int:
        """Its exit status (negative: killed by that signal). Only one waiter at a time."""
        if self.returncode is not None:
            return self.returncode
        loop = asyncio.get_running_loop()
        fd = _pidfd_open(self.pid)
        if fd is not None:
            exited: asyncio.Future[None] = loop.create_future()

            def readable() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(fd, readable)
            try:
                await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        else:
            delay = 0.01
            while self.popen.poll() is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        self.returncode = self.popen.wait()
        return self.returncode


def _pidfd_open(pid: int) -> int | None:
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


class MesosliteAgent:
    """One agent: the registration loop, the task runner and the status-update sender."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.zk = ZkUrl.parse(config.master) if is_zk(config.master) else None
        self.url = "" if self.zk is not None else master_url(config.master) + AGENT_PATH
        self._leader: str | None = None  # the agent API of the leader ZooKeeper names
        self._leader_moved = asyncio.Event()
        self._redirect: str | None = None  # a standby's 307, for the next attempt
        self._group: MasterGroup | None = None
        self.id: str | None = None
        self.session: str | None = None
        self.endpoint_port = config.port
        self.tasks: dict[tuple[str, str], TaskRun] = {}
        self.completed: deque[TaskRun] = deque(maxlen=COMPLETED_EXECUTORS_KEPT)  # for `/state`
        self.start_time = time.time()
        self.registrations = 0
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        self._outbox_ready = asyncio.Event()
        self._posting = 0  # updates taken from the outbox, not yet answered by the master
        self.groups = TaskGroups(config.work_dir)
        self._http: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._reconnect = asyncio.Event()
        self._refused = asyncio.Event()
        self.executors = executor_api.Executors(self, config.work_dir, command_argv, self._spawn)

    # -- accounting -----------------------------------------------------------------------------

    def used(self) -> Resources:
        total = self.executors.resources()
        for run in self.tasks.values():
            if not run.terminal:
                total = total + run.resources
        return total

    # -- main loops -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stay registered until `stop` is set, then kill every task and unregister.

        First it locks the work dir (OSError if another agent holds it) and kills the task
        process groups an earlier agent recorded there and left running. If the master refuses
        the agent's credential it stops its tasks the same way and raises AuthenticationRefused.
        """
        lock = lock_work_dir(self.config.work_dir)
        try:
            self.groups.reap()
            await self._run(stop)
        finally:
            os.close(lock)

    async def _run(self, stop: asyncio.Event) -> None:
        if self.zk is not None:
            self._group = MasterGroup(self.zk, self._leader_changed)
            await self._group.start()
        try:
            await self._serve_master(stop)
        finally:
            if self._group is not None:
                await self._group.stop()
        if self._refused.is_set():
            raise AuthenticationRefused(f"master {self.config.master} refused authentication")

    async def _serve_master(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=5.0)
        connector = aiohttp.TCPConnector(limit=16, force_close=False)
        credential = self.config.credential
        headers = {} if credential is None else {"Authorization": credential.authorization()}
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, headers=headers
        ) as http:
            self._http = http
            sender = self._spawn(self._send_loop())
            registration = self._spawn(self._registration_loop())
            stopped = asyncio.ensure_future(stop.wait())
            refused = asyncio.ensure_future(self._refused.wait())
            await asyncio.wait({stopped, refused}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            refused.cancel()
            self._stopping = True
            await self.shutdown()
            registration.cancel()
            sender.cancel()
            await asyncio.gather(registration, sender, return_exceptions=True)
            self._http = None

    def _refuse(self) -> None:
        """The master answered 401: say why once, and stop (see `run`)."""
        if self._refused.is_set():
            return
        self.session = None
        self._refused.set()
        credential = self.config.credential
        log.error(
            "agent_authentication_refused",
            master=self.config.master,
            principal=None if credential is None else credential.principal,
            fix=(
                "the master requires agent authentication (--authenticate-agents): give the"
                f" agent --credential PATH or {AGENT_CREDENTIAL_ENV}"
                if credential is None
                else "the principal or secret is not in the master's --credentials"
            ),
        )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _leader_changed(self) -> None:
        """ZooKeeper names another leader (or none): an agent registered elsewhere moves to it."""
        leader = None if self._group is None else self._group.leader
        url = None if leader is None else leader_url(leader)
        new = None if url is None else url + AGENT_PATH
        if new == self._leader:
            return
        self._leader = new
        log.info("agent_leader_detected", leader=None if leader is None else leader.get("pid"))
        self._leader_moved.set()
        if new is not None and self.url != new:
            self._reconnect.set()

    async def _next_master(self) -> str:
        """The agent API to register with: after a 307 its location, else the leader that
        ZooKeeper names (waiting for one), else `--master`'s."""
        if self._redirect is not None:
            url, self._redirect = self._redirect, None
            return url
        if self.zk is None:
            return master_url(self.config.master) + AGENT_PATH
        if self._leader is None:
            log.info("agent_waiting_for_leader", zk=str(self.zk))
        while self._leader is None:
            self._leader_moved.clear()
            await self._leader_moved.wait()
        return self._leader

    async def _pause(self, seconds: float) -> None:
        """The back-off between attempts, cut short when ZooKeeper names another leader."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._leader_moved.wait(), seconds)

    async def _registration_loop(self) -> None:
        backoff = 0.1
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            self._leader_moved.clear()
            try:
                self.url = await self._next_master()
                await self._register_and_follow()
                failures = 0
            except AuthenticationRefused:
                self._refuse()
                return
            except Redirected as e:
                log.info("agent_redirected", master=self.url, to=e.location)
                self._redirect = e.location
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
                failures += 1
                level = log.info if failures == 1 or failures % 50 == 0 else log.debug
                level(
                    "agent_master_unreachable",
                    master=self.config.master,
                    error=str(e),
                    attempts=failures,
                )
            except Exception:
                log.exception("agent_stream_failed")
            self.session = None
            if time.monotonic() - started > 5:
                backoff = 0.1  # it was up for a while: this is a fresh failure
            await self._pause(backoff)
            backoff = min(backoff * 2, self.config.reconnect_backoff_max)

    def registration_body(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "hostname": self.config.hostname,
            "port": self.endpoint_port,
            "resources": self.config.resources.to_mesos(),
            "attributes": attributes_to_mesos(self.config.attributes),
        }
        if self.id is not None:
            info["id"] = {"value": self.id}
        tasks = [
            {
                "framework_info": run.framework_info,
                "task": run.info,
                "state": run.state,
                "updates": list(run.updates),
            }
            for run in self.tasks.values()
        ]
        executors = [
            {"framework_info": run.framework_info, "executor_info": run.info}
            for run in self.executors.runs.values()
        ]
        register = {"agent_info": info, "tasks": tasks, "executors": executors}
        return {"type": "REGISTER", "register": register}

    async def _register_and_follow(self) -> None:
        assert self._http is not None
        body = orjson.dumps(self.registration_body())
        self._outbox.clear()  # everything unacknowledged is in the registration
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        async with self._http.post(
            self.url, data=body, headers=headers, allow_redirects=False
        ) as resp:
            if resp.status == 401:
                raise AuthenticationRefused(await resp.text())
            if resp.status == 307 and "Location" in resp.headers:
                raise Redirected(urljoin(self.url, resp.headers["Location"]))
            if resp.status != 200:
                text = await resp.text()
                raise ValueError(f"registration refused: HTTP {resp.status}: {text}")
            session = resp.headers.get(SESSION_HEADER)
            decoder = Decoder()
            idle_limit = 30.0  # until REGISTERED says how often pings come
            self._reconnect.clear()
            while True:
                read = asyncio.ensure_future(resp.content.readany())
                nudge = asyncio.ensure_future(self._reconnect.wait())
                done, _ = await asyncio.wait(
                    {read, nudge}, timeout=idle_limit, return_when=asyncio.FIRST_COMPLETED
                )
                if read not in done:
                    read.cancel()
                    nudge.cancel()
                    why = "asked to" if nudge in done else "no event from the master"
                    log.info("agent_reconnecting", reason=why)
                    return
                nudge.cancel()
                chunk = read.result()
                if not chunk:
                    log.info("agent_stream_ended", agent_id=self.id)
                    return
                for record in decoder.feed(chunk):
                    event = orjson.loads(record)
                    if event.get("type") == "REGISTERED":
                        idle_limit = 5 * float(event["registered"].get("ping_interval_seconds", 15))
                        self._on_registered(event["registered"], session)
                    else:
                        self.handle_event(event)

    def _on_registered(self, registered: dict[str, Any], session: str | None) -> None:
        self.id = registered["agent_id"]["value"]
        self.session = session
        self.registrations += 1
        log.info(
            "agent_registered",
            agent_id=self.id,
            tasks=len(self.tasks),
            registrations=self.registrations,
        )
        if self._outbox:
            self._outbox_ready.set()

    async def _send_loop(self) -> None:
        """Post queued status updates to the master, in order, in batches."""
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            if self.session is None or not self._outbox:
                continue
            batch, self._outbox = self._outbox, []
            self._posting = len(batch)
            session = self.session
            body = {
                "type": "UPDATE",
                "agent_id": {"value": self.id},
                "update": {
                    "updates": [{"framework_id": {"value": fid}, "status": s} for fid, s in batch]
                },
            }
            delay = 0.05
            try:
                while self.session == session:
                    status = await self._post(body, session)
                    if status == 202 or status in (307, 400, 404, 409, 503):
                        break  # delivered, or the session is over (re-registration carries them)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            finally:
                self._posting = 0

    async def _post(self, body: dict[str, Any], session: str | None) -> int:
        """POST a call; the HTTP status, or 0 if the master could not be reached."""
        if self._http is None or session is None:
            return 0
        headers = {"Content-Type": "application/json", SESSION_HEADER: session}
        try:
            async with self._http.post(
                self.url,
                data=orjson.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=10),
                allow_redirects=False,
            ) as resp:
                if resp.status == 401:
                    self._refuse()
                elif resp.status >= 300:
                    text = await resp.text()
                    log.warning(
                        "agent_call_rejected", type=body["type"], status=resp.status, error=text
                    )
                    # Unknown agent or session, or not the leader: re-register (with the leader).
                    if resp.status in (307, 404, 409, 503) and self.session == session:
                        self.session = None
                        self._reconnect.set()
                return resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            log.info("agent_call_failed", type=body["type"], error=repr(e))
            return 0

    def _call_soon(self, body: dict[str, Any]) -> None:
        self._spawn(self._post(body, self.session))

    # -- events from the master -----------------------------------------------------------------

    def handle_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "PING":
            self._call_soon(
                {
                    "type": "PONG",
                    "agent_id": {"value": self.id},
                    "pong": {"seq": event["ping"]["seq"]},
                }
            )
        elif kind == "RUN_TASK":
            self.run_task(event["run_task"]["framework_info"], event["run_task"]["task"])
        elif kind == "KILL_TASK":
            kill = event["kill_task"]
            key = (kill["framework_id"]["value"], kill["task_id"]["value"])
            self.kill_task(
                key, duration_seconds((kill.get("kill_policy") or {}).get("grace_period"))
            )
        elif kind == "RUN_TASK_GROUP":
            group = event["run_task_group"]
            tasks = group["task_group"]["tasks"]
            self.run_task_group(group["framework_info"], group["executor"], tasks)
        elif kind == "SHUTDOWN_EXECUTOR":
            shutdown = event["shutdown_executor"]
            fid = shutdown["framework_id"]["value"]
            self.executors.shutdown(fid, shutdown["executor_id"]["value"])
        elif kind == "SHUTDOWN_FRAMEWORK":
            fid = event["shutdown_framework"]["framework_id"]["value"]
            log.info("framework_shutdown", framework_id=fid)
            self.executors.shutdown(fid)
            for key in [k for k in self.tasks if k[0] == fid]:
                self.kill_task(key, None)
        elif kind == "ACKNOWLEDGE":
            ack = event["acknowledge"]
            self.acknowledge((ack["framework_id"]["value"], ack["task_id"]["value"]), ack["uuid"])
        elif kind == "FRAMEWORK_MESSAGE":
            msg = event["framework_message"]
            fid, eid = msg["framework_id"]["value"], msg["executor_id"]["value"]
            if self.executors.framework_message(fid, eid, msg["data"]):
                return
            # The command executor ignores framework messages, as Mesos' does.
            log.info(
                "framework_message_ignored",
                framework_id=msg["framework_id"]["value"],
                executor_id=msg["executor_id"]["value"],
            )
        elif kind == "ERROR":
            log.error("master_error", message=event.get("error", {}).get("message"))
        else:
            log.warning("agent_unknown_event", type=kind)

    def acknowledge(self, key: tuple[str, str], status_uuid: str) -> None:
        run = self.tasks.get(key)
        if run is None:
            return
        for i, status in enumerate(run.updates):
            if status.get("uuid") == status_uuid:
                del run.updates[i]
                if run.executor_id is not None and status.get("source") == SOURCE_EXECUTOR:
                    self.executors.acknowledged(
                        run.framework_id, run.executor_id, key[1], status_uuid
                    )
                break
        if run.terminal and not run.updates:
            del self.tasks[key]
            self.completed.append(run)

    def _status(
        self,
        run: TaskRun,
        state: str,
        reason: str | None = None,
        message: str | None = None,
        source: str = SOURCE_EXECUTOR,
        healthy: bool | None = None,
    ) -> None:
        run.state = state
        status = task_status(
            run.id,
            state,
            agent_id=self.id,
            source=source,
            reason=reason,
            message=message,
            executor_id=run.executor_id or run.id,
        )
        if healthy is not None:
            status["healthy"] = healthy
        run.updates.append(status)
        self._outbox.append((run.framework_id, status))
        self._outbox_ready.set()
        log.debug("task_status", task_id=run.id, state=state, reason=reason)

    # -- tasks ----------------------------------------------------------------------------------

    def run_task(self, framework_info: dict[str, Any], info: dict[str, Any]) -> None:
        try:
            fid = id_of(framework_info, "id", "framework_info")
            tid = id_of(info, "task_id", "task")
            resources = Resources.from_mesos(info.get("resources") or [])
        except (ValueError, ResourceError) as e:
            log.error("run_task_malformed", error=str(e))
            return
        if self._stopping:  # as Mesos' agent (Slave::run): the master writes it off on UNREGISTER
            log.warning("run_task_ignored_agent_terminating", framework_id=fid, task_id=tid)
            return
        key = (fid, tid)
        old = self.tasks.get(key)
        if old is not None and not old.terminal:
            log.warning("run_task_duplicate", framework_id=fid, task_id=tid)
            return
        run = TaskRun(framework_info, info, resources)
        self.tasks[key] = run
        try:
            fits = self.config.resources.contains(self.used())
        except ResourceError:
            fits = False
        if not fits:
            self._status(
                run,
                ERROR,
                REASON_TASK_INVALID,
                source=SOURCE_AGENT,
                message=f"Task would take the agent beyond its resources {self.config.resources}",
            )
            return
        if "executor" in info:  # its executor reports TASK_STARTING (mesoslite.executor_api)
            run.executor_id = info["executor"]["executor_id"]["value"]
            launch = {"type": "LAUNCH", "launch": {"task": info}}
            run.sandbox = self.executors.launch(framework_info, info["executor"], launch).sandbox
            return
        self._status(run, STARTING)  # now, not when its turn to spawn comes
        self._spawn(self._launch(run))

    def _environment(self, run: TaskRun, sandbox: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        env.update(
            {
                "MESOS_TASK_ID": run.id,
                "MESOS_FRAMEWORK_ID": run.framework_id,
                "MESOS_EXECUTOR_ID": run.id,
                "MESOS_AGENT_ID": self.id or "",
                "MESOS_SLAVE_ID": self.id or "",
                "MESOS_SANDBOX": str(sandbox),
                "MESOS_DIRECTORY": str(sandbox),
                "MESOS_ALLOCATION_ROLE": framework_role(run.framework_info),
                "MESOS_AGENT_ENDPOINT": f"{self.config.host}:{self.endpoint_port}",
                "HOST": self.config.hostname,
            }
        )
        env.update(port_variables(run.resources))
        command_env = run.info.get("command", {}).get("environment") or {}
        for var in command_env.get("variables") or []:
            if var.get("type", "VALUE") == "VALUE" and isinstance(var.get("name"), str):
                env[var["name"]] = str(var.get("value", ""))
        return env

    def sandbox_of(self, run: TaskRun) -> Path:
        return (
            self.config.work_dir
            / "slaves"
            / (self.id or "unregistered")
            / "frameworks"
            / run.framework_id
            / "executors"
            / run.id
            / "runs"
            / str(uuid.uuid4())
        )

    async def _launch(self, run: TaskRun) -> None:
        if run.kill_requested or run.agent_shutdown:
            message = (
                "Agent shut down before launch" if run.agent_shutdown else "Killed before launch"
            )
            self._status(run, KILLED, REASON_TASK_KILLED_DURING_LAUNCH, message)
            return
        command = run.info.get("command") or {}
        sandbox = run.sandbox = self.sandbox_of(run)
        if not await self._fetch(run, command, sandbox):
            return
        try:
            executable, argv = command_argv(command)
            record = functools.partial(self._record_group, run.id)
            run.process = await spawn(
                executable, argv, sandbox, self._environment(run, sandbox), record
            )
        except (OSError, KeyError, ValueError) as e:
            log.info("task_launch_failed", task_id=run.id, error=str(e))
            self._status(run, FAILED, REASON_CONTAINER_LAUNCH_FAILED, f"Failed to launch: {e}")
            return
        log.debug("task_started", task_id=run.id, pid=run.process.pid, sandbox=str(sandbox))
        self._status(run, RUNNING)
        if run.kill_pending:  # a KILL came while the process was being spawned
            self._start_kill(run)
        limit = duration_seconds(run.info.get("max_completion_time"))
        timer = None
        if limit is not None:
            timer = asyncio.get_running_loop().call_later(limit, self._completion_timeout, run)
        checks = self._health_checks(run, sandbox)
        code = await run.process.wait()
        if timer is not None:
            timer.cancel()
        if checks is not None:
            checks.cancel()
        _signal_group(run.process.pid, signal.SIGKILL)  # leftovers of the task's session
        self.groups.remove(run.process.pid)
        self._finished(run, code)

    # -- tasks run by executors (mesoslite.executor_api) ----------------------------------------

    def run_task_group(
        self, framework_info: dict[str, Any], executor: dict[str, Any], tasks: list[dict[str, Any]]
    ) -> None:
        """RUN_TASK_GROUP: every task of the group, or none, goes to the executor at once."""
        fid = framework_info["id"]["value"]
        if self._stopping:
            log.warning("run_task_group_ignored_agent_terminating", framework_id=fid)
            return
        runs = []
        for info in tasks:
            key = (fid, info["task_id"]["value"])
            old = self.tasks.get(key)
            if old is not None and not old.terminal:
                log.warning("run_task_duplicate", framework_id=fid, task_id=key[1])
                return
            resources = Resources.from_mesos(info.get("resources") or [])
            run = TaskRun(framework_info, {**info, "executor": executor}, resources)
            run.executor_id = executor["executor_id"]["value"]
            runs.append(run)
        for run in runs:
            self.tasks[(fid, run.id)] = run
        launch = {"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": tasks}}}
        sandbox = self.executors.launch(framework_info, executor, launch).sandbox
        for run in runs:
            run.sandbox = sandbox

    def _kill_in_executor(self, run: TaskRun, grace: float | None) -> None:
        """KILL to the task's executor; a task still waiting for its executor (with the rest
        of its group) is dropped, as Mesos' agent drops a queued task."""
        assert run.executor_id is not None
        executor = self.executors.get(run.framework_id, run.executor_id)
        policy = {"grace_period": {"nanoseconds": int(grace * 1e9)}} if grace is not None else None
        dropped = [] if executor is None else self.executors.kill_task(executor, run.id, policy)
        for task_id in dropped or ([] if executor is not None else [run.id]):
            queued = self.tasks.get((run.framework_id, task_id))
            if queued is not None and not queued.terminal:
                message = "Killed before its executor started"
                self._status(queued, KILLED, REASON_TASK_KILLED_DURING_LAUNCH, message)

    @property
    def kill_grace_period(self) -> float:
        return self.config.kill_grace_period

    def executor_sandbox(self, framework_id: str, executor_id: str) -> Path:
        return (
            self.config.work_dir
            / "slaves"
            / (self.id or "unregistered")
            / "frameworks"
            / framework_id
            / "executors"
            / executor_id
            / "runs"
            / str(uuid.uuid4())
        )

    def executor_base_environment(self, run: executor_api.ExecutorRun) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        endpoint = f"{self.config.host}:{self.endpoint_port}"
        env.update(
            {
                "MESOS_AGENT_ID": self.id or "",
                "MESOS_SLAVE_ID": self.id or "",
                "MESOS_SLAVE_PID": f"slave({self.id})@{endpoint}",
                "MESOS_AGENT_ENDPOINT": endpoint,
                "MESOS_ALLOCATION_ROLE": framework_role(run.framework_info),
                "HOST": self.config.hostname,
            }
        )
        return env

    async def spawn_executor(
        self, run: executor_api.ExecutorRun, executable: str, argv: list[str], env: dict[str, str]
    ) -> TaskProcess:
        record = functools.partial(self._record_group, f"executor {run.id}")
        return await spawn(executable, argv, run.sandbox, env, record)

    def agent_info(self) -> dict[str, Any]:
        return {
            "id": {"value": self.id or ""},
            "hostname": self.config.hostname,
            "port": self.endpoint_port,
            "resources": self.config.resources.to_mesos(),
            "attributes": attributes_to_mesos(self.config.attributes),
        }

    def executor_update(self, executor: executor_api.ExecutorRun, status: dict[str, Any]) -> None:
        """An executor's UPDATE: kept until acknowledged and sent to the master in order."""
        task_id = status["task_id"]["value"]
        run = self.tasks.get((executor.framework_id, task_id))
        if run is None or run.executor_id != executor.id:
            raise ValueError(f"Task {task_id} is not known to executor {executor.id}")
        if run.terminal or any(u.get("uuid") == status["uuid"] for u in run.updates):
            return  # after its end, or a duplicate
        status = {
            **status,
            "agent_id": {"value": self.id},
            "executor_id": {"value": executor.id},
            "source": SOURCE_EXECUTOR,
        }
        status.setdefault("timestamp", time.time())
        run.state = status["state"]
        run.updates.append(status)
        self._outbox.append((run.framework_id, status))
        self._outbox_ready.set()

    def executor_terminated(
        self, executor: executor_api.ExecutorRun, status: int | None, message: str
    ) -> None:
        """Its unfinished tasks end as Mesos' agent ends them (Slave::executorTerminated):
        TASK_FAILED REASON_EXECUTOR_TERMINATED (REASON_CONTAINER_LAUNCH_FAILED if it never
        started; TASK_KILLED when the agent stops); the master learns it exited."""
        for run in list(self.tasks.values()):
            if run.executor_id != executor.id or run.framework_id != executor.framework_id:
                continue
            if run.terminal:
                continue
            if run.agent_shutdown:
                self._status(run, KILLED, REASON_EXECUTOR_TERMINATED, f"Agent shut down; {message}")
            elif executor.process is None:
                self._status(run, FAILED, REASON_CONTAINER_LAUNCH_FAILED, message, SOURCE_AGENT)
            else:
                self._status(run, FAILED, REASON_EXECUTOR_TERMINATED, message, SOURCE_AGENT)
        if executor.process is not None:
            _signal_group(executor.process.pid, signal.SIGKILL)  # what it left behind
            self.groups.remove(executor.process.pid)
        exited: dict[str, Any] = {
            "framework_id": {"value": executor.framework_id},
            "executor_id": {"value": executor.id},
        }
        if status is not None:
            exited["status"] = status
        self._call_soon(
            {"type": "EXECUTOR_EXITED", "agent_id": {"value": self.id}, "executor_exited": exited}
        )

    async def _fetch(self, run: TaskRun, command: dict[str, Any], sandbox: Path) -> bool:
        """Fetch CommandInfo.uris into the sandbox (mesoslite.fetcher); False once a failure
        is reported, as Mesos' agent reports one: TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED."""
        uris = fetcher.parse(command)
        if not uris:
            return True
        try:
            await asyncio.to_thread(fetcher.fetch_all, uris, sandbox, self.config.work_dir)
        except fetcher.FetchError as e:
            log.info("task_fetch_failed", task_id=run.id, uri=e.uri, error=str(e))
            self._status(run, FAILED, REASON_CONTAINER_LAUNCH_FAILED, str(e), SOURCE_AGENT)
            return False
        return True

    def _health_checks(self, run: TaskRun, sandbox: Path) -> asyncio.Task[Any] | None:
        """Start the task's health checks, if it has any (the master has validated them)."""
        spec = run.info.get("health_check")
        if spec is None or health.problem(spec) is not None:
            return None
        check = health.parse(spec)
        if check.kind == "COMMAND":
            executable, argv = command_argv(check.command)
            probe = health.command_probe(executable, argv, sandbox, self._environment(run, sandbox))
        elif check.kind == "HTTP":
            probe = health.http_probe(check.url)
        else:
            probe = health.tcp_probe(check.port)

        def report(healthy: bool, kill: bool) -> None:
            if run.terminal or run.killing or run.kill_requested:
                return  # as the command executor: no health updates once it is being killed
            log.info("task_health", task_id=run.id, healthy=healthy, kill=kill)
            self._status(run, RUNNING, REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, healthy=healthy)
            if kill:
                run.unhealthy = True
                self.kill_task((run.framework_id, run.id), None)

        return self._spawn(health.run_checks(check, probe, report, time.monotonic()))

    def _record_group(self, task_id: str, pgid: int) -> None:
        """On the spawning thread: a failure to record must not fail the launch."""
        try:
            self.groups.add(pgid, task_id)
        except OSError as e:
            log.warning("task_group_not_recorded", task_id=task_id, pgid=pgid, error=str(e))

    def _completion_timeout(self, run: TaskRun) -> None:
        if not run.terminal:
            run.timed_out = True
            self._start_kill(run)

    def _finished(self, run: TaskRun, code: int) -> None:
        message = (
            f"Command exited with status {code}"
            if code >= 0
            else f"Command terminated with signal {_signal_name(-code)}"
        )
        if run.timed_out:
            self._status(
                run,
                FAILED,
                REASON_MAX_COMPLETION_TIME_REACHED,
                f"Task exceeded its max_completion_time; {message}",
            )
        elif run.kill_requested:
            self._status(run, KILLED, None, message, healthy=False if run.unhealthy else None)
        elif run.agent_shutdown:
            self._status(run, KILLED, REASON_EXECUTOR_TERMINATED, f"Agent shut down; {message}")
        elif code == 0:
            self._status(run, FINISHED, None, message)
        else:
            self._status(run, FAILED, REASON_COMMAND_EXECUTOR_FAILED, message)

    def kill_task(self, key: tuple[str, str], grace: float | None) -> None:
        run = self.tasks.get(key)
        if run is None:
            status = task_status(
                key[1],
                LOST,
                agent_id=self.id,
                source=SOURCE_AGENT,
                message="Kill of a task unknown to the agent",
            )
            self._outbox.append((key[0], status))
            self._outbox_ready.set()
            return
        if run.terminal:
            return
        run.kill_requested = True
        if run.executor_id is not None:
            self._kill_in_executor(run, grace)
            return
        task_grace = duration_seconds((run.info.get("kill_policy") or {}).get("grace_period"))
        run.kill_grace = grace if grace is not None else task_grace
        if run.process is not None:
            self._start_kill(run)
        # else: _launch sees kill_requested before or right after spawning

    def _start_kill(self, run: TaskRun) -> None:
        if run.killing or run.process is None or run.process.returncode is not None:
            return
        run.killing = True
        if has_capability(run.framework_info, TASK_KILLING_STATE):
            self._status(run, KILLING)
        grace = run.kill_grace if run.kill_grace is not None else self.config.kill_grace_period
        pid = run.process.pid
        _signal_group(pid, signal.SIGTERM)
        process = run.process

        def escalate() -> None:
            if process.returncode is None:
                log.info("task_kill_escalated", task_id=run.id, grace=grace)
                _signal_group(pid, signal.SIGKILL)

        asyncio.get_running_loop().call_later(grace, escalate)

    async def shutdown(self) -> None:
        """Stop every task (a group SIGTERM, then SIGKILL after the grace period), wait for
        their terminal updates to reach the master while it answers, and unregister."""
        running = [r for r in self.tasks.values() if not r.terminal]
        for run in running:
            run.agent_shutdown = True
            if run.process is not None:
                self._start_kill(run)
            # else: _launch sees agent_shutdown before or right after spawning
        self.executors.shutdown_all()  # their tasks end with them (executor_terminated)
        deadline = time.monotonic() + self.config.kill_grace_period + 1.0
        while any(not r.terminal for r in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        flush_deadline = time.monotonic() + 2.0
        while (
            (self._outbox or self._posting)
            and self.session is not None
            and time.monotonic() < flush_deadline
        ):
            await asyncio.sleep(0.02)
        if self.session is not None:
            await self._post({"type": "UNREGISTER", "agent_id": {"value": self.id}}, self.session)
        log.info("agent_stopped", agent_id=self.id)

    # -- executor endpoint and state ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Mesos' agent `/state` (src/slave/http.cpp): frameworks with their executors, each
        task's command executor (its id the task's) with its sandbox `directory`, those whose
        task ended (and was acknowledged) under `completed_executors`."""
        frameworks: dict[str, dict[str, Any]] = {}
        for run, done in [
            *((r, False) for r in self.tasks.values()),
            *((r, True) for r in self.completed),
        ]:
            info = run.framework_info
            fw = frameworks.setdefault(
                run.framework_id,
                {
                    "id": run.framework_id,
                    "name": info.get("name", ""),
                    "user": info.get("user", ""),
                    "hostname": info.get("hostname", ""),
                    "role": framework_role(info),
                    "checkpoint": bool(info.get("checkpoint", False)),
                    "failover_timeout": info.get("failover_timeout", 0.0),
                    "executors": [],
                    "completed_executors": [],
                },
            )
            key = "completed_executors" if done else "executors"
            entry = self._executor_json(run)
            same = [e for e in fw[key] if run.executor_id and e["id"] == entry["id"]]
            if same:  # one entry per executor, with all its tasks
                same[0]["tasks"] += entry["tasks"]
                same[0]["completed_tasks"] += entry["completed_tasks"]
            else:
                fw[key].append(entry)
        return {
            "version": MESOS_VERSION,
            "build_user": "mesoslite",
            "start_time": self.start_time,
            "id": self.id,
            "pid": f"slave({self.id})@{self.config.host}:{self.endpoint_port}",
            "hostname": self.config.hostname,
            "master": self.config.master,
            "registered": self.session is not None,
            "capabilities": [],
            "resources": resources_json(self.config.resources),
            "used_resources": resources_json(self.used()),
            "reserved_resources": {
                role: resources_json(pool) for role, pool in self.config.resources.reserved
            },
            "unreserved_resources": resources_json(self.config.resources.unreserved()),
            "attributes": dict(self.config.attributes),
            "flags": {"work_dir": str(self.config.work_dir), "hostname": self.config.hostname},
            "frameworks": list(frameworks.values()),
            "completed_frameworks": [],
        }

    def _executor_json(self, run: TaskRun) -> dict[str, Any]:
        command = run.info.get("command") or {}
        task = {
            "id": run.id,
            "name": run.info.get("name", ""),
            "framework_id": run.framework_id,
            "executor_id": run.executor_id or "",
            "slave_id": self.id,
            "state": run.state,
            "resources": resources_json(run.resources),
            "pid": run.process.pid if run.process else None,
            "unacknowledged_updates": len(run.updates),
        }
        executor = run.info.get("executor")
        if run.executor_id is not None and isinstance(executor, dict):
            name = executor.get("name") or f"Executor {run.executor_id}"
        else:
            name = (
                f"Command Executor (Task: {run.id}) (Command: sh -c '{command.get('value', '')}')"
            )
        return {
            "id": run.executor_id or run.id,
            "name": name,
            "source": (executor or {}).get("source", run.id),
            "container": run.sandbox.name if run.sandbox else "",
            "directory": os.path.abspath(run.sandbox) if run.sandbox else "",
            "resources": resources_json(run.resources),
            "role": framework_role(run.framework_info),
            "tasks": [task] if not run.terminal else [],
            "queued_tasks": [],
            "completed_tasks": [task] if run.terminal else [],
        }

    def executor_message(self, call: dict[str, Any]) -> None:
        fid = id_of(call, "framework_id")
        executor_id = id_of(call, "executor_id")
        data = (call.get("message") or {}).get("data")
        if not isinstance(data, str):
            raise ValueError("Expecting 'message.data' (base64) to be present")
        self._call_soon(
            {
                "type": "EXECUTOR_MESSAGE",
                "agent_id": {"value": self.id},
                "executor_message": {
                    "framework_id": {"value": fid},
                    "executor_id": {"value": executor_id},
                    "data": data,
                },
            }
        )


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


AGENT_KEY = web.AppKey("agent", MesosliteAgent)


async def _executor_api(request: web.Request) -> web.StreamResponse:
    return await executor_api.handle(request, request.app[AGENT_KEY].executors)


async def _state(request: web.Request) -> web.Response:
    return web.json_response(
        request.app[AGENT_KEY].state(), dumps=lambda o: orjson.dumps(o).decode()
    )


async def _health(request: web.Request) -> web.Response:
    return web.Response(status=200)


def create_app(agent: MesosliteAgent) -> web.Application:
    app = web.Application()
    app[AGENT_KEY] = agent
    app.router.add_route("*", "/api/v1/executor", _executor_api)
    app.router.add_get("/state", _state)
    app.router.add_get("/state.json", _state)
    files.add_routes(app, agent.config.work_dir / "slaves")
    app.router.add_get("/health", _health)
    return app


async def serve(config: AgentConfig, ready: Callable[[MesosliteAgent], None] | None = None) -> None:
    """Run an agent until SIGTERM or SIGINT."""
    config.work_dir.mkdir(parents=True, exist_ok=True)
    prefix = _pdeathsig_prefix()  # probe once, before tasks arrive
    die_with_agent = "setpriv" if prefix else "preexec_fn" if _PRCTL is not None else "no"
    agent = MesosliteAgent(config)
    runner = web.AppRunner(create_app(agent), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    if sockets:
        agent.endpoint_port = sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "agent_started",
        master=config.master,
        resources=str(config.resources),
        attributes=dict(config.attributes),
        work_dir=str(config.work_dir),
        endpoint=f"{config.host}:{agent.endpoint_port}",
        tasks_die_with_agent=die_with_agent,
        principal=None if config.credential is None else config.credential.principal,
    )
    if ready is not None:
        ready(agent)
    try:
        await agent.run(stop)
    finally:
        await runner.cleanup()


# -- entry point --------------------------------------------------------------------------------


def _resources(text: str) -> Resources:
    try:
        return Resources.parse(text)
    except ResourceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _attributes(text: str) -> Attributes:
    try:
        return parse_attributes(text)
    except ResourceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _master(text: str) -> str:
    return zk_url(text) if is_zk(text) else text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's options (`mantis agent ...`, `python -m mesoslite.agent ...`)."""
    d = AgentConfig()
    parser.add_argument(
        "--master",
        type=_master,
        default=d.master,
        help="master URL, host:port, or zk://HOST:PORT[,HOST:PORT]/PATH to follow the leader"
        " the masters elect there (default: %(default)s)",
    )
    parser.add_argument(
        "--resources",
        type=_resources,
        default=d.resources,
        metavar="SPEC",
        help=f"what this agent offers (default: {DEFAULT_RESOURCES}); accounted, not isolated",
    )
    parser.add_argument(
        "--attributes",
        type=_attributes,
        default=(),
        metavar="SPEC",
        help="text attributes, e.g. 'zone:a;rack:r1'",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        required=True,
        help="folder for task sandboxes (created if missing)",
    )
    parser.add_argument(
        "--hostname",
        default=d.hostname,
        help="hostname in offers: where tasks are reached (default: %(default)s)",
    )
    parser.add_argument(
        "--host",
        default=d.host,
        help="address of the agent's executor endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=d.port,
        help="port of the agent's executor endpoint (default: 0, any free port)",
    )
    parser.add_argument(
        "--kill-grace-period",
        type=positive,
        default=d.kill_grace_period,
        metavar="SECONDS",
        help="SIGTERM to SIGKILL delay when a task is killed (default: %(default)s)",
    )
    parser.add_argument(
        "--credential",
        default=None,
        metavar="PATH",
        help='JSON credential presented to the master, {"principal": ..., "secret": ...}'
        f" (default: ${AGENT_CREDENTIAL_ENV})",
    )
    parser.add_argument(
        "--reconnect-backoff-max",
        type=positive,
        default=d.reconnect_backoff_max,
        metavar="SECONDS",
        help="longest wait between attempts to reach the master (default: %(default)s)",
    )


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    """The agent's config; CredentialsError if the credential file cannot be used."""
    location = args.credential or os.environ.get(AGENT_CREDENTIAL_ENV) or None
    return AgentConfig(
        master=args.master,
        resources=args.resources,
        attributes=args.attributes,
        work_dir=args.work_dir.resolve(),
        hostname=args.hostname,
        host=args.host,
        port=args.port,
        kill_grace_period=args.kill_grace_period,
        reconnect_backoff_max=args.reconnect_backoff_max,
        credential=None if location is None else load_credential(location),
    )


def run(args: argparse.Namespace) -> int:
    """Run an agent from parsed options; logging is the caller's to configure."""
    try:
        config = config_from_args(args)
    except CredentialsError as e:
        log.error("agent_config_invalid", error=str(e))
        return 2
    try:
        asyncio.run(serve(config))
    except OSError as e:
        log.error("agent_failed", error=str(e))
        return 1
    except AuthenticationRefused:
        return 1  # agent_authentication_refused said why
    return 0


def main(argv: list[str] | None = None) -> int:
    description = "mesoslite agent: runs tasks from a mesoslite master as local processes."
    return logs.standalone("python -m mesoslite.agent", description, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""Health checks of command tasks (TaskInfo.health_check), checked and run as Mesos does:
validated by the master (src/common/validation.cpp validateHealthCheck; a bad one is
TASK_ERROR "Task uses invalid health check: ..."), run by the agent as the command executor's
health checker does (src/checks/health_checker.cpp):

- COMMAND runs its CommandInfo in the task's sandbox with the task's environment (healthy on
  exit 0); HTTP GETs `scheme://127.0.0.1:port/path` (healthy on a status 200-399, as Mesos'
  curl check); TCP connects to 127.0.0.1:port.
- The first check runs `delay_seconds` (15) after the task starts, then every
  `interval_seconds` (10), each given `timeout_seconds` (20). Failures within
  `grace_period_seconds` (10) of the start are ignored until a check has passed once.
- The first success, and the first after failures, is reported healthy; every counted failure
  unhealthy; at `consecutive_failures` (3) in a row the task is killed. The agent reports them
  as TASK_RUNNING with `healthy` and REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, and the killed
  task's TASK_KILLED with `healthy: false` (src/launcher/executor.cpp).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

Probe = Callable[[], Awaitable[bool]]
Report = Callable[[bool, bool], None]  # (healthy, kill the task)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    kind: str  # COMMAND, HTTP or TCP
    command: dict[str, Any]  # COMMAND's CommandInfo
    url: str  # HTTP's
    port: int  # TCP's (and HTTP's)
    delay: float = 15.0
    interval: float = 10.0
    timeout: float = 20.0
    grace: float = 10.0
    consecutive_failures: int = 3


def problem(check: Any) -> str | None:
    """Why a HealthCheck is invalid (Mesos' messages), or None."""
    if not isinstance(check, dict):
        return "HealthCheck must be an object"
    kind = check.get("type")
    if kind is None:
        return "HealthCheck must specify 'type'"
    if kind == "COMMAND":
        command = check.get("command")
        if not isinstance(command, dict):
            return "Expecting 'command' to be set for COMMAND health check"
        if not isinstance(command.get("value"), str) or not command["value"]:
            shell = command.get("shell", True)
            return f"Command health check must contain {'shell command' if shell else 'executable path'!r}"
    elif kind == "HTTP":
        http = check.get("http")
        if not isinstance(http, dict):
            return "Expecting 'http' to be set for HTTP health check"
        scheme = http.get("scheme", "http")
        if scheme not in ("http", "https"):
            return f"Unsupported HTTP health check scheme: '{scheme}'"
        path = http.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/"):
            return f"The path '{path}' of HTTP health check must start with '/'"
        if not _port(http):
            return "Expecting 'http.port' to be a port number"
    elif kind == "TCP":
        tcp = check.get("tcp")
        if not isinstance(tcp, dict):
            return "Expecting 'tcp' to be set for TCP health check"
        if not _port(tcp):
            return "Expecting 'tcp.port' to be a port number"
    else:
        return f"'{kind}' is not a valid health check type"
    for name in ("delay_seconds", "grace_period_seconds", "interval_seconds", "timeout_seconds"):
        value = check.get(name, 0.0)
        if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
            return f"Expecting '{name}' to be non-negative"
    failures = check.get("consecutive_failures", 3)
    if not isinstance(failures, int) or isinstance(failures, bool) or failures < 1:
        return "Expecting 'consecutive_failures' to be a positive integer"
    return None


def _port(message: dict[str, Any]) -> int | None:
    port = message.get("port")
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return port
    return None


def parse(check: dict[str, Any]) -> HealthCheck:
    """A HealthCheck `problem` found nothing wrong with."""
    kind = check["type"]
    http = check.get("http") or {}
    port = _port(http) or _port(check.get("tcp") or {}) or 0
    url = f"{http.get('scheme', 'http')}://127.0.0.1:{port}{http.get('path', '/')}"
    return HealthCheck(
        kind=kind,
        command=check.get("command") or {},
        url=url,
        port=port,
        delay=float(check.get("delay_seconds", 15.0)),
        interval=float(check.get("interval_seconds", 10.0)),
        timeout=float(check.get("timeout_seconds", 20.0)),
        grace=float(check.get("grace_period_seconds", 10.0)),
        consecutive_failures=int(check.get("consecutive_failures", 3)),
    )


def command_probe(executable: str, argv: list[str], cwd: Path, env: dict[str, str]) -> Probe:
    async def probe() -> bool:
        process = await asyncio.create_subprocess_exec(
            *argv,
            executable=executable,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return await process.wait() == 0
        finally:
            if process.returncode is None:  # timed out (cancelled): the check's whole group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()

    return probe


def http_probe(url: str) -> Probe:
    async def probe() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(url, ssl=False, allow_redirects=False) as resp,
            ):
                return 200 <= resp.status < 400
        except (aiohttp.ClientError, OSError):
            return False

    return probe


def tcp_probe(port: int) -> Probe:
    async def probe() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return probe


async def run_checks(check: HealthCheck, probe: Probe, report: Report, started: float) -> None:
    """Check until the task is to be killed (or this is cancelled); `started` is the task's
    start on the monotonic clock."""
    await asyncio.sleep(check.delay)
    passed_once = False
    failures = 0
    while True:
        try:
            healthy = await asyncio.wait_for(probe(), check.timeout)
        except TimeoutError:
            healthy = False
        if healthy:
            if not passed_once or failures:
                report(True, False)
            passed_once = True
            failures = 0
        elif passed_once or check.grace <= 0 or time.monotonic() - started > check.grace:
            failures += 1
            kill = failures >= check.consecutive_failures
            report(False, kill)
            if kill:
                return
        await asyncio.sleep(check.interval)

"""A local mesoslite cluster: one master (or several electing a leader in ZooKeeper) and N
agents as child processes on 127.0.0.1.

For tests, benchmarks and a one-command local set-up. Every process logs to a file in the
cluster's work folder (`master.log`, `agent-<i>.log`); agents keep their sandboxes in
`agent-<i>/`. Processes are started with the running interpreter and the folder that holds
the `mesoslite` package on PYTHONPATH, so an un-installed checkout works too.

With `credentials` (a Mesos JSON credentials file, see mesoslite.auth) the master requires
frameworks to authenticate; the file's path reaches it through MESOSLITE_CREDENTIALS, not
its command line. With `agent_credential` too (one principal of that file, in the JSON of an
agent's `--credential`) it requires agents to authenticate (`--authenticate-agents`), and every
agent presents that credential, whose path reaches it through MESOSLITE_AGENT_CREDENTIAL.

With `zk` (a `zk://host:port/path` URL) every master starts with `--zk` and every agent with
`--master` that URL; `masters` of them run, logging to `master.log`, `master-1.log`, ...
`address` is then the URL too (pymesos finds the leader in ZooKeeper), and `state()` is the
leader's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import mesoslite
from mesoslite.auth import AGENT_CREDENTIAL_ENV, CREDENTIALS_ENV

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (the usual small race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class AgentSpec:
    resources: str = "cpus:4;mem:8192;disk:10000;ports:[31000-32000]"
    attributes: str = ""
    args: tuple[str, ...] = ()


class ClusterError(RuntimeError):
    """A cluster process did not come up, or a wait ran out; the message names the log."""


class LocalCluster:
    def __init__(
        self,
        work_dir: Path,
        agents: Sequence[AgentSpec] | int = 1,
        *,
        master_args: Sequence[str] = (),
        port: int | None = None,
        log_level: str = "info",
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        credentials: Path | None = None,
        agent_credential: Path | None = None,
        masters: int = 1,
        zk: str | None = None,
    ) -> None:
        if agent_credential is not None and credentials is None:
            raise ValueError(
                "agent_credential needs credentials: the master checks it against them"
            )
        if masters < 1 or (masters > 1 and zk is None):
            raise ValueError("masters: one, or several electing a leader in zk")
        self.work_dir = Path(work_dir)
        self.agent_specs = (
            [AgentSpec() for _ in range(agents)] if isinstance(agents, int) else list(agents)
        )
        self.master_args = list(master_args)
        if credentials is not None:
            self.master_args.append("--authenticate-http-frameworks")
        if agent_credential is not None:
            self.master_args.append("--authenticate-agents")
        self.zk = zk
        if zk is not None:
            self.master_args += ["--zk", zk]
        self.port = port or free_port()
        self.ports = [self.port, *(free_port() for _ in range(masters - 1))]
        self.log_level = log_level
        self.python = python
        root = str(Path(mesoslite.__file__).resolve().parent.parent)
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, self.env.get("PYTHONPATH", "")) if p
        )
        self.master_env = dict(self.env)  # the agents (and their tasks) do not get the path
        if credentials is not None:
            self.master_env[CREDENTIALS_ENV] = str(Path(credentials).resolve())
        self.agent_env = dict(self.env)  # their tasks do not inherit the credential's path
        if agent_credential is not None:
            self.agent_env[AGENT_CREDENTIAL_ENV] = str(Path(agent_credential).resolve())
        self.masters: list[subprocess.Popen[bytes] | None] = [None] * masters
        self.agents: list[subprocess.Popen[bytes] | None] = [None] * len(self.agent_specs)
        self._logs: list[IO[bytes]] = []

    # -- addresses ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """`host:port` (the zk:// URL with `zk`), as pymesos' MesosSchedulerDriver wants it."""
        return self.zk if self.zk is not None else f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The first master's URL."""
        return f"http://{HOST}:{self.port}"

    def master_url(self, i: int) -> str:
        return f"http://{HOST}:{self.ports[i]}"

    def master_log(self, i: int) -> str:
        return "master" if i == 0 else f"master-{i}"

    def log_path(self, name: str) -> Path:
        return self.work_dir / f"{name}.log"

    # -- processes ------------------------------------------------------------------------------

    def _popen(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        return subprocess.Popen(
            [self.python, *argv, "--log-level", self.log_level],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=self.env if env is None else env,
            cwd=self.work_dir,
        )

    def start_master(self, timeout: float = 15.0, i: int = 0) -> None:
        argv = [
            "-m",
            "mesoslite",
            "master",
            "--host",
            HOST,
            "--port",
            str(self.ports[i]),
            *self.master_args,
        ]
        master = self.masters[i] = self._popen(self.master_log(i), argv, self.master_env)
        self.wait_until(
            lambda: self._get("/health", self.ports[i]) is not None,
            timeout,
            f"master {i} to answer /health",
            watch=master,
            log=self.master_log(i),
        )

    def start_agent(self, i: int) -> None:
        spec = self.agent_specs[i]
        argv = [
            "-m",
            "mesoslite.agent",
            "--master",
            self.zk if self.zk is not None else self.url,
            "--resources",
            spec.resources,
            "--work-dir",
            str(self.work_dir / f"agent-{i}"),
            "--host",
            HOST,
            "--reconnect-backoff-max",
            "0.5",
            *spec.args,
        ]
        if spec.attributes:
            argv += ["--attributes", spec.attributes]
        self.agents[i] = self._popen(f"agent-{i}", argv, self.agent_env)

    def add_agent(self, spec: AgentSpec) -> int:
        """Start one more agent; its index."""
        self.agent_specs.append(spec)
        self.agents.append(None)
        self.start_agent(len(self.agents) - 1)
        return len(self.agents) - 1

    def start(self, timeout: float = 20.0) -> LocalCluster:
        """Masters, then every agent; returns once all agents are registered and active."""
        for m in range(len(self.masters)):
            self.start_master(timeout, m)
        for i in range(len(self.agent_specs)):
            self.start_agent(i)
        n = len(self.agent_specs)
        self.wait_for_state(lambda s: s["activated_slaves"] >= n, timeout, f"{n} active agents")
        return self

    def kill_agent(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.agents[i]
        if proc is not None:
            proc.send_signal(sig)
            proc.wait(timeout=10)
            self.agents[i] = None

    def stop_master(self, sig: int = signal.SIGKILL, i: int = 0) -> None:
        master = self.masters[i]
        if master is not None:
            master.send_signal(sig)
            master.wait(timeout=10)
            self.masters[i] = None

    def restart_master(self, sig: int = signal.SIGKILL, timeout: float = 15.0, i: int = 0) -> None:
        self.stop_master(sig, i)
        self.start_master(timeout, i)

    def stop(self) -> None:
        """SIGTERM every process (agents kill their tasks), SIGKILL what lingers."""
        procs = [p for p in self.agents if p is not None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        _wait_all(procs, 8.0)
        masters = [m for m in self.masters if m is not None]
        for master in masters:
            master.send_signal(signal.SIGTERM)
        _wait_all(masters, 5.0)
        self.masters = [None] * len(self.masters)
        self.agents = [None] * len(self.agent_specs)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- observing ------------------------------------------------------------------------------

    def _get(self, path: str, port: int | None = None) -> bytes | None:
        url = f"http://{HOST}:{self.port if port is None else port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body: bytes = resp.read()
                return body
        except (urllib.error.URLError, OSError):
            return None

    def master_state(self, i: int) -> dict[str, Any] | None:
        """Master `i`'s own /master/state, None if it does not answer."""
        body = self._get("/master/state", self.ports[i])
        return None if body is None else dict(json.loads(body))

    def leader(self) -> int | None:
        """The index of the master that leads (by its own state), None while none does."""
        for i, master in enumerate(self.masters):
            if master is None:
                continue
            state = self.master_state(i)
            if state is not None and state.get("leader") == state["pid"]:
                return i
        return None

    def _leader_state(self) -> bytes | None:
        leader = 0 if self.zk is None else self.leader()
        return None if leader is None else self._get("/master/state", self.ports[leader])

    def state(self) -> dict[str, Any]:
        """The leading master's /master/state."""
        body = self._leader_state()
        if body is None:
            raise ClusterError(f"no answer from the leader's /master/state ({self.ports})")
        state: dict[str, Any] = json.loads(body)
        return state

    def wait_for_state(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """Poll /master/state until `predicate` holds; the last state, or ClusterError."""
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            body = self._leader_state()
            if body is None:
                return False
            last = json.loads(body)
            return predicate(last)

        watch = self.masters[0] if len(self.masters) == 1 else None
        self.wait_until(check, timeout, what, watch=watch, log="master")
        return last

    def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float,
        what: str,
        watch: subprocess.Popen[bytes] | None = None,
        log: str = "master",
    ) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not condition():
            if watch is not None and watch.poll() is not None:
                raise ClusterError(
                    f"{log} exited with {watch.returncode} while waiting for "
                    f"{what}; see {self.log_path(log)}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout} s waiting for {what}; see {self.log_path(log)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""`mantis up`: a whole local cluster in one command, supervised until Ctrl-C.

It starts, with a data folder (default ``./mantis-data``): a mesoslite master, N agents (each
offers its own loopback address, 127.0.0.2, 127.0.0.3, ..., as its hostname, so that "one
worker per host" constraints mean something on one machine) and the Mantis master (`mantis
master`), each a child process logging to a file in the data folder. It prints where
everything is once its own master answers and every agent is active. With `--example` it then
uploads examples/synthetic_counts.py, creates its cluster (`synthetic-counts`, unless it
exists), submits a job (unless one runs) and prints the job's output until Ctrl-C (`make run`).

With `--ha` it starts a ZooKeeper first (adapters.zk.server: the Debian package's server on
loopback, its data in `<data>/zookeeper`, so that a new `mantis up --ha` finds its state), then
two mesoslite masters electing their leader there the Mesos way (`--zk zk://.../mesos`; the
agents and the Mantis masters follow that URL), and three Mantis masters electing theirs
(`--zk .../mantis`: Mantis' layout and a store in ZooKeeper), on `--port` and the next free
ports, with data folders `<data>/master-<i>` sharing one `<data>/artifacts`. A master that does
not lead redirects to the one that does, so each of the three printed URLs keeps working when a
leader dies: its session expires after ZK_SESSION_SECS, another leads, and `mantis up` says who
on the console. A Mantis master that lost its leadership exits 3 and is started again at once
as a candidate. The example job goes through whichever master leads.

Ctrl-C: a terminal sends SIGINT to its whole foreground process group at once. Every child
runs in its own session (`start_new_session`), so only `mantis up` gets it, and it stops the
children in an order that damages no job: the master first (so it records nothing about
workers stopping), then the agents (which stop their tasks), then mesoslite, then ZooKeeper;
each gets SIGTERM, then SIGKILL after a deadline. On Linux a child also gets SIGTERM when
`mantis up` dies, even by SIGKILL (prctl(2) PR_SET_PDEATHSIG). The kernel sends it when the
*thread* that forked the child ends, so children are only ever started from the main thread.

Supervision: every child (mesoslite and the agents too, not only the master) that exits is
started again, and a line on stderr says which one and why (exit status or signal). One that
was up (ZooKeeper answering `ruok`, mesoslite answering /health, our master answering as itself
or as a follower, an agent running for QUICK_DEATH_SECS) starts again at once. One that dies before it is up waits 0.5 s, 1 s, 2 s,
... (at most BACKOFF_MAX_SECS) before it starts again; after GIVE_UP_DEATHS such deaths within
GIVE_UP_WINDOW_SECS, `mantis up` stops everything and exits 1 naming the log. A master that
refuses to start (it exits 1 after one `mantis master: ...` line, e.g. for a damaged store) is
not started again: that line is shown and `mantis up` stops.

Telling the truth: the API and mesoslite ports are checked free before anything starts (one
line naming the port and `--port` if not), the data folder is locked (two `mantis up` on one
store would corrupt it), and the master is recognised by an instance id (MANTIS_INSTANCE_ID,
echoed as `instanceId` by GET /api/v1/masterInfo), so another server on the port is never
taken for it.

Security: unless `--api-token` or `--no-token`, the API gets a random token
(`secrets.token_urlsafe`), written to `<data>/api-token` (mode 0600, where the `mantis` client
commands find it) and given to the master in its environment (MANTIS_API_TOKEN), not its argv,
which `ps` shows to every user. mesoslite requires HTTP Basic credentials of frameworks
(`--authenticate-http-frameworks`): a random secret for the principal `mantis`, in
`<data>/mesos/credentials.json` (0600), given to the master as MANTIS_MESOS_PRINCIPAL and
MANTIS_MESOS_SECRET. It requires them of agents too (`--authenticate-agents`, as Mesos'
`--authenticate_agents`), so that no other local process can register as an agent and be sent
the tasks, whose environment holds the API token: another random secret, for the principal
`mantis-agent`, in that file and in `<data>/mesos/agent-credential.json` (0600), whose path
reaches the agents as MESOSLITE_AGENT_CREDENTIAL (their tasks do not inherit it).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import http.client
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TextIO

import orjson
import structlog

from adapters.cli.client import (
    TOKEN_FILE,
    ApiError,
    MantisClient,
    MasterUnreachable,
    cluster_definition,
    sse_events,
)
from adapters.zk import server as zk_server
from mesoslite.auth import AGENT_CREDENTIAL_ENV

log = structlog.get_logger()

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
DEFAULT_PORT = 8100
"""The API port `mantis master` (adapters/cli/master.py) and the client default to; not
imported from there, so that `mantis up` does not import aiohttp: it starts sooner, and a
Ctrl-C in its first moments meets fewer imports."""
AGENT_RESOURCES = "cpus:8;mem:16384;disk:20000"
AGENT_PORTS = 1000
"""Ports each agent offers: a block that is free on every agent address when `mantis up`
starts, so that two local clusters on one machine do not hand out the same ports."""

AGENT_REREGISTER_SECS = 2.0
"""mesoslite's wait, after it starts, before it answers a reconciliation of a task on an agent
it does not know with TASK_LOST. Our agents (re-)register within a second (their reconnect
back-off is at most 0.5 s), and a new `mantis up` starts new agents, so the tasks of an earlier
one are not coming back: waiting Mesos' 10 s would only delay their replacements."""
QUICK_DEATH_SECS = 10.0
BACKOFF_FIRST_SECS = 0.5
BACKOFF_MAX_SECS = 8.0
GIVE_UP_DEATHS = 5
GIVE_UP_WINDOW_SECS = 60.0
START_TIMEOUT_SECS = 60.0
STOP_MASTER_SECS = 5.0
STOP_AGENTS_SECS = 10.0
"""An agent's tasks get SIGTERM, then SIGKILL after its kill grace period (3 s); then it exits."""
STOP_MESOS_SECS = 5.0
MESOS_PRINCIPAL = "mantis"
MESOS_CREDENTIALS = "credentials.json"
"""In `<data>/mesos`: the principals and secrets mesoslite requires of frameworks and agents
(0600)."""
AGENT_PRINCIPAL = "mantis-agent"
AGENT_CREDENTIAL = "agent-credential.json"
"""In `<data>/mesos`: the principal and secret the agents present to mesoslite (0600)."""
INSTANCE_ENV = "MANTIS_INSTANCE_ID"
INSTANCE_FIELD = "instanceId"
"""The field of GET /api/v1/masterInfo that echoes the master's MANTIS_INSTANCE_ID."""
SECRET_ENV = ("MANTIS_API_TOKEN", "MANTIS_MESOS_SECRET", AGENT_CREDENTIAL_ENV)
"""Not passed on to mesoslite or the agents (an agent's environment is its tasks')."""

HA_MASTERS = 3
HA_MESOS_MASTERS = 2
"""With --ha: Mantis masters (one leads, two follow) and mesoslite masters (one standby)."""
ZK_TICK_MS = 200
ZK_SESSION_SECS = 4.0
"""With --ha: how long ZooKeeper keeps the session of a master that died, so how long until
another one leads (20 ticks, the most ZooKeeper grants at this tick)."""
MANTIS_ZK_CHROOT = "/mantis"
MESOS_ZK_PATH = "/mesos"
"""Where the Mantis masters (their election and store) and the mesoslite masters (their
json.info_ members) keep their znodes: apart, as Mantis and Mesos would."""
EXIT_LOST_LEADERSHIP = 3
"""A Mantis master's exit status when it lost its leadership (adapters/cli/master.py); it
starts again at once as a candidate."""
LEADER_POLL_SECS = 1.0
"""With --ha, once up: how often `mantis up` looks who leads, to say so when it changes."""


class UpError(Exception):
    """`mantis up` cannot start or keep the cluster running; the message is one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("mantis-data"),
        help="where the store, artifacts, API token and logs live (default: %(default)s)",
    )
    parser.add_argument("--agents", type=int, default=2, help="agent processes (default: 2)")
    parser.add_argument(
        "--agent-resources",
        default=AGENT_RESOURCES,
        metavar="SPEC",
        help="each agent's resources (default: %(default)s, plus a block of "
        f"{AGENT_PORTS} free ports unless SPEC has ports)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="the Mantis API port (default: %(default)s; 0 picks a free one)",
    )
    parser.add_argument(
        "--mesos-port",
        type=int,
        default=0,
        help="the mesoslite master's port (default: a free one)",
    )
    token = parser.add_mutually_exclusive_group()
    token.add_argument(
        "--api-token",
        default=os.environ.get("MANTIS_API_TOKEN"),
        help="bearer token for mutating API calls (default: $MANTIS_API_TOKEN, "
        f"else a random one, written to DATA_DIR/{TOKEN_FILE})",
    )
    token.add_argument(
        "--no-token",
        action="store_true",
        help="no token: anyone who can reach 127.0.0.1 may change the cluster",
    )
    parser.add_argument(
        "--recover-from-snapshot",
        action="store_true",
        help="passed to the master: open a damaged store from its last good snapshot "
        "plus the whole batches after the damage that still apply (it prints what it drops)",
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="passed to the masters: a web origin (https://ui.example) that may read the API "
        "(CORS); '*' lets every origin read, as Mantis does (repeatable)",
    )
    parser.add_argument(
        "--example",
        action="store_true",
        help="run the example job and print its output until Ctrl-C",
    )
    parser.add_argument(
        "--ha",
        action="store_true",
        help=f"high availability: a ZooKeeper (data in DATA_DIR/zookeeper), {HA_MASTERS} "
        f"Mantis masters (ports PORT and the next free ones) and {HA_MESOS_MASTERS} mesoslite "
        "masters, each electing a leader there",
    )


# ---------------------------------------------------------------------- ports and files


def free_port() -> int:
    """A port nothing listens on right now on 127.0.0.1 (the usual small race applies)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    """Whether binding `port` fails as a server's bind would (SO_REUSEADDR, as aiohttp)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
        return False


def free_port_block(
    hosts: list[str], size: int, rng: random.Random | None = None
) -> tuple[int, int]:
    """A range of `size` ports that none of `hosts` has in use right now (probed by binding)."""
    rng = rng or random.Random()
    for _ in range(50):
        lo = rng.randrange(20000, 60000 - size)
        if all(_bindable(h, p) for h in hosts for p in range(lo, lo + size)):
            return lo, lo + size - 1
    raise UpError(f"found no {size} free ports in 20000-60000 on {', '.join(hosts)}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def next_free_ports(after: int, count: int) -> list[int]:
    """The first `count` ports above `after` that nothing on 127.0.0.1 listens on."""
    found = []
    for port in range(after + 1, 65536):
        if not port_in_use(HOST, port):
            found.append(port)
            if len(found) == count:
                return found
    raise UpError(f"found no {count} free ports above {after} on {HOST}")


def share_artifacts(data_dir: Path, masters: list[Path]) -> None:
    """Every master's `artifacts` folder is `<data>/artifacts`: an artifact uploaded to one
    leader is still there for the next one (Mantis keeps them outside its masters, in an
    artifact repository). A real folder already in its place is left alone."""
    shared = data_dir / "artifacts"
    shared.mkdir(parents=True, exist_ok=True)
    for folder in masters:
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / "artifacts"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(shared, target_is_directory=True)


def write_secret(path: Path, text: str) -> None:
    """`text` in `path`, readable by this user only (0600 from creation, never wider)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text + "\n")
    os.replace(tmp, path)


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold `<data>/up.lock` while `mantis up` runs; UpError if another one holds it."""
    lock = open(data_dir / "up.lock", "a+")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise UpError(
            f"another `mantis up` (pid {holder}) uses {data_dir}; stop it, or "
            "choose another folder with --data-dir"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


# ---------------------------------------------------------------------- child processes


def _find_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # looked up once, not in the child
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()
PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> Callable[[], None]:
    """A preexec_fn: SIGTERM this child when `parent` dies; exit at once if it already has."""

    def preexec() -> None:  # pragma: no cover - runs in the child between fork and exec
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def describe_status(status: int) -> str:
    """ "exit status 1" or "killed by SIGKILL" for a Popen returncode."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


class Child:
    """One supervised child process: its command, log, and its recent deaths before it was up."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str], cwd: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.log_offset = 0
        self.next_start = 0.0
        self.quick_deaths: deque[float] = deque()
        """When it died before it was up, within the last GIVE_UP_WINDOW_SECS."""
        self.ready = False
        """Seen up since its last start (the supervisor decides what "up" means)."""
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        """Start the process (from the main thread only: see the module docstring)."""
        assert threading.current_thread() is threading.main_thread()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self.log_offset = self._log.tell()
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()) if _PRCTL is not None else None,
        )
        self.started_at = time.monotonic()
        self.ready = False

    def exited(self) -> int | None:
        """The exit status if the process has ended (it is then forgotten), else None."""
        if self.process is None:
            return None
        status = self.process.poll()
        if status is not None:
            self._forget()
        return status

    def output_since_start(self, limit: int = 65536) -> list[str]:
        """The lines the process wrote to its log since it was started (the last `limit`)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(self.log_offset, f.seek(0, os.SEEK_END) - limit))
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        """Wait until `deadline` (monotonic) for the process to end, then SIGKILL it."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("up_child_killed", child=self.name, pid=self.process.pid)
            self.process.kill()
            self.process.wait()
        self._forget()

    def _forget(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_children(children: list[Child], seconds: float) -> None:
    """SIGTERM them all, then SIGKILL whatever still runs after `seconds`."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + seconds
    for child in children:
        child.wait_or_kill(deadline)


# ---------------------------------------------------------------------- the cluster


class LocalUp:
    """The processes of `mantis up`: `run(should_stop)` starts and supervises them, then
    stops them in order; `on_up` is called once the cluster is up. With `ha`, a ZooKeeper,
    HA_MESOS_MASTERS mesoslite masters and HA_MASTERS Mantis masters, each electing its
    leader there."""

    def __init__(
        self,
        data_dir: Path,
        agents: int = 2,
        *,
        port: int = DEFAULT_PORT,
        mesos_port: int = 0,
        agent_resources: str = AGENT_RESOURCES,
        api_token: str | None = None,
        recover_from_snapshot: bool = False,
        allowed_origins: Sequence[str] = (),
        ha: bool = False,
        log_level: str = "info",
        log_json: bool = False,
        err: TextIO = sys.stderr,
    ) -> None:
        if agents < 1:
            raise UpError("--agents must be >= 1")
        if agents > 250:
            raise UpError("--agents must be <= 250 (one loopback address each)")
        if ha:
            if recover_from_snapshot:
                raise UpError(
                    "--recover-from-snapshot opens the file store; with --ha the store is in "
                    "ZooKeeper"
                )
            reason = zk_server.missing()
            if reason is not None:
                raise UpError(reason)
        for flag, wanted in (("--port", port), ("--mesos-port", mesos_port)):
            if wanted and port_in_use(HOST, wanted):
                raise UpError(
                    f"port {wanted} on {HOST} ({flag}) is in use, maybe by another "
                    f"`mantis up`; choose another with {flag} PORT (0 picks a free "
                    "one)"
                )
        self.data_dir = data_dir.resolve()
        self.ha = ha
        self.port = port or free_port()
        self.ports = [self.port, *next_free_ports(self.port, HA_MASTERS - 1)] if ha else [self.port]
        self.mesos_port = mesos_port or free_port()
        standbys = HA_MESOS_MASTERS - 1 if ha else 0
        self.mesos_ports = [self.mesos_port, *(free_port() for _ in range(standbys))]
        self.api_token = api_token
        self.instance_id = secrets.token_hex(16)
        self.err = err
        self.up = False
        self.zk_ready = not ha
        """Latched: ZooKeeper has answered once (the mesoslite masters may start)."""
        self.mesos_ready = False
        """Latched: a mesoslite master has answered once (agents and masters may start)."""
        self.leaders: tuple[int | None, int | None] = (None, None)
        """The Mantis master and the mesoslite master that lead (indexes), as last seen."""
        self._leaders_seen_at = 0.0
        hosts = [f"127.0.0.{i + 2}" for i in range(agents)]
        if "ports:" not in agent_resources:
            lo, hi = free_port_block(hosts, AGENT_PORTS)
            agent_resources += f";ports:[{lo}-{hi}]"
        mesos = self.data_dir / "mesos"
        mesos.mkdir(parents=True, exist_ok=True)
        mesos_secret = secrets.token_urlsafe(32)
        agent = {"principal": AGENT_PRINCIPAL, "secret": secrets.token_urlsafe(32)}
        credentials = mesos / MESOS_CREDENTIALS
        write_secret(
            credentials,
            orjson.dumps(
                {"credentials": [{"principal": MESOS_PRINCIPAL, "secret": mesos_secret}, agent]}
            ).decode(),
        )
        agent_credential = mesos / AGENT_CREDENTIAL
        write_secret(agent_credential, orjson.dumps(agent).decode())
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV and k != INSTANCE_ENV}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        log_flags = ["--log-level", log_level, *(["--log-json"] if log_json else [])]

        self.zookeeper: Child | None = None
        self.zk: zk_server.ZooKeeperServer | None = None
        mesos_zk: list[str] = []
        master_zk: list[str] = []
        if ha:
            self.zk = zk_server.ZooKeeperServer(self.data_dir / "zookeeper", tick_ms=ZK_TICK_MS)
            self.zookeeper = Child("ZooKeeper", self.zk.command, self.zk.log, env, self.zk.folder)
            session = ["--zk-session-timeout", f"{ZK_SESSION_SECS:g}"]
            mesos_zk = ["--zk", self.mesos_master, *session]
            master_zk = ["--zk", f"{self.zk.address}{MANTIS_ZK_CHROOT}", *session]
        self.mesos_masters = [
            Child(
                "mesoslite" if not ha else f"mesoslite {i + 1} (port {p})",
                [
                    sys.executable,
                    "-m",
                    "mesoslite.master",
                    "--host",
                    HOST,
                    "--port",
                    str(p),
                    "--agent-reregister-timeout",
                    str(AGENT_REREGISTER_SECS),
                    "--authenticate-http-frameworks",
                    "--authenticate-agents",
                    "--credentials",
                    str(credentials),
                    *mesos_zk,
                    *log_flags,
                ],
                mesos / ("master.log" if i == 0 else f"master-{i + 1}.log"),
                env,
                mesos,
            )
            for i, p in enumerate(self.mesos_ports)
        ]
        self.agents = [
            Child(
                f"agent {i + 1} ({h})",
                [
                    sys.executable,
                    "-m",
                    "mesoslite.agent",
                    "--master",
                    self.mesos_master,
                    "--resources",
                    agent_resources,
                    "--work-dir",
                    str(mesos / f"agent-{i}"),
                    "--host",
                    HOST,
                    "--hostname",
                    h,
                    "--reconnect-backoff-max",
                    "0.5",
                    *log_flags,
                ],
                mesos / f"agent-{i}.log",
                {**env, AGENT_CREDENTIAL_ENV: str(agent_credential)},
                mesos,
            )
            for i, h in enumerate(hosts)
        ]
        master_env = {
            **env,
            INSTANCE_ENV: self.instance_id,
            "MANTIS_MESOS_PRINCIPAL": MESOS_PRINCIPAL,
            "MANTIS_MESOS_SECRET": mesos_secret,
        }
        if api_token:
            master_env["MANTIS_API_TOKEN"] = api_token
        self.masters = [
            Child(
                "the master" if not ha else f"master {i + 1} (port {p})",
                [
                    sys.executable,
                    "-m",
                    "adapters.cli.main",
                    *log_flags,
                    "master",
                    "--data-dir",
                    str(folder),
                    "--mesos",
                    self.mesos_master,
                    "--port",
                    str(p),
                    *master_zk,
                    *(["--recover-from-snapshot"] if recover_from_snapshot else []),
                    *(arg for o in allowed_origins for arg in ("--allowed-origin", o)),
                ],
                folder / "master.log",
                master_env,
                folder,
            )
            for i, p in enumerate(self.ports)
            for folder in [self.data_dir / f"master-{i + 1}" if ha else self.data_dir]
        ]
        if ha:
            share_artifacts(self.data_dir, [m.cwd for m in self.masters])

    @property
    def url(self) -> str:
        """The first master's URL (with --ha, any master's URL redirects to the leader)."""
        return f"http://{HOST}:{self.port}"

    def master_url(self, i: int) -> str:
        return f"http://{HOST}:{self.ports[i]}"

    @property
    def mesos_url(self) -> str:
        return f"http://{HOST}:{self.mesos_port}"

    def mesos_master_url(self, i: int) -> str:
        return f"http://{HOST}:{self.mesos_ports[i]}"

    @property
    def mesos_master(self) -> str:
        """What the agents and the Mantis masters take as the Mesos master: its address, or
        with --ha the zk:// URL where the mesoslite masters elect their leader."""
        if self.zk is not None:
            return f"zk://{self.zk.address}{MESOS_ZK_PATH}"
        return f"{HOST}:{self.mesos_port}"

    @property
    def master(self) -> Child:
        """The (first) Mantis master."""
        return self.masters[0]

    @property
    def mesos(self) -> Child:
        """The (first) mesoslite master."""
        return self.mesos_masters[0]

    @property
    def children(self) -> list[Child]:
        """In the order they start: each one waits for those it needs (see `_may_start`)."""
        first = [self.zookeeper] if self.zookeeper is not None else []
        return [*first, *self.mesos_masters, *self.agents, *self.masters]

    # -- running ---------------------------------------------------------------------------------

    def run(
        self,
        should_stop: Callable[[], bool],
        on_up: Callable[[], None],
        start_timeout: float = START_TIMEOUT_SECS,
    ) -> int:
        """Start, supervise until `should_stop()` (0) or until giving up (1), then stop."""
        deadline = time.monotonic() + start_timeout
        try:
            while not should_stop():
                now = time.monotonic()
                for child in self.children:
                    if not self._tend(child, now, self._may_start(child)):
                        return 1
                self._observe(now)
                if not self.up:
                    if self._ready():
                        self.up = True
                        on_up()
                    elif time.monotonic() > deadline:
                        self._give_up(
                            f"the cluster did not come up within {start_timeout:g} s "
                            f"({self._missing()}); see the logs in {self.data_dir}"
                        )
                        return 1
                elif self.ha:
                    self._watch_leaders(now)
                time.sleep(0.2 if self.up else 0.05)
            return 0
        finally:
            self.stop()

    def _may_start(self, child: Child) -> bool:
        """ZooKeeper first, then mesoslite, then the agents and the Mantis masters."""
        if child is self.zookeeper:
            return True
        if child in self.mesos_masters:
            return self.zk_ready
        return self.mesos_ready

    def _tend(self, child: Child, now: float, may_start: bool) -> bool:
        """Start `child` if it is due, handle its death; False once it is time to give up."""
        if not child.running:
            if may_start and now >= child.next_start:
                child.start()
            return True
        status = child.exited()
        if status is None:
            return True
        what = describe_status(status)
        if child in self.masters and status == 1:
            refusal = self._refusal(child)
            if refusal:
                return self._give_up(f"{child.name} refused to start: {refusal}")
        if child in self.masters and status == EXIT_LOST_LEADERSHIP:
            what += ", it lost its leadership"
            child.quick_deaths.clear()
            delay = 0.0
        elif not child.ready:
            child.quick_deaths.append(now)
            while child.quick_deaths[0] < now - GIVE_UP_WINDOW_SECS:
                child.quick_deaths.popleft()
            quick = len(child.quick_deaths)
            if quick >= GIVE_UP_DEATHS:
                last = next((x for x in reversed(child.output_since_start()) if x.strip()), "")
                return self._give_up(
                    f"{child.name} died {quick} times in {GIVE_UP_WINDOW_SECS:g} s, each time "
                    f"before it was up (last: {what}"
                    f"{f', {last.strip()[:200]!r}' if last else ''}); see {child.log_path}"
                )
            delay = min(BACKOFF_FIRST_SECS * 2 ** (quick - 1), BACKOFF_MAX_SECS)
        else:
            child.quick_deaths.clear()
            delay = 0.0
        child.next_start = now + delay
        when = f" in {delay:g} s" if delay else ""
        self._say(f"{child.name} exited ({what}); starting it again{when} (log: {child.log_path})")
        log.warning("up_child_exited", child=child.name, status=status, restart_in=delay)
        return True

    def _observe(self, now: float) -> None:
        """Mark the children that are up: ZooKeeper answering `ruok`, mesoslite answering
        /health, our masters answering as themselves, an agent that has run for
        QUICK_DEATH_SECS."""
        zk = self.zookeeper
        if zk is not None and self.zk is not None and zk.running and not zk.ready:
            zk.ready = self.zk.ruok(timeout=0.5)
            self.zk_ready = self.zk_ready or zk.ready
        for i, mesos in enumerate(self.mesos_masters):
            if mesos.running and not mesos.ready:
                mesos.ready = self._get(self.mesos_master_url(i) + "/health") is not None
                self.mesos_ready = self.mesos_ready or mesos.ready
        for i, master in enumerate(self.masters):
            if master.running and not master.ready:
                master.ready = self._master_answers(i) is not None
        for agent in self.agents:
            if agent.running and not agent.ready:
                agent.ready = now - agent.started_at >= QUICK_DEATH_SECS

    def _refusal(self, master: Child) -> str:
        """The one-line error of a master that refused to start (`mantis master: ...`)."""
        prefix = "mantis master: "
        lines = [x for x in master.output_since_start() if x.startswith(prefix)]
        return lines[-1][len(prefix) :].strip() if lines else ""

    def _give_up(self, message: str) -> bool:
        self._say(f"{message}; stopping")
        return False

    def _say(self, line: str) -> None:
        self.err.write(f"mantis up: {line}\n")
        self.err.flush()

    # -- observing -------------------------------------------------------------------------------

    def _get(self, url: str) -> bytes | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body: bytes = resp.read()
                return body if resp.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    def _get_json(self, url: str) -> dict[str, Any] | None:
        body = self._get(url)
        if body is None:
            return None
        try:
            found = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return found if isinstance(found, dict) else None

    def _master_answers(self, i: int) -> bool | None:
        """Whether master `i` (one of ours: it echoes our instance id) leads, or follows
        (with --ha: `isLeader` false); None if it does not answer as one of ours."""
        if self.masters[i].process is None:
            return None
        info = self._get_json(self.master_url(i) + "/api/v1/masterInfo")
        if info is None:
            return None
        if info.get(INSTANCE_FIELD) != self.instance_id:
            return None  # another server on the port: never taken for ours
        return info.get("isLeader") is not False

    def own_master_answers(self) -> bool:
        """Our (first) master serves the API: it echoes our instance id."""
        return self._master_answers(0) is True

    def mantis_leader(self) -> int | None:
        """The index of our master that leads, None while none does."""
        for i in range(len(self.masters)):
            if self._master_answers(i) is True:
                return i
        return None

    def leader_url(self) -> str:
        """The API of the master that leads; the first master's while none does (it
        redirects to the leader once there is one)."""
        return self.master_url(self.mantis_leader() or 0)

    def mesos_leader(self) -> tuple[int, dict[str, Any]] | None:
        """The mesoslite master that leads (its own /master/state names itself as the leader,
        by its id: a master started again on a dead leader's port has its pid, host:port)."""
        if not self.ha:
            state = self._get_json(self.mesos_url + "/master/state")
            return None if state is None else (0, state)
        for i in range(len(self.mesos_masters)):
            if self.mesos_masters[i].process is None:
                continue
            state = self._get_json(self.mesos_master_url(i) + "/master/state")
            if state is not None and (state.get("leader_info") or {}).get("id") == state["id"]:
                return i, state
        return None

    def _active_agents(self) -> int:
        leader = self.mesos_leader()
        return int(leader[1].get("activated_slaves", 0)) if leader else 0

    def _ready(self) -> bool:
        if not (self.zk_ready and self.mesos_ready):
            return False
        if not all(m.ready for m in [*self.mesos_masters, *self.masters]):
            return False
        if self._active_agents() < len(self.agents):
            return False
        if self.ha:
            mesos = self.mesos_leader()
            self.leaders = (self.mantis_leader(), mesos[0] if mesos else None)
            return None not in self.leaders
        return True

    def _missing(self) -> str:
        if not self.zk_ready:
            assert self.zk is not None
            return f"ZooKeeper does not answer on {self.zk.address}"
        for i, mesos in enumerate(self.mesos_masters):
            if not mesos.ready:
                return f"mesoslite does not answer on {self.mesos_master_url(i)}"
        for i, master in enumerate(self.masters):
            if not master.ready:
                return f"the master does not answer on {self.master_url(i)}"
        agents = self._active_agents()
        if agents < len(self.agents):
            return f"{agents} of {len(self.agents)} agents active"
        return "no leader elected"

    def _watch_leaders(self, now: float) -> None:
        """Every LEADER_POLL_SECS, see who leads; say so on the console when that changes."""
        if now - self._leaders_seen_at < LEADER_POLL_SECS:
            return
        self._leaders_seen_at = now
        mesos = self.mesos_leader()
        leaders = (self.mantis_leader(), mesos[0] if mesos else None)
        if leaders == self.leaders:
            return
        (master, mesoslite), (was_master, was_mesoslite) = leaders, self.leaders
        self.leaders = leaders
        if master != was_master:
            who = "none (electing)" if master is None else self.master_url(master)
            self._say(f"the Mantis master leading is {who}")
        if mesoslite != was_mesoslite:
            who = "none (electing)" if mesoslite is None else self.mesos_master_url(mesoslite)
            self._say(f"the mesoslite master leading is {who}")

    def describe(self, out: TextIO) -> None:
        n = len(self.agents)
        token = ""
        if self.api_token:
            token = (
                f"  API token    {self.api_token}\n"
                f"               (in {self.data_dir / TOKEN_FILE}; mantis job/cluster/"
                'artifact send it; with curl: -H "Authorization: Bearer $(cat '
                f'{self.data_dir / TOKEN_FILE})")\n'
            )
        if not self.ha:
            out.write(
                f"mantis is up:\n"
                f"  API          {self.url}/api/v1/jobClusters   (OpenAPI: {self.url}/api/v1/openapi.json)\n"
                f"{token}"
                f"  mesoslite    {self.mesos_url}/master/state\n"
                f"  agents       {n} (hostnames 127.0.0.2-127.0.0.{n + 1})\n"
                f"  data folder  {self.data_dir}   (logs: master.log, mesos/*.log)\n"
                "Ctrl-C stops everything.\n"
            )
            out.flush()
            return
        assert self.zk is not None
        master, mesoslite = self.leaders
        others = ", ".join(self.master_url(i) for i in range(1, len(self.masters)))
        leads = "(electing)" if master is None else self.master_url(master)
        mesos_leads = "(electing)" if mesoslite is None else self.mesos_master_url(mesoslite)
        mesos_all = ", ".join(self.mesos_master_url(i) for i in range(len(self.mesos_masters)))
        out.write(
            f"mantis is up, highly available:\n"
            f"  API          {self.url}/api/v1/jobClusters   (OpenAPI: {self.url}/api/v1/openapi.json)\n"
            f"               also {others}: any master redirects to the leader (curl -L)\n"
            f"  leading      Mantis master {leads}, mesoslite {mesos_leads}\n"
            f"{token}"
            f"  mesoslite    {mesos_all} (/master/state; a standby redirects to the leader)\n"
            f"  ZooKeeper    {self.zk.address}   (data: {self.zk.folder})\n"
            f"  agents       {n} (hostnames 127.0.0.2-127.0.0.{n + 1})\n"
            f"  data folder  {self.data_dir}   (logs: master-*/master.log, mesos/*.log, "
            "zookeeper/zookeeper.log)\n"
            "Ctrl-C stops everything; a leader that dies is replaced within seconds.\n"
        )
        out.flush()

    # -- stopping --------------------------------------------------------------------------------

    def stop(self) -> None:
        """The masters first (they record nothing about workers stopping), then the agents
        (they stop their tasks), then mesoslite, then ZooKeeper; each SIGTERM, then SIGKILL
        after a deadline."""
        t0 = time.monotonic()
        stop_children(self.masters, STOP_MASTER_SECS)
        t1 = time.monotonic()
        stop_children(self.agents, STOP_AGENTS_SECS)
        t2 = time.monotonic()
        stop_children(self.mesos_masters, STOP_MESOS_SECS)
        t3 = time.monotonic()
        if self.zookeeper is not None:
            stop_children([self.zookeeper], zk_server.STOP_SECS)
        log.info(
            "up_stopped",
            master_secs=round(t1 - t0, 3),
            agents_secs=round(t2 - t1, 3),
            mesoslite_secs=round(t3 - t2, 3),
            zookeeper_secs=round(time.monotonic() - t3, 3),
        )


# ---------------------------------------------------------------------- the example

EXAMPLE = ROOT / "examples" / "synthetic_counts.py"
EXAMPLE_CLUSTER = "synthetic-counts"
EXAMPLE_RETRY_SECS = 1.0
EXAMPLE_REDIRECTS = 3


def start_example(client: MantisClient, user: str) -> str:
    """Upload the example, create its cluster if new, submit a job unless one runs; its id."""
    if not EXAMPLE.is_file():
        raise FileNotFoundError(f"the example job is missing: {EXAMPLE}")
    client.upload_artifact(EXAMPLE)
    if EXAMPLE_CLUSTER not in {c.get("name") for c in client.list_clusters()}:
        client.create_cluster(
            cluster_definition(
                EXAMPLE_CLUSTER,
                EXAMPLE.name,
                user,
                stages={1: 1, 2: 2},
                cpus=0.5,
                memory=256,
                parameters={"eventsPerSecond": "2000"},
            )
        )
    running = client.list_jobs(EXAMPLE_CLUSTER)
    job = running[0] if running else client.submit_job(EXAMPLE_CLUSTER, user)
    return str(job["jobMetadata"]["jobId"])


class ExampleStream:
    """The example job's output (`GET /jobconnectbyname/...`, SSE) from the master that leads,
    on a connection that `hang_up()` ends at once from another thread: a master still serving a
    stream takes longer to stop, so `mantis up` hangs up before it stops the master."""

    def __init__(self, up: LocalUp) -> None:
        self.up = up
        self._conn: http.client.HTTPConnection | None = None
        self._hung_up = False

    def events(self) -> Iterator[Any]:
        """The events; a master that does not lead redirects (302) to the one that does."""
        url = urllib.parse.urlsplit(self.up.leader_url())
        path = f"/jobconnectbyname/{EXAMPLE_CLUSTER}"
        for _ in range(EXAMPLE_REDIRECTS):
            location = yield from self._events(url.hostname or HOST, url.port or 80, path)
            if location is None:
                return
            url = urllib.parse.urlsplit(location)
            if url.hostname != HOST:
                raise ApiError(302, f"redirected off {HOST}, to {location}")
            path = url.path + (f"?{url.query}" if url.query else "")
        raise ApiError(302, f"more than {EXAMPLE_REDIRECTS} redirects")

    def _events(self, host: str, port: int, path: str) -> Generator[Any, None, str | None]:
        """The events from `host:port`, or where it redirects to."""
        conn = http.client.HTTPConnection(host, port, timeout=10)
        self._conn = conn
        headers = {"Accept": "text/event-stream"}
        if self.up.api_token:
            headers["Authorization"] = f"Bearer {self.up.api_token}"
        try:
            conn.connect()
            if self._hung_up:  # before the connection existed: hang_up could not end it
                return None
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            location = response.getheader("Location")
            if response.status in (302, 307) and location:
                return location
            if response.status != 200:
                raise ApiError(response.status, response.reason)
            if conn.sock is not None:
                conn.sock.settimeout(None)  # events come when the job has some
            yield from sse_events(iter(lambda: response.read1(65536), b""))
            return None
        finally:
            conn.close()

    def hang_up(self) -> None:
        self._hung_up = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


def stream_example(
    up: LocalUp, stream: ExampleStream, out: TextIO, stopped: Callable[[], bool]
) -> None:
    """Start the example and print its output; reconnect if the master restarts (or, with
    --ha, to the next leader)."""
    user = os.environ.get("USER") or "mantis"
    while True:  # again while the master is unreachable or fails (it may be restarting)
        try:
            job_id = start_example(MantisClient(up.leader_url(), up.api_token or ""), user)
            break
        except (ApiError, MasterUnreachable, OSError, http.client.HTTPException) as e:
            if isinstance(e, ApiError) and 400 <= e.status < 500:
                log.error("example_refused", error=str(e))
                return
            if stopped():
                return
            log.warning("example_not_started", error=str(e), retry_in=EXAMPLE_RETRY_SECS)
            time.sleep(EXAMPLE_RETRY_SECS)
    out.write(
        f"example job {job_id} submitted: its workers start, then every second one line "
        f"per key (Ctrl-C stops)\n  curl -N {up.url}/jobconnectbyid/{job_id}\n"
    )
    out.flush()
    while not stopped():
        try:
            for event in stream.events():
                out.write(orjson.dumps(event).decode() + "\n")
                out.flush()
        except (ApiError, MasterUnreachable, OSError, http.client.HTTPException) as e:
            if not stopped():
                log.info("example_stream_reconnecting", error=repr(e))
        time.sleep(EXAMPLE_RETRY_SECS)


# ---------------------------------------------------------------------- the command


def api_token(args: argparse.Namespace, data_dir: Path) -> str | None:
    """The token the API will require (None with --no-token), kept in `<data>/api-token`."""
    path = data_dir / TOKEN_FILE
    if args.no_token:
        path.unlink(missing_ok=True)
        return None
    token: str = args.api_token or secrets.token_urlsafe(32)
    write_secret(path, token)
    return token


def run(args: argparse.Namespace) -> int:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        data_dir = args.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_data_dir(data_dir)
        up = LocalUp(
            data_dir,
            args.agents,
            port=args.port,
            mesos_port=args.mesos_port,
            agent_resources=args.agent_resources,
            api_token=api_token(args, data_dir),
            recover_from_snapshot=args.recover_from_snapshot,
            allowed_origins=args.allowed_origin,
            ha=args.ha,
            log_level=args.log_level,
            log_json=args.log_json,
        )
    except UpError as e:
        sys.stderr.write(f"mantis up: {e}\n")
        return 1

    stream = ExampleStream(up)
    example = threading.Thread(
        target=stream_example,
        args=(up, stream, sys.stdout, lambda: stop),
        daemon=True,
        name="example",
    )

    def on_up() -> None:
        up.describe(sys.stdout)
        if args.example:
            example.start()

    def stopping() -> bool:
        if stop:
            stream.hang_up()
        return stop

    with contextlib.closing(lock):
        status = up.run(stopping, on_up)
    sys.stdout.write("mantis stopped.\n")
    return status

"""`mantis up`: a whole local cluster in one command, supervised until Ctrl-C.

It starts, with a data folder (default ``./mantis-data``): a mesoslite master and N agent
processes (each agent offers its own loopback address, 127.0.0.2, 127.0.0.3, ..., as its
hostname, so that "one worker per host" constraints mean something on one machine), then the
Mantis master (`mantis master`) as a child process. It prints where everything is, then
watches: a master that dies is started again (it recovers its jobs from the store and keeps
the running workers). Ctrl-C (or SIGTERM) stops everything cleanly: the master first, then the
agents (which kill their tasks), then the mesoslite master.

With `--example` it also uploads examples/synthetic_counts.py, creates its cluster
(`synthetic-counts`, unless it exists), submits a job (unless one runs) and prints the job's
output, one JSON line per key and second, until Ctrl-C (`make run` does this).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, TextIO

import orjson
import structlog

from adapters.cli.client import ApiError, MantisClient, MasterUnreachable, cluster_definition
from adapters.cli.master import DEFAULT_PORT
from mesoslite.local import AgentSpec, ClusterError, LocalCluster, free_port

log = structlog.get_logger()

ROOT = Path(__file__).resolve().parents[2]
AGENT_RESOURCES = "cpus:8;mem:16384;disk:20000"
AGENT_PORTS = 1000
"""Ports each agent offers: a block that is free on every agent address when `mantis up`
starts, so that two local clusters on one machine do not hand out the same ports."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("mantis-data"),
                        help="where the store, artifacts and logs live (default: %(default)s)")
    parser.add_argument("--agents", type=int, default=2, help="agent processes (default: 2)")
    parser.add_argument("--agent-resources", default=AGENT_RESOURCES, metavar="SPEC",
                        help="each agent's resources (default: %(default)s, plus a block of "
                             f"{AGENT_PORTS} free ports unless SPEC has ports)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="the Mantis API port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--mesos-port", type=int, default=0,
                        help="the mesoslite master's port (default: a free one)")
    parser.add_argument("--api-token", default=os.environ.get("MANTIS_API_TOKEN"),
                        help="bearer token for mutating API calls (default: $MANTIS_API_TOKEN)")
    parser.add_argument("--example", action="store_true",
                        help="run the example job and print its output until Ctrl-C")  # fmt: skip


def free_port_block(hosts: list[str], size: int, rng: random.Random | None = None) -> tuple[int, int]:
    """A range of `size` ports that none of `hosts` has in use right now (probed by binding)."""
    rng = rng or random.Random()
    for _ in range(50):
        lo = rng.randrange(20000, 60000 - size)
        if all(_bindable(h, p) for h in hosts for p in range(lo, lo + size)):
            return lo, lo + size - 1
    raise ClusterError(f"found no {size} free ports in 20000-60000 on {', '.join(hosts)}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class LocalUp:
    """The processes of `mantis up`; `start()`, then `supervise()` until `stop()`."""

    def __init__(
        self, data_dir: Path, agents: int = 2, *, port: int = DEFAULT_PORT, mesos_port: int = 0,
        agent_resources: str = AGENT_RESOURCES, api_token: str | None = None,
        log_level: str = "info",
    ) -> None:  # fmt: skip
        if agents < 1:
            raise ValueError("--agents must be >= 1")
        if agents > 250:
            raise ValueError("--agents must be <= 250 (one loopback address each)")
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.api_token = api_token
        self.log_level = log_level
        hosts = [f"127.0.0.{i + 2}" for i in range(agents)]
        if "ports:" not in agent_resources:
            lo, hi = free_port_block(hosts, AGENT_PORTS)
            agent_resources += f";ports:[{lo}-{hi}]"
        specs = [AgentSpec(agent_resources, args=("--hostname", h)) for h in hosts]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}  # fmt: skip
        self.cluster = LocalCluster(self.data_dir / "mesos", specs, port=mesos_port or None, env=env)
        self.env = env
        self.master: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._log: IO[bytes] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def master_log(self) -> Path:
        return self.data_dir / "master.log"

    def start(self, timeout: float = 30.0) -> None:
        """mesoslite, then the agents and the master together (the API comes up while the
        agents register), then wait until every agent is active."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster = self.cluster
        cluster.start_master(timeout)
        for i in range(len(cluster.agent_specs)):
            cluster.start_agent(i)
        self.start_master(timeout)
        n = len(cluster.agent_specs)
        cluster.wait_for_state(lambda s: s["activated_slaves"] >= n, timeout, f"{n} active agents")

    def start_master(self, timeout: float = 30.0) -> None:
        argv = [sys.executable, "-m", "adapters.cli.main", "--log-level", self.log_level,
                "master", "--data-dir", str(self.data_dir), "--mesos", self.cluster.address,
                "--port", str(self.port)]  # fmt: skip
        env = dict(self.env)
        if self.api_token:
            env["MANTIS_API_TOKEN"] = self.api_token
        self._log = self._log or open(self.master_log, "ab")  # noqa: SIM115 - closed in stop()
        self.master = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.master.poll() is not None:
                raise ClusterError(f"the master exited with {self.master.returncode} while "
                                   f"starting; see {self.master_log}")  # fmt: skip
            if time.monotonic() > deadline:
                raise ClusterError(f"the master did not answer in {timeout} s; see {self.master_log}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/api/v1/healthcheck", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def describe(self, out: TextIO) -> None:
        out.write(
            f"mantis is up:\n"
            f"  API          {self.url}/api/v1/jobClusters   (OpenAPI: {self.url}/api/v1/openapi.json)\n"
            f"  mesoslite    {self.cluster.url}/master/state\n"
            f"  agents       {len(self.cluster.agent_specs)} "
            f"(hostnames 127.0.0.2-127.0.0.{len(self.cluster.agent_specs) + 1})\n"
            f"  data folder  {self.data_dir}   (logs: master.log, mesos/*.log)\n"
            "Ctrl-C stops everything.\n"
        )
        out.flush()

    def supervise(self, should_stop: Callable[[], bool], poll: float = 0.2) -> None:
        """Until `should_stop()`: start the master again whenever it dies."""
        while not should_stop():
            master = self.master
            if master is not None and master.poll() is not None and not self._stopping:
                self.restarts += 1
                log.warning("master_exited_restarting", status=master.returncode,
                            restarts=self.restarts)  # fmt: skip
                self.start_master()
            time.sleep(poll)

    def stop(self) -> None:
        self._stopping = True
        if self.master is not None and self.master.poll() is None:
            self.master.send_signal(signal.SIGTERM)
            try:
                self.master.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait()
        self.cluster.stop()
        if self._log is not None:
            self._log.close()


EXAMPLE = ROOT / "examples" / "synthetic_counts.py"
EXAMPLE_CLUSTER = "synthetic-counts"


def start_example(client: MantisClient, user: str) -> str:
    """Upload the example, create its cluster if new, submit a job unless one runs; its id."""
    if not EXAMPLE.is_file():
        raise FileNotFoundError(f"the example job is missing: {EXAMPLE}")
    client.upload_artifact(EXAMPLE)
    if EXAMPLE_CLUSTER not in {c.get("name") for c in client.list_clusters()}:
        client.create_cluster(cluster_definition(
            EXAMPLE_CLUSTER, EXAMPLE.name, user, stages={1: 1, 2: 2}, cpus=0.5, memory=256,
            parameters={"eventsPerSecond": "2000"},
        ))  # fmt: skip
    running = client.list_jobs(EXAMPLE_CLUSTER)
    job = running[0] if running else client.submit_job(EXAMPLE_CLUSTER, user)
    return str(job["jobMetadata"]["jobId"])


def stream_example(up: LocalUp, out: TextIO, stopped: Callable[[], bool]) -> None:
    """Start the example and print its output; reconnect if the master restarts."""
    client = MantisClient(up.url, up.api_token)
    user = os.environ.get("USER") or "mantis"
    try:
        job_id = start_example(client, user)
    except (ApiError, MasterUnreachable, OSError) as e:
        log.error("example_failed", error=str(e))
        return
    out.write(f"example job {job_id} submitted: its workers start, then every second one line "
              f"per key (Ctrl-C stops)\n  curl -N {up.url}/jobconnectbyid/{job_id}\n")  # fmt: skip
    out.flush()
    while not stopped():
        try:
            for event in client.connect(cluster=EXAMPLE_CLUSTER):
                out.write(orjson.dumps(event).decode() + "\n")
                out.flush()
        except (ApiError, MasterUnreachable, OSError) as e:
            log.info("example_stream_reconnecting", error=str(e))
        time.sleep(1.0)


def run(args: argparse.Namespace) -> int:
    up = LocalUp(args.data_dir, args.agents, port=args.port, mesos_port=args.mesos_port,
                 agent_resources=args.agent_resources, api_token=args.api_token,
                 log_level=args.log_level)  # fmt: skip
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        up.start()
        up.describe(sys.stdout)
        if args.example:
            threading.Thread(target=stream_example, args=(up, sys.stdout, lambda: stop),
                             daemon=True, name="example").start()  # fmt: skip
        up.supervise(lambda: stop)
    finally:
        up.stop()
        sys.stdout.write("mantis stopped.\n")
    return 0

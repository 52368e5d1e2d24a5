"""The master's API: submit latency, 1,000 SSE clients on one job's output, `mantis up` to output.

Every figure is measured in this run, each against a peer or floor measured in the same run:

- ``submit_p50_ms`` / ``submit_p99_ms``: ``POST /api/v1/jobs`` answered 201 (one job of one
  worker), sequentially from one client. The master (adapters/cli/master.py ``MasterProcess``: the
  ControlPlane, the file store ``EventLog`` with fdatasync and group commit, the aiohttp API)
  runs in its own process with a resource manager that does nothing, so what is timed is the
  API, the core and the store, not Mesos. Target p99 <= 20 ms, with fsync. Floors in the same
  run: ``fdatasync`` of a ~200-byte append alone, and a bare aiohttp handler that parses the
  body and appends one fdatasync'd record (in a thread, as the store does) in a process of
  its own. ``submit_16_clients_*``: the same with 16 concurrent clients, where the store's
  group commit shares one fdatasync between the requests that arrive during a write (the bare
  handler's appends are not grouped: its figure shows what grouping saves).
- ``sse_1000_clients_p99_ms`` / ``sse_1000_clients_events_per_s``: a `mantis up` cluster runs
  bench/jobs/stamped_100_per_s.py (one worker; 100 events/s, each stamped with time.time() at
  birth); 1,000 clients in a few client processes hold ``GET /jobconnectbyid/{jobId}`` on the
  master. Identical subscriptions share one upstream connection to the sink worker
  (adapters/http/job_output.py), so the master reads each event once and fans it out to
  1,000 connections: 100,000 frames/s. Latency from the stamp to a client's receipt, p99
  over the events stamped in a window that starts after a warm-up (clients read on for
  GRACE_SECONDS after it, so late events count, and lost ones are missing from the rate);
  events/s delivered in total, and the fewest any one client got (every client must be
  served). Target p99 <= 50 ms at 100 events/s each. Peer in the same run: the same clients
  on the sink worker's own SSE port (runtime.sse.SseSink, Mantis' direct connection to a
  sink), which skips the master. ``--clients`` and ``--client-procs`` change the fan-out
  (the JSON keys keep their names), to see how latency grows with it.
- ``up_to_first_output_s``: from starting ``python -m adapters.cli.main up`` (mesoslite
  master, 2 agents, the master as a child) to the first event line a client receives from
  a job created and submitted as soon as the API answers (create cluster, submit, connect
  to ``/jobconnectbyid``). Target <= 10 s; the phases (API answering, job submitted, first
  event made in the worker, received) show where the time goes, and ``up_worker_attempts``
  how many workers it took (above 1: earlier ones failed). The agents are given a port
  range that is free right now (``agent_ports``), not the default 31000-32999 that other
  clusters on a shared machine hold. The cluster is stopped with SIGTERM afterwards, and
  every process it had started must be gone (``up_processes_left``, else exit status 1).

The clients are plain non-blocking sockets on epoll (an aiohttp client per connection would
cost the client processes several times the CPU, and they share 2 cores with the master).
The CPU the master, the worker and each client process used during the SSE window is printed
as a share of a core, and for the server as CPU per frame delivered (a master that falls
behind writes several frames at once to each client, so its cost per frame falls as its
latency grows). ``--quick`` runs small sizes (< 90 s); ``--json`` ends with one JSON object
of the figures; ``--only`` runs some parts.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402

from adapters.cli.master import MasterProcess, MasterSettings  # noqa: E402
from adapters.cli.up import AGENT_RESOURCES  # noqa: E402
from adapters.http.app import serve  # noqa: E402
from adapters.sim.fleet import IdleResourceManager  # noqa: E402
from common.logs import configure as configure_logging  # noqa: E402
from common.sse_client import sse_payloads  # noqa: E402

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = Path(__file__).resolve().parent / "jobs" / "stamped_100_per_s.py"
TARGETS = {"submit_p99_ms": 20.0, "sse_1000_clients_p99_ms": 50.0, "up_to_first_output_s": 10.0}
RATE = 100.0  # events/s of the stamped job, to every client
PROCESS_TIMEOUT = 120.0
GRACE_SECONDS = 1.0  # clients read this long after the window for its late events
PARTS = ["submit", "up"]  # "up": up_to_first_output, then the SSE clients on the same cluster
STAGE = {
    "numberOfInstances": 1,
    "machineDefinition": {
        "cpuCores": 0.1,
        "memoryMB": 64,
        "networkMbps": 1,
        "diskMB": 10,
        "numPorts": 1,
    },
    "scalable": False,
}


@dataclass(frozen=True)
class ApiSizes:
    submits: int
    concurrency: int
    clients: int
    client_procs: int
    sse_seconds: float
    sse_warm_seconds: float


FULL = ApiSizes(
    submits=1000,
    concurrency=16,
    clients=1000,
    client_procs=4,
    sse_seconds=10.0,
    sse_warm_seconds=2.0,
)
QUICK = ApiSizes(
    submits=200, concurrency=16, clients=1000, client_procs=4, sse_seconds=3.0, sse_warm_seconds=1.0
)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def cluster_body(name: str, artifact: str) -> dict[str, Any]:
    """A NamedJobDefinition of one stage of one worker running `artifact`."""
    definition = {
        "name": name,
        "user": "bench",
        "jobJarFileLocation": artifact,
        "version": "1",
        "schedulingInfo": {"stages": {"1": STAGE}},
    }
    return {"jobDefinition": definition, "owner": {"name": "bench"}}


def quiet_child(log_file: Path) -> None:
    """A server child logs as `mantis master` does (info, key=value), into a file."""
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    configure_logging(level="info")


# ---------------------------------------------------------------------------------------------
# Submit: the master with a resource manager that does nothing, and the floors.


def no_resources(
    settings: MasterSettings, loop: asyncio.AbstractEventLoop, ids: Any
) -> IdleResourceManager:
    """The ResourceManager port, doing nothing: no offers ever come, so submitted jobs wait
    for resources (their LaunchRequests only ask for a revive)."""
    return IdleResourceManager()


async def bare_app(folder: Path) -> tuple[web.AppRunner, int]:
    """The floor: POST /api/v1/jobs parses the JSON body and appends it, fdatasync'd in a
    thread (as the store writes), to one file; 201. No core, no grouping."""
    fd = os.open(folder / "bare.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(data: bytes) -> None:
        os.write(fd, data)
        os.fdatasync(fd)

    async def submit(request: web.Request) -> web.Response:
        body = await request.json(loads=orjson.loads)
        await asyncio.to_thread(write, orjson.dumps(body) + b"\n")
        return web.json_response({"jobMetadata": {"jobId": "bare"}}, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/jobs", submit)
    return await serve(app, HOST, 0)


def submit_server(kind: str, folder: Path, port_q: Queue[int], stop_q: Queue[str]) -> None:
    """A child process serving `kind` ("master" or "bare") until told to stop."""
    quiet_child(folder / f"{kind}.log")

    async def run() -> None:
        if kind == "master":
            master = MasterProcess(
                MasterSettings(data_dir=folder, port=0), resource_manager=no_resources
            )
            await master.start()
            port_q.put(int(master.url.rsplit(":", 1)[1]))
            await asyncio.to_thread(stop_q.get)
            await master.stop()
        else:
            runner, port = await bare_app(folder)
            port_q.put(port)
            await asyncio.to_thread(stop_q.get)
            await runner.cleanup()

    asyncio.run(run())


async def submissions(url: str, n: int, concurrency: int, warm: int) -> tuple[list[float], float]:
    """Seconds per `POST /api/v1/jobs` (after `warm` untimed ones), and submissions/s, from
    `concurrency` clients each submitting one job after another."""
    body = {"name": "bench", "user": "bench"}
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as http:

        async def one(record: bool) -> None:
            t = time.perf_counter()
            async with http.post("/api/v1/jobs", json=body) as resp:
                await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"submit: {resp.status} {await resp.text()}")
            if record:
                latencies.append(time.perf_counter() - t)

        async def client(count: int) -> None:
            for _ in range(count):
                await one(True)

        for _ in range(warm):
            await one(False)
        t0 = time.perf_counter()
        await asyncio.gather(*(client(n // concurrency) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, len(latencies) / wall


def fsync_floor(folder: Path, n: int) -> list[float]:
    """Seconds per ~200-byte append + fdatasync on the data folder's disk."""
    record = b"x" * 200
    fd = os.open(folder / "floor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, record)
            os.fdatasync(fd)
            out.append(time.perf_counter() - t)
        return out
    finally:
        os.close(fd)


@contextlib.contextmanager
def submit_target(ctx: mp.context.SpawnContext, kind: str, folder: Path) -> Iterator[str]:
    """The URL of a `kind` server in a child process, stopped on exit."""
    port_q: Queue[int] = ctx.Queue()
    stop_q: Queue[str] = ctx.Queue()
    child = ctx.Process(target=submit_server, args=(kind, folder, port_q, stop_q), name=kind)
    child.start()
    try:
        yield f"http://{HOST}:{port_q.get(timeout=60)}"
    finally:
        stop_q.put("stop")
        child.join(30)
        if child.is_alive():
            child.terminate()
            child.join(5)


@dataclass
class SubmitRun:
    latencies: list[float]
    per_s: float

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1e3


def bench_submit(ctx: mp.context.SpawnContext, sizes: ApiSizes) -> dict[str, SubmitRun]:
    """Sequential and concurrent runs against the master and the bare handler."""
    runs: dict[str, SubmitRun] = {}
    with tempfile.TemporaryDirectory(prefix="mantis-bench-api-") as tmp:
        folder = Path(tmp)
        runs["fsync"] = SubmitRun(fsync_floor(folder, sizes.submits), 0.0)
        for kind in ("master", "bare"):
            data = folder / kind
            data.mkdir()
            with submit_target(ctx, kind, data) as url:
                if kind == "master":
                    asyncio.run(create_cluster(url, "bench", "bench-artifact.py"))
                for concurrency in (1, sizes.concurrency):
                    lat, per_s = asyncio.run(submissions(url, sizes.submits, concurrency, 20))
                    runs[f"{kind}_{concurrency}"] = SubmitRun(lat, per_s)
    return runs


async def create_cluster(url: str, name: str, artifact: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/v1/jobClusters", json=cluster_body(name, artifact)) as resp,
    ):
        if resp.status != 201:
            raise RuntimeError(f"create cluster: {resp.status} {await resp.text()}")


# ---------------------------------------------------------------------------------------------
# `mantis up`: the cluster as a user starts it, its processes, and the first output line.


def proc_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, ended but not reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(root: int) -> dict[int, str]:
    """Every live process under `root`: pid -> command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            found[pid] = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
                .strip()
            )
        todo.extend(children.get(pid, []))
    return found


def worker_pid(tree: dict[int, str]) -> int:
    """The worker's Python process (the agent starts it through a shell)."""
    return next(
        p
        for p, cmd in tree.items()
        if "runtime.worker" in cmd and not cmd.split()[0].endswith("sh")
    )


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def agent_ports(first: int = 40000, size: int = 100) -> tuple[int, int]:
    """A range of `size` ports free on both agents' addresses (127.0.0.2 and .3).

    The agents of `mantis up` offer ports 31000-32999 by default, and the matcher takes the
    lowest: on a machine where other clusters run (tests, other benches), a worker given a
    port someone else holds fails to bind and is resubmitted after a back-off, which would
    count seconds against `mantis up` that belong to the neighbours."""
    for lo in range(first, 60000, size):
        with contextlib.ExitStack() as stack:
            try:
                for host in ("127.0.0.2", "127.0.0.3"):
                    for port in range(lo, lo + size):
                        sock = stack.enter_context(socket.socket())
                        sock.bind((host, port))
            except OSError:
                continue
            return lo, lo + size - 1
    raise RuntimeError("no free range of ports for the agents")


@dataclass
class Up:
    """A running `mantis up`: its process, its API and when it was started."""

    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    t0: float
    """time.monotonic() just before the command started."""
    wall0: float
    """time.time() at the same moment."""
    agent_ports: tuple[int, int]
    processes: int = 0
    """How many processes it had under it just before it was stopped."""
    left: dict[int, str] | None = None
    """Those of them still running after it exited."""
    stop_s: float = 0.0

    def check(self) -> None:
        if self.proc.poll() is not None:
            log = (self.data_dir.parent / "up.out").read_text()[-2000:]
            raise RuntimeError(f"mantis up exited with {self.proc.returncode}:\n{log}")


UP_TOKEN = secrets.token_urlsafe(16)
UP_AUTH = {"Authorization": f"Bearer {UP_TOKEN}"}  # mantis up protects its API with a token


@contextlib.contextmanager
def mantis_up(folder: Path) -> Iterator[Up]:
    """`python -m adapters.cli.main up` on a free port with a data folder in `folder`; on exit
    SIGTERM, wait, and record what is left of the processes it started."""
    port, (lo, hi) = free_port(), agent_ports()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MANTIS_API_TOKEN": UP_TOKEN}
    resources = AGENT_RESOURCES.replace("[31000-32999]", f"[{lo}-{hi}]")
    argv = [
        sys.executable,
        "-m",
        "adapters.cli.main",
        "up",
        "--data-dir",
        str(folder / "data"),
        "--port",
        str(port),
        "--agent-resources",
        resources,
    ]
    with (folder / "up.out").open("wb") as out:
        t0, wall0 = time.monotonic(), time.time()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        up = Up(proc, f"http://{HOST}:{port}", folder / "data", t0, wall0, (lo, hi))
        try:
            yield up
        finally:
            tree = descendants(proc.pid)
            up.processes = len(tree)
            t = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            up.stop_s = time.monotonic() - t
            deadline = time.monotonic() + 5  # orphans a stopped agent left may take a moment
            while any(proc_alive(p) for p in tree) and time.monotonic() < deadline:
                time.sleep(0.05)
            up.left = {p: cmd for p, cmd in tree.items() if proc_alive(p)}


@dataclass
class FirstOutput:
    job_id: str
    api_s: float
    """Seconds from the start of `mantis up` to the API's first 200 on /healthcheck."""
    submitted_s: float
    made_s: float
    """... to the stamp of the first event (made by the worker's source)."""
    first_s: float
    """... to the first event line at the client."""


async def first_output(up: Up) -> FirstOutput:
    """Poll the API, create the cluster, submit, connect; the first event line's arrival."""
    deadline = up.t0 + PROCESS_TIMEOUT
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=2)
    async with aiohttp.ClientSession(up.url, timeout=timeout, headers=UP_AUTH) as http:
        while True:
            up.check()
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not answer")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get("/api/v1/healthcheck") as resp:
                    if resp.status == 200:
                        break
            await asyncio.sleep(0.02)
        api_s = time.monotonic() - up.t0
        async with http.post(
            "/api/v1/jobClusters", json=cluster_body("stamped", str(ARTIFACT))
        ) as r:
            if r.status != 201:
                raise RuntimeError(f"create cluster: {r.status} {await r.text()}")
        async with http.post("/api/v1/jobs", json={"name": "stamped", "user": "bench"}) as r:
            if r.status != 201:
                raise RuntimeError(f"submit: {r.status} {await r.text()}")
            jid = (await r.json())["jobMetadata"]["jobId"]
        submitted_s = time.monotonic() - up.t0
        async for payloads in sse_payloads(http, f"/jobconnectbyid/{jid}"):
            first_s = time.monotonic() - up.t0
            made_s = orjson.loads(payloads[0])["t"] - up.wall0
            return FirstOutput(jid, api_s, submitted_s, made_s, first_s)
    raise RuntimeError("the job's output ended before its first event")


async def sink_address(up: Up, jid: str) -> tuple[str, int, int]:
    """(host, port, worker number) of the job's sink worker, from the job's worker list; a
    number above 1 means that earlier attempts failed."""
    async with (
        aiohttp.ClientSession(up.url, headers=UP_AUTH) as http,
        http.get(f"/api/v1/jobs/{jid}") as r,
    ):
        body = await r.json()
    (worker,) = [w for w in body["workerMetadataList"] if w["state"] == "Started"]
    return str(worker["slave"]), int(worker["ports"][0]), int(worker["workerNumber"])


# ---------------------------------------------------------------------------------------------
# SSE clients: processes of plain sockets on epoll, timing every stamped frame.

_STAMP = re.compile(rb'data: \{"t":([0-9.]+),"i":')


@dataclass
class ClientsReport:
    name: str
    latencies: array.array[float]
    """Seconds from stamp to receipt, of the events stamped inside the window."""
    counts: list[int]
    """Events stamped inside the window that each client received."""
    cpu: float


def sse_clients(
    host: str,
    port: int,
    path: str,
    n: int,
    ready_q: Queue[int],
    window: Any,
    result_q: Queue[ClientsReport],
) -> None:
    """`n` connections GET `path`; once each has had a frame, say so on `ready_q`; time the
    frames stamped between window[0] and window[1] (time.time(); 0 until the parent sets
    them), read until GRACE_SECONDS after the window so that late ones count too, then
    report and hang up."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}
    for _ in range(n):
        sock = socket.create_connection((host, port), timeout=30)
        sock.sendall(request)
        sock.setblocking(False)
        socks[sock.fileno()] = sock
        ep.register(sock.fileno(), select.EPOLLIN)
    tails = dict.fromkeys(socks, b"")
    counts = dict.fromkeys(socks, 0)
    waiting, ready = set(socks), False
    latencies: array.array[float] = array.array("d")
    deadline = time.monotonic() + PROCESS_TIMEOUT
    c0 = 0.0
    while time.monotonic() < deadline:
        start, end = window[0], window[1]
        if end and time.time() >= end + GRACE_SECONDS:
            break
        if start and not c0 and time.time() >= start:
            c0 = time.process_time()
        for fd, _ in ep.poll(0.2):
            try:
                data = socks[fd].recv(1 << 16)
            except BlockingIOError:
                continue
            now = time.time()
            if not data:
                raise RuntimeError(f"{host}:{port}{path}: the server closed a stream")
            buf = tails[fd] + data
            last = 0
            for m in _STAMP.finditer(buf):
                last = m.end()
                stamp = float(m.group(1))
                if start <= stamp < end:
                    latencies.append(now - stamp)
                    counts[fd] += 1
            if last:
                waiting.discard(fd)
            tails[fd] = buf[last:][-300:]
        if not waiting and not ready:
            ready_q.put(n)
            ready = True
    name = mp.current_process().name
    result_q.put(ClientsReport(name, latencies, list(counts.values()), time.process_time() - c0))
    for sock in socks.values():
        sock.close()
    ep.close()


@dataclass
class SseRun:
    latencies: list[float]
    counts: list[int]
    seconds: float
    cpu: dict[str, float]
    """Share of a core each watched process used during the window."""

    @property
    def per_s(self) -> float:
        return sum(self.counts) / self.seconds

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1e3


def bench_sse(
    ctx: mp.context.SpawnContext,
    host: str,
    port: int,
    path: str,
    sizes: ApiSizes,
    watch: dict[str, int],
) -> SseRun:
    """`sizes.clients` clients in `sizes.client_procs` processes on host:port/path; once every
    one has had a frame, a warm-up, then the measured window. `watch`: processes (name ->
    pid) whose CPU share over the window is reported."""
    ready_q: Queue[int] = ctx.Queue()
    result_q: Queue[ClientsReport] = ctx.Queue()
    window = ctx.Array("d", 2)
    procs = [
        ctx.Process(
            target=sse_clients,
            args=(
                host,
                port,
                path,
                len(range(i, sizes.clients, sizes.client_procs)),
                ready_q,
                window,
                result_q,
            ),
            name=f"clients{i}",
        )
        for i in range(sizes.client_procs)
    ]
    for p in procs:
        p.start()
    try:
        wait_for(procs, ready_q, len(procs), "every client's first frame")
        start = time.time() + sizes.sse_warm_seconds
        end = start + sizes.sse_seconds
        window[0], window[1] = start, end
        time.sleep(max(0.0, start - time.time()))  # a bench's wall clock, not a test's wait
        c0 = {name: proc_cpu(pid) for name, pid in watch.items()}
        time.sleep(max(0.0, end - time.time()))
        cpu = {name: (proc_cpu(pid) - c0[name]) / sizes.sse_seconds for name, pid in watch.items()}
        reports = wait_for(procs, result_q, len(procs), "the clients' reports")
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
    span = sizes.sse_seconds + GRACE_SECONDS
    cpu.update({r.name: r.cpu / span for r in sorted(reports, key=lambda r: r.name)})
    latencies = sorted(x for r in reports for x in r.latencies)  # percentile's sorts are then O(n)
    return SseRun(latencies, [c for r in reports for c in r.counts], sizes.sse_seconds, cpu)


def wait_for(procs: list[Any], q: Queue[Any], n: int, what: str) -> list[Any]:
    """`n` items from `q`; fails fast if one of `procs` dies first."""
    got: list[Any] = []
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while len(got) < n:
        try:
            got.append(q.get(timeout=0.5))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"{dead[0].name} failed: exit code {dead[0].exitcode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} in {PROCESS_TIMEOUT:.0f} s") from None
    return got


# ---------------------------------------------------------------------------------------------
# Reporting.


def show(name: str, value: float, unit: str) -> None:
    """A figure against its target (all three are upper bounds): x > 1 is within it."""
    target = TARGETS[name]
    print(
        f"{name:30s} {value:>10.2f} {unit:2s}  target <= {target:.0f} {unit}   "
        f"x{target / value:.2f}"
    )


def shares(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {share * 100:.0f}%" for name, share in cpu.items())


def per_frame(run: SseRun, name: str) -> str:
    """The process's CPU per frame delivered, and what a core of its own would deliver."""
    share = run.cpu[name]
    return (
        f"{name} CPU per frame delivered: {share / run.per_s * 1e6:.1f} us; with a core "
        f"of its own: {run.per_s / share:,.0f} frames/s"
    )


def report_submit(runs: dict[str, SubmitRun], sizes: ApiSizes, figures: dict[str, float]) -> None:
    seq, conc = runs["master_1"], runs[f"master_{sizes.concurrency}"]
    bare_seq, bare_conc = runs["bare_1"], runs[f"bare_{sizes.concurrency}"]
    figures.update(
        {
            "submit_p50_ms": round(seq.p(50), 3),
            "submit_p99_ms": round(seq.p(99), 3),
            "submit_per_s": round(seq.per_s),
            "submit_16_clients_p50_ms": round(conc.p(50), 3),
            "submit_16_clients_p99_ms": round(conc.p(99), 3),
            "submit_16_clients_per_s": round(conc.per_s),
            "bare_submit_p99_ms": round(bare_seq.p(99), 3),
            "bare_submit_16_clients_per_s": round(bare_conc.per_s),
            "fdatasync_p99_ms": round(runs["fsync"].p(99), 3),
        }
    )
    show("submit_p99_ms", seq.p(99), "ms")
    n = len(seq.latencies)
    print(
        f"  one client, {n:,} jobs: p50 {seq.p(50):.2f} ms, p99.9 {seq.p(99.9):.2f} ms, max "
        f"{max(seq.latencies) * 1e3:.2f} ms; {seq.per_s:,.0f} submissions/s"
    )
    print(
        f"  {sizes.concurrency} clients: p50 {conc.p(50):.2f} ms, p99 {conc.p(99):.2f} ms; "
        f"{conc.per_s:,.0f} submissions/s (group commit: x{conc.per_s / seq.per_s:.1f} "
        f"one client's)"
    )
    fs = runs["fsync"]
    print(
        f"  floor, fdatasync of a 200-byte append alone: p50 {fs.p(50):.2f} ms, p99 "
        f"{fs.p(99):.2f} ms"
    )
    print(
        f"  floor, bare aiohttp handler + one fdatasync'd append: one client p50 "
        f"{bare_seq.p(50):.2f} ms, p99 {bare_seq.p(99):.2f} ms ({bare_seq.per_s:,.0f}/s); "
        f"{sizes.concurrency} clients p99 {bare_conc.p(99):.2f} ms ({bare_conc.per_s:,.0f}/s)"
    )
    print(
        f"  the master's p99 is x{seq.p(99) / bare_seq.p(99):.2f} the bare handler's; with "
        f"{sizes.concurrency} clients it serves x{conc.per_s / bare_conc.per_s:.2f} its "
        f"submissions/s"
    )


def report_up(up: Up, first: FirstOutput, number: int, figures: dict[str, float]) -> None:
    figures["up_to_first_output_s"] = round(first.first_s, 3)
    figures["up_worker_attempts"] = number
    show("up_to_first_output_s", first.first_s, "s")
    print(
        f"  API answering at {first.api_s:.2f} s, job submitted at {first.submitted_s:.2f} s, "
        f"first event made by the worker at {first.made_s:.2f} s, received at "
        f"{first.first_s:.2f} s; the worker started at attempt {number}; agents offer "
        f"ports {up.agent_ports[0]}-{up.agent_ports[1]}"
    )


def report_sse(run: SseRun, peer: SseRun, sizes: ApiSizes, figures: dict[str, float]) -> None:
    figures.update(
        {
            "sse_1000_clients_p99_ms": round(run.p(99), 3),
            "sse_1000_clients_p50_ms": round(run.p(50), 3),
            "sse_1000_clients_events_per_s": round(run.per_s),
            "sse_1000_clients_min_client_events_per_s": round(min(run.counts) / run.seconds, 1),
            "sse_direct_1000_clients_p99_ms": round(peer.p(99), 3),
        }
    )
    show("sse_1000_clients_p99_ms", run.p(99), "ms")
    want = sizes.clients * RATE
    print(
        f"  {sizes.clients:,} clients on /jobconnectbyid, one shared upstream to the sink: "
        f"{run.per_s:,.0f} events/s delivered (x{run.per_s / want:.2f} of {want:,.0f}), each "
        f"client {min(run.counts) / run.seconds:.1f}-{max(run.counts) / run.seconds:.1f}/s; "
        f"p50 {run.p(50):.2f} ms, p99.9 {run.p(99.9):.2f} ms, max "
        f"{max(run.latencies) * 1e3:.2f} ms over {len(run.latencies):,} receipts in "
        f"{run.seconds:.0f} s"
    )
    print(f"  CPU, share of a core: {shares(run.cpu)}")
    print(f"  {per_frame(run, 'master')}")
    print(
        f"  peer, the same clients on the sink worker's own SSE port (no master): "
        f"{peer.per_s:,.0f} events/s, p50 {peer.p(50):.2f} ms, p99 {peer.p(99):.2f} ms; the "
        f"master's p99 is x{run.p(99) / peer.p(99):.2f} of it"
    )
    print(f"  CPU, share of a core: {shares(peer.cpu)}")
    print(f"  {per_frame(peer, 'worker')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=PARTS,
        help="run only these parts (the JSON then has only their keys)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=None,
        help="SSE clients (default 1,000; the JSON keys keep their names)",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=None,
        help="processes the SSE clients are spread over (default 4)",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    sizes = replace(
        sizes,
        clients=args.clients or sizes.clients,
        client_procs=args.client_procs or sizes.client_procs,
    )
    ctx = mp.get_context("spawn")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    figures: dict[str, float] = {}
    if "submit" in args.only:
        report_submit(bench_submit(ctx, sizes), sizes, figures)
    if "up" in args.only:
        with tempfile.TemporaryDirectory(prefix="mantis-bench-up-") as tmp:
            with mantis_up(Path(tmp)) as up:
                first = asyncio.run(first_output(up))
                host, port, number = asyncio.run(sink_address(up, first.job_id))
                tree = descendants(up.proc.pid)
                watch = {
                    "master": int((up.data_dir / "master.pid").read_text()),
                    "worker": worker_pid(tree),
                }
                run = bench_sse(
                    ctx,
                    HOST,
                    int(up.url.rsplit(":", 1)[1]),
                    f"/jobconnectbyid/{first.job_id}",
                    sizes,
                    watch,
                )
                peer = bench_sse(ctx, host, port, "/", sizes, {"worker": watch["worker"]})
            report_up(up, first, number, figures)
            report_sse(run, peer, sizes, figures)
            left = up.left or {}
            figures["up_processes_left"] = len(left)
            print(
                f"  mantis up stopped by SIGTERM in {up.stop_s:.2f} s; of its {up.processes} "
                f"processes {len(left)} left"
                + "".join(f"\n    left: {p} {c}" for p, c in left.items())
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps(figures))
    if figures.get("up_processes_left"):
        sys.exit(1)


if __name__ == "__main__":
    main()

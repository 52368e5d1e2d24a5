"""Streams of the worker runtime: one worker-to-worker hop, the SSE sink, and a 2-stage job.

Every figure is measured in this run, with senders, servers and clients in separate processes
(multiprocessing, spawn) so that no figure is bound by one process:

- ``hop_events_per_s``: a StageOutputServer (blocking mode) in one process sends ~100-byte
  events, each orjson-encoded in batches, over TCP to a StageInput in another that decodes
  them; counted at the receiver. Target 1.2 M/s (the bare link with orjson measured 1.66 M).
- ``sse_1_client_events_per_s``: an SseSink (blocking mode, so nothing is dropped) to one
  client process counting ``data:`` frames. Target 1.5 M/s.
- ``sse_100_clients_events_per_s``: the same to 100 connections with distinct clientIds
  (everyone gets everything) spread over client processes; total delivered. Target 3 M/s.
- ``sse_100_clients_p99_ms``: 1,000 events/s, each stamped at emit and timed at receipt by 100
  clients (the first half second is warm-up); p99 over all receipts. Target <= 5 ms. Its peer
  in the same run: the same events to the same clients from a plain loop of blocking sends on
  bare sockets, the floor that the machine's load and the clients leave.

A job end to end, as real worker processes (``python -m runtime.worker``: stage 1 x1, stage 2
x1) placed by the real master service on one local agent (``adapters.cli.local.ProcessMaster``:
no Mesos between them, so the figures are the job's own).
The job is bench/jobs/keyed_count.py: a synthetic source of ~100-byte events over 1,000 keys,
filter/map and key (one KeyStage with a batch function), then a keyed count in tumbling time
windows of 0.5 s (a GroupToScalarStage) to the SSE sink, lossless (blocking outputs).

- ``job_events_per_s``: source events/s through the job, from the counts its windows carry
  to an SSE client: the middle windows (not the first and the last, which are partly idle;
  so process start-up is left out) give events counted per second, scaled by the share of
  source events that pass the filter (87 in 97). Every event must be counted in the end, or
  the run fails. Target 500 k/s.
- ``bytewax_events_per_s``: the peer, bytewax 0.21 (the ``bench`` extra: ``pip install -e
  '.[bench]'``, which ``make bench`` installs; skipped without it) running the same functions
  in one process, one worker, with the job's input batch (``bytewax_batch``: the source's
  1,024 events a batch), the same generator, ``count_window`` over the same windows, to a sink
  that adds up the counts. ``job_vs_bytewax`` is the ratio at that matched batch; target
  >= 1.5. The second row, ``bytewax_batch_1_events_per_s`` and ``job_vs_bytewax_batch_1``, is
  bytewax with one event per item. Its windowing is by far its largest cost, so the run also
  shows bytewax with the filter and map only (0.21-0.28 M/s at batch 1, measured earlier on a
  quieter 2-core machine, is that kind of run).
- ``mql_ns_per_event``: what a typical MQL query (common.mql: a where of three conditions, one
  a prefix regex, and a select of three fields; 8 % of the events pass) costs a sink
  connection per event, over batches of BATCH events in this process; with the where alone,
  the select alone, a regex that RE2 must run, the framing the sink does anyway
  (common.sse.frame_all) for scale, and ``mql_compile_us``, the parse and compile once per
  connection.
- ``e2e_p99_ms``: the per-event variant bench/jobs/keyed_count_events.py (the same stage 1;
  stage 2 a running count per key that emits every event at once, with the time.monotonic()
  stamp the source put on it) at 10,000 events/s; one client process times every event from
  that stamp to its receipt, so the latency covers the source's batching, both stages, the
  TCP hop and the SSE sink. Windowed counts would add the wait for their window to close,
  which is the window's length, not the job's latency (the throughput run shows how long
  after its close a window's counts arrive). p99 after a warm-up. Target <= 20 ms.

Each figure comes with the CPU time per event of every process (``with a core each``: the rate
if each process had a core to itself), since this 2-core machine is shared and wall-clock
rates move with its load; ``--only`` runs some parts, ``--uvloop`` runs the servers' loops on
uvloop where it is installed (it is not a dependency).

Timing across processes uses time.monotonic (CLOCK_MONOTONIC, shared by all processes).
``--quick`` runs small sizes; ``--json`` ends with one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import multiprocessing as mp
import os
import queue
import re
import select
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import structlog  # noqa: E402

from bench.jobs import keyed_count  # noqa: E402
from common.mql import compile_query  # noqa: E402
from common.sse import frame_all  # noqa: E402
from common.sse_client import sse_payloads  # noqa: E402
from common.sse_sink import SseSink  # noqa: E402
from runtime.stage_input import StageInput  # noqa: E402
from runtime.stage_output import StageOutputServer  # noqa: E402
from runtime.transport import Backpressure, Endpoint  # noqa: E402
from runtime.tuning import tune_gc  # noqa: E402

HOST = "127.0.0.1"
BATCH = 1024
TARGETS = {
    "hop_events_per_s": 1_200_000.0,
    "sse_1_client_events_per_s": 1_500_000.0,
    "sse_100_clients_events_per_s": 3_000_000.0,
    "sse_100_clients_p99_ms": 5.0,
    "job_events_per_s": 500_000.0,
    "job_vs_bytewax": 1.5,
    "e2e_p99_ms": 20.0,
}
BARE_LINK_ORJSON = (
    1_660_000.0  # measured earlier (2 cores): the same link, orjson per event, batch 1024
)
BYTEWAX_BATCH_1 = "0.21-0.28 M"  # measured earlier (2 cores): bytewax 0.21, one worker, batch 1
E2E_RATE = 10_000.0
PROCESS_TIMEOUT = 300.0
PARTS = ["codec", "mql", "hop", "sse1", "sse100", "latency", "job", "bytewax", "e2e"]
MQL_QUERY = (
    "select id, key, value from stream where value >= 20 and key ==~ /user-00.*/ and url != null"
)
MQL_RE2_WHERE = "key ==~ /user-0[0-4][0-9]+/"
"""A pattern that is not a literal between ``.*``: RE2 runs it."""
JOBS = Path(__file__).resolve().parent / "jobs"


def in_child(coro: Any) -> None:
    """Run a child process's coroutine as a worker would: warnings-only logs, the worker GC
    tuning (runtime.tuning; off with --default-gc), and a time limit."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if os.environ.get("MANTIS_BENCH_DEFAULT_GC") != "1":
        tune_gc()
    if os.environ.get("MANTIS_BENCH_UVLOOP") == "1":
        importlib.import_module("uvloop").install()  # optional, not a dependency
    asyncio.run(asyncio.wait_for(coro, PROCESS_TIMEOUT))


def finish(*procs: mp.process.BaseProcess) -> None:
    """Join child processes; end any that are stuck."""
    for proc in procs:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def make_events(n: int = BATCH) -> list[dict[str, Any]]:
    """~100-byte events (JSON), all different, of four fields.

    The shape matters: orjson decodes a ~100-byte event of four fields about 1.5x as fast as
    one of six short fields (more keys and values, same bytes).
    """
    return [
        {
            "id": 1_000_000 + i,
            "key": f"user-{i % 1000:04d}",
            "value": i % 97,
            "url": f"https://example.com/home/index.html?ref=feed&n={i % 10}",
        }
        for i in range(n)
    ]


@dataclass
class StreamSizes:
    hop_events: int
    sse_1_events: int
    sse_100_events: int  # per client
    latency_seconds: float
    client_procs: int
    job_events: int
    bytewax_events: int
    e2e_seconds: float
    e2e_warm_seconds: float


FULL = StreamSizes(
    hop_events=3_000_000,
    sse_1_events=4_000_000,
    sse_100_events=40_000,
    latency_seconds=5.0,
    client_procs=2,
    job_events=8_000_000,
    bytewax_events=300_000,
    e2e_seconds=8.0,
    e2e_warm_seconds=2.0,
)
QUICK = StreamSizes(
    hop_events=300_000,
    sse_1_events=400_000,
    sse_100_events=5_000,
    latency_seconds=1.5,
    client_procs=2,
    job_events=1_500_000,
    bytewax_events=40_000,
    e2e_seconds=3.0,
    e2e_warm_seconds=1.0,
)


# ---------------------------------------------------------------------------------------------
# Each child process puts one Report on the result queue: the wall-clock window of its
# measured part, the events it handled there, and the CPU time it spent on them.


@dataclass
class Report:
    role: str
    t0: float
    t1: float
    events: int
    cpu: float
    latencies: list[float] = field(default_factory=list)


def whole_batches(n: float) -> int:
    return max(1, int(n) // BATCH) * BATCH


def collect(procs: list[mp.process.BaseProcess], result_q: Queue[Report], n: int) -> list[Report]:
    """`n` reports from `procs`; fails fast if one of them dies instead of reporting."""
    reports: list[Report] = []
    deadline = time.monotonic() + PROCESS_TIMEOUT
    try:
        while len(reports) < n:
            try:
                reports.append(result_q.get(timeout=0.5))
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(
                        f"{dead[0].name} failed: exit code {dead[0].exitcode}"
                    ) from None
                if time.monotonic() > deadline:
                    raise TimeoutError("no report in time") from None
        return reports
    finally:
        finish(*procs)


# ---------------------------------------------------------------------------------------------
# One hop: sender and receiver processes.


def hop_sender(port_q: Queue[int], result_q: Queue[Report], total: int) -> None:
    async def run() -> None:
        out = StageOutputServer(backpressure=Backpressure.BLOCKING, batch_size=BATCH)
        port_q.put(await out.start())
        await out.wait_for_connections(1, timeout=60)
        events = make_events()
        t0, c0 = time.monotonic(), time.process_time()
        for _ in range(whole_batches(total) // BATCH):
            await out.send_many(events)
        out.flush()
        while out.sent_count < whole_batches(total):
            await asyncio.sleep(0.001)
        result_q.put(
            Report("sender", t0, time.monotonic(), out.sent_count, time.process_time() - c0)
        )
        while out.connection_count:  # until the receiver has had everything and hangs up
            await asyncio.sleep(0.01)
        await out.close()

    in_child(run())


def hop_receiver(port: int, result_q: Queue[Report], total: int) -> None:
    async def run() -> None:
        inp = StageInput("stage_2_index_0")
        inp.set_upstreams([Endpoint(HOST, port)])
        first = await inp.get_batch()
        t0, c0, count = time.monotonic(), time.process_time(), 0
        want = whole_batches(total) - len(first)
        while count < want:
            count += len(await inp.get_batch())
        result_q.put(Report("receiver", t0, time.monotonic(), count, time.process_time() - c0))
        await inp.close()

    in_child(run())


def bench_hop(ctx: mp.context.SpawnContext, total: int) -> tuple[float, Report, Report]:
    """(events/s at the receiver, sender report, receiver report)."""
    port_q: Queue[int] = ctx.Queue()
    result_q: Queue[Report] = ctx.Queue()
    sender = ctx.Process(target=hop_sender, args=(port_q, result_q, total))
    sender.start()
    port = port_q.get(timeout=60)
    receiver = ctx.Process(target=hop_receiver, args=(port, result_q, total))
    receiver.start()
    reports = {r.role: r for r in collect([receiver, sender], result_q, 2)}
    recv = reports["receiver"]
    return recv.events / (recv.t1 - recv.t0), reports["sender"], recv


# ---------------------------------------------------------------------------------------------
# SSE: a server process and client processes.


def sse_server(
    port_q: Queue[int], result_q: Queue[Report], clients: int, mode: str, amount: float
) -> None:
    """mode "throughput": send `amount` events as fast as the clients take them (blocking);
    mode "latency": publish 1,000 stamped events/s for `amount` seconds (lossy, the default)."""

    async def run() -> None:
        blocking = Backpressure.BLOCKING if mode == "throughput" else Backpressure.LOSSY
        sink = SseSink(backpressure=blocking)
        port_q.put(await sink.serve(HOST, 0))
        await sink.wait_for_subscribers(clients, timeout=120)
        t0, c0 = time.monotonic(), time.process_time()
        if mode == "throughput":
            events = make_events()
            for _ in range(whole_batches(amount) // BATCH):
                await sink.send_many(events)
        else:
            loop = asyncio.get_running_loop()
            n = int(amount * 1000)
            start = loop.time() + 0.01
            pad = "x" * 60
            for i in range(n):
                delay = start + i / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sink.publish({"t": time.monotonic(), "i": i, "pad": pad})
        # Clients hang up once they have everything; if some events were dropped, they
        # never will, and closing the sink ends their streams.
        with contextlib.suppress(TimeoutError):
            await sink.wait_for_subscribers(0, timeout=10)
        result_q.put(
            Report("server", t0, time.monotonic(), sink.sent_count, time.process_time() - c0)
        )
        await sink.close()

    in_child(run())


def bare_server(
    port_q: Queue[int], result_q: Queue[Report], clients: int, mode: str, amount: float
) -> None:
    """The latency peer: the same stamped events at the same rate to the same clients, from a
    plain loop of blocking ``send`` calls on bare sockets (no asyncio, no aiohttp, no sink):
    the floor this machine and these clients allow right now."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, 0))
    srv.listen(clients)
    port_q.put(srv.getsockname()[1])
    conns = []
    for _ in range(clients):
        conn, _ = srv.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        conns.append(conn)
    t0, c0 = time.monotonic(), time.process_time()
    start = t0 + 0.01
    pad = "x" * 60
    for i in range(int(amount * 1000)):
        delay = start + i / 1000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame = b"data: " + orjson.dumps({"t": time.monotonic(), "i": i, "pad": pad}) + b"\n\n"
        for conn in conns:
            conn.send(frame)
    sent = len(conns) * int(amount * 1000)
    result_q.put(Report("server", t0, time.monotonic(), sent, time.process_time() - c0))
    for conn in conns:
        conn.close()
    srv.close()


_STAMP = re.compile(rb'data: \{"t":([0-9.]+),"i":([0-9]+)')


class _Client:
    """A bare SSE client on a plain socket: counts frames (and, for latency, times them)."""

    def __init__(
        self,
        sock: socket.socket,
        target: int,
        latencies: list[float] | None,
        warm: int,
        warm_until: float = 0.0,
    ) -> None:
        self.sock = sock
        self.target = target
        self.latencies = latencies
        self.warm = warm
        self.warm_until = warm_until
        self.count = 0
        self.in_body = False
        self.ended_nl = False
        self.tail = b""
        self.t_first = 0.0
        self.c_first = 0.0
        self.t_last = 0.0

    def received(self, data: bytes, now: float) -> bool:
        """Account for `data`; True once the client has everything."""
        if not self.in_body:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                return False
            self.in_body = True
            data = data[end + 4 :]
            if not data:
                return False
        if not self.count:
            self.t_first, self.c_first = now, time.process_time()
        # Frames end in a blank line; chunk framing (hex size, CRLF) never makes one.
        n = data.count(b"\n\n")
        if self.ended_nl and data[:1] == b"\n":
            n += 1
        self.ended_nl = data[-1:] == b"\n"
        self.count += n
        if self.latencies is not None:
            buf = self.tail + data
            end = 0
            warm = now < self.warm_until
            for m in _STAMP.finditer(buf):
                if not warm and int(m.group(2)) >= self.warm:
                    self.latencies.append(now - float(m.group(1)))
                end = m.end()
            self.tail = buf[end:][-200:]
        if self.count >= self.target:
            self.t_last = now
            return True
        return False


def sse_clients(
    port: int,
    result_q: Queue[Report],
    ids: list[int],
    target: int,
    latency: bool,
    warm: int = 500,
    warm_seconds: float = 0.0,
) -> None:
    """Clients on plain non-blocking sockets and epoll: the measuring instrument should cost
    as little as it can (an asyncio protocol per connection cost about twice the CPU).
    Latencies count from event id `warm` on, and from `warm_seconds` after connecting."""
    latencies: list[float] | None = [] if latency else None
    ep = select.epoll()
    clients: dict[int, _Client] = {}
    for cid in ids:
        sock = socket.create_connection((HOST, port))
        sock.sendall(f"GET /?clientId=c{cid} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        sock.setblocking(False)
        warm_until = time.monotonic() + warm_seconds
        clients[sock.fileno()] = _Client(sock, target, latencies, warm, warm_until)
        ep.register(sock.fileno(), select.EPOLLIN)
    live = dict(clients)
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while live and time.monotonic() < deadline:
        for fd, _ in ep.poll(1.0):
            client = live[fd]
            try:
                data = client.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            now = time.monotonic()
            if not data or client.received(data, now):
                client.t_last = client.t_last or now
                ep.unregister(fd)
                client.sock.close()
                del live[fd]
    ep.close()
    everyone = list(clients.values())
    first = min(everyone, key=lambda c: c.t_first)
    result_q.put(
        Report(
            "clients",
            first.t_first,
            max(c.t_last for c in everyone),
            sum(c.count for c in everyone),
            time.process_time() - first.c_first,
            latencies or [],
        )
    )


def bench_sse(
    ctx: mp.context.SpawnContext,
    clients: int,
    procs: int,
    mode: str,
    amount: float,
    bare: bool = False,
) -> tuple[float, Report, list[Report]]:
    """(events/s delivered in total, the server's report, the client processes' reports).

    `bare`: serve with ``bare_server`` (latency mode only) instead of the SseSink."""
    port_q: Queue[int] = ctx.Queue()
    result_q: Queue[Report] = ctx.Queue()
    target_fn = bare_server if bare else sse_server
    server = ctx.Process(target=target_fn, args=(port_q, result_q, clients, mode, amount))
    server.start()
    port = port_q.get(timeout=60)
    target = whole_batches(amount) if mode == "throughput" else int(amount * 1000)
    procs = min(procs, clients)
    workers = [
        ctx.Process(
            target=sse_clients,
            args=(port, result_q, list(range(clients))[i::procs], target, mode == "latency"),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    reports = collect([*workers, server], result_q, procs + 1)
    srv = next(r for r in reports if r.role == "server")
    cli = [r for r in reports if r.role == "clients"]
    rate = sum(r.events for r in cli) / (max(r.t1 for r in cli) - min(r.t0 for r in cli))
    return rate, srv, cli


# ---------------------------------------------------------------------------------------------
# A job end to end: two worker processes on a local master, an SSE client; bytewax as peer.


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def local_job(
    artifact: Path, parameters: dict[str, Any]
) -> AsyncIterator[tuple[Any, str, list[int]]]:
    """A job of `artifact` (stage 1 x1, stage 2 x1) with both workers Started: the master,
    the job id and the workers' pids (stage 1, stage 2)."""
    # Imported here so that spawned children do not import it.
    from adapters.cli.local import ProcessMaster

    with tempfile.TemporaryDirectory(prefix="mantis-bench-") as tmp:
        master = ProcessMaster(Path(tmp), heartbeat_secs=1.0, env={"PYTHONPATH": str(ROOT)})
        await master.start()
        try:
            jid = master.submit(artifact.stem.replace("_", "-"), artifact, [1, 1], parameters)
            await until(master, lambda: len(master.started(jid)) == 2, "2 workers Started", 60)
            yield master, jid, [master.process(jid, stage, 0).popen.pid for stage in (1, 2)]
        finally:
            await master.close()


async def until(master: Any, predicate: Any, what: str, timeout: float) -> None:
    """Poll until `predicate()` holds; fail with the workers' logs."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}\n{master.logs()}")
        await asyncio.sleep(0.02)


def alive(master: Any) -> bool:
    """True while every worker process runs; raises with their logs once one has ended."""
    if any(p.popen.poll() is not None for p in master.processes.values()):
        raise RuntimeError(f"a worker ended during the run\n{master.logs()}")
    return True


async def read_frames(
    http: aiohttp.ClientSession, url: str, into: list[tuple[float, dict[str, Any]]]
) -> None:
    """(time.time() of receipt, event) for every frame of an SSE stream."""
    async for payloads in sse_payloads(http, url):
        now = time.time()
        into.extend((now, orjson.loads(p)) for p in payloads)


@dataclass
class JobRun:
    source_rate: float
    """Source events/s in the steady state (the middle windows)."""
    counted: int
    expected: int
    windows: int
    cpu: list[tuple[str, float, int]]
    """(process, CPU seconds, source events) between the first window's receipt and the last."""
    lags: list[float]
    """Seconds from a window's end to the client's receipt of its counts."""


async def job_throughput(total: int) -> JobRun:
    """Run keyed_count.py over `total` events; the rate from the windows' counts."""
    expected = keyed_count.kept(total)
    got: list[tuple[float, dict[str, Any]]] = []

    def counted() -> int:
        return sum(w["count"] for _, w in got)

    artifact = JOBS / "keyed_count.py"
    async with (
        local_job(artifact, {"events": total}) as (master, jid, pids),
        aiohttp.ClientSession() as http,
    ):
        (sink,) = master.started(jid, stage=2)
        reader = asyncio.create_task(read_frames(http, f"http://{HOST}:{sink.ports[0]}/", got))
        await until(master, lambda: alive(master) and bool(got), "the first window", 60)
        c0, n0 = [proc_cpu(p) for p in pids], counted()
        await until(
            master,
            lambda: alive(master) and counted() >= expected,
            f"{expected:,} events counted",
            PROCESS_TIMEOUT,
        )
        c1, n1 = [proc_cpu(p) for p in pids], counted()
        reader.cancel()
    per_window: dict[float, int] = {}
    for _, w in got:
        per_window[w["start"]] = per_window.get(w["start"], 0) + w["count"]
    starts = sorted(per_window)
    middle = starts[1:-1]  # the first and the last window are partly idle
    if len(middle) < 2:
        raise RuntimeError(f"only {len(starts)} windows: too few events for a rate")
    span = middle[-1] - middle[0] + keyed_count.WINDOW_SECONDS
    rate = sum(per_window[s] for s in middle) / span * total / expected
    source_events = round((n1 - n0) * total / expected)
    cpu = [(f"stage{i}", c1[i - 1] - c0[i - 1], source_events) for i in (1, 2)]
    lags = [t - w["end"] for t, w in got]
    return JobRun(rate, counted(), expected, len(middle), cpu, lags)


async def job_latency(
    ctx: mp.context.SpawnContext, seconds: float, warm: float
) -> tuple[list[float], list[float]]:
    """Run keyed_count_events.py at E2E_RATE; a client process times every event from its
    source stamp. Returns the latencies after `warm` seconds and each worker's CPU share."""
    params = {"rate": E2E_RATE}
    async with local_job(JOBS / "keyed_count_events.py", params) as (master, jid, pids):
        (sink,) = master.started(jid, stage=2)
        result_q: Queue[Report] = ctx.Queue()
        passing = keyed_count.kept(97) / 97  # the share of events that pass the filter
        frames = int((warm + seconds) * E2E_RATE * passing)
        client = ctx.Process(
            target=sse_clients, args=(sink.ports[0], result_q, [0], frames, True, 0, warm)
        )
        client.start()
        t0, c0 = time.monotonic(), [proc_cpu(p) for p in pids]
        (report,) = await asyncio.to_thread(collect, [client], result_q, 1)
        alive(master)
        wall, c1 = time.monotonic() - t0, [proc_cpu(p) for p in pids]
    return report.latencies, [(b - a) / wall for a, b in zip(c0, c1, strict=True)]


def bytewax_child(result_q: Queue[Report], total: int, windowed: bool, batch: int) -> None:
    """The peer: bytewax 0.21 running keyed_count's logic in this process, one worker, input
    in batches of `batch` events (the job's source batch, or 1): the same generator, filter
    ``keep``, map ``enrich``, then ``count_window`` (key ``key_of``, tumbling windows of
    WINDOW_SECONDS on the system clock) to a sink that adds up the counts. Not `windowed`:
    the filter and map only, to a sink that counts events (the kind of run measured earlier)."""
    from datetime import UTC, datetime, timedelta

    from bytewax import operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import DynamicSource, StatelessSourcePartition
    from bytewax.operators.windowing import SystemClock, TumblingWindower, count_window
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    if os.environ.get("MANTIS_BENCH_DEFAULT_GC") != "1":
        tune_gc()  # as our processes get it
    keys = keyed_count.user_keys(1000)
    t_first = [0.0]
    counted = [0]

    class Generate(StatelessSourcePartition[dict[str, Any]]):
        sent = 0

        def next_batch(self) -> list[dict[str, Any]]:
            if self.sent >= total:
                raise StopIteration
            if not self.sent:
                t_first[0] = time.monotonic()
            n = min(batch, total - self.sent)
            self.sent += n
            return keyed_count.make_batch(self.sent - n, n, keys)

    class Source(DynamicSource[dict[str, Any]]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Generate:
            return Generate()

    class Count(StatelessSinkPartition[Any]):
        def write_batch(self, items: list[Any]) -> None:
            counted[0] += sum(n for _, (_, n) in items) if windowed else len(items)

    class Sink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Count:
            return Count()

    flow = Dataflow("keyed_count")
    events = op.input("generate", flow, Source())
    kept = op.map("enrich", op.filter("keep", events, keyed_count.keep), keyed_count.enrich)
    windower = TumblingWindower(
        timedelta(seconds=keyed_count.WINDOW_SECONDS), align_to=datetime(2026, 1, 1, tzinfo=UTC)
    )
    if windowed:
        counts = count_window("count", kept, SystemClock(), windower, keyed_count.key_of)
        op.output("out", counts.down, Sink())
    else:
        op.output("out", kept, Sink())
    c0 = time.process_time()
    run_main(flow)  # type: ignore[no-untyped-call]
    result_q.put(
        Report("bytewax", t_first[0], time.monotonic(), counted[0], time.process_time() - c0)
    )


def bench_bytewax(
    ctx: mp.context.SpawnContext, total: int, windowed: bool = True, batch: int = BATCH
) -> tuple[float, Report]:
    """(source events/s, the report) of bytewax over `total` events in batches of `batch`."""
    result_q: Queue[Report] = ctx.Queue()
    child = ctx.Process(target=bytewax_child, args=(result_q, total, windowed, batch))
    child.start()
    (report,) = collect([child], result_q, 1)
    if report.events != keyed_count.kept(total):
        raise RuntimeError(f"bytewax counted {report.events:,}, not {keyed_count.kept(total):,}")
    return total / (report.t1 - report.t0), report


# ---------------------------------------------------------------------------------------------
# Reporting.


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def cpu_line(parts: list[tuple[str, float, int]]) -> str:
    """CPU microseconds per event for each process, and the rate one core each would give."""
    per = [(name, cpu / max(events, 1) * 1e6) for name, cpu, events in parts]
    bound = 1e6 / max(us for _, us in per)
    shown = ", ".join(f"{name} {us:.2f}" for name, us in per)
    return f"  CPU us per event: {shown}; with a core each: {bound / 1e6:.2f} M/s"


def codec_lines() -> list[str]:
    """The codec choice, re-measured: orjson against msgpack (if installed; it is optional),
    per batch of 1,024 events as the transport does, and per event as measured earlier
    (orjson 2.08 M round trips/s then, for its own ~100-byte event)."""
    events = make_events()

    def rate(fn: Callable[[], object], per_call: int, rounds: int) -> float:
        fn()
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(rounds):
                fn()
            best = max(best, rounds * per_call / (time.perf_counter() - t))
        return best

    one = events[0]
    o_batch = rate(lambda: orjson.loads(orjson.dumps(events)), BATCH, 20)
    o_one = rate(lambda: orjson.loads(orjson.dumps(one)), 1, 20_000)
    lines = [
        f"  codec round trip, orjson: {o_batch / 1e6:.2f} M/s in batches, "
        f"{o_one / 1e6:.2f} M/s one by one (earlier: 2.08 M for a ~100-byte event)"
    ]
    try:
        msgpack = importlib.import_module("msgpack")
    except ImportError:
        return [*lines, "  codec round trip, msgpack: not installed"]
    packer = msgpack.Packer()
    m_batch = rate(lambda: msgpack.unpackb(packer.pack(events)), BATCH, 20)
    m_one = rate(lambda: msgpack.unpackb(packer.pack(one)), 1, 20_000)
    lines.append(
        f"  codec round trip, msgpack: {m_batch / 1e6:.2f} M/s in batches, "
        f"{m_one / 1e6:.2f} M/s one by one (orjson x{o_batch / m_batch:.2f} in batches)"
    )
    return lines


def mql_costs() -> dict[str, float]:
    """ns per event of MQL_QUERY over BATCH events (and of its parts, and of framing), and
    the µs of parsing and compiling it: the best of several rounds."""

    def best_ns(
        fn: Callable[[], object], per_call: int, rounds: int = 15, calls: int = 20
    ) -> float:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append(time.perf_counter() - t0)
        return min(times) / (calls * per_call) * 1e9

    events = make_events()
    query = compile_query(MQL_QUERY)
    select_part, _, where_part = MQL_QUERY.partition(" where ")
    where_only = compile_query("select * from stream where " + where_part)
    select_only = compile_query(select_part)
    re2_only = compile_query(f"select * from stream where {MQL_RE2_WHERE}")
    passing = len(query.apply(events))
    return {
        "mql_ns_per_event": best_ns(lambda: query.apply(events), len(events)),
        "where_ns": best_ns(lambda: where_only.apply(events), len(events)),
        "select_ns": best_ns(lambda: select_only.apply(events), len(events)),
        "re2_ns": best_ns(lambda: re2_only.apply(events), len(events)),
        "frame_ns": best_ns(lambda: frame_all(events), len(events)),
        "mql_compile_us": best_ns(lambda: compile_query(MQL_QUERY), 1, calls=50) / 1e3,
        "passing": passing / len(events),
    }


def show(name: str, value: float, unit: str, lower_is_better: bool = False) -> None:
    target = TARGETS[name]
    ratio = target / value if lower_is_better else value / target
    sign = "<=" if lower_is_better else ">="
    if unit == "ms":
        print(f"{name:30s} {value:>12.2f} ms   target {sign} {target:.0f} ms   x{ratio:.2f}")
    elif unit == "x":
        print(f"{name:30s} {value:>12.2f} x    target {sign} {target:.1f}    x{ratio:.2f}")
    else:
        print(f"{name:30s} {value:>12,.0f} /s   target {sign} {target:,.0f}   x{ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument(
        "--client-procs", type=int, default=None, help="client processes for the 100-client runs"
    )
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="leave CPython's GC thresholds alone in the child processes",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=PARTS,
        help="run only these parts (the JSON then has only their keys)",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run the servers' event loops on uvloop (must be installed; not a dependency)",
    )
    args = parser.parse_args()
    if args.uvloop:
        os.environ["MANTIS_BENCH_UVLOOP"] = "1"
    if args.default_gc:
        os.environ["MANTIS_BENCH_DEFAULT_GC"] = "1"  # inherited by the spawned children
    sizes = QUICK if args.quick else FULL
    procs = args.client_procs or sizes.client_procs
    ctx = mp.get_context("spawn")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    figures: dict[str, float] = {}
    if "codec" in args.only:
        for line in codec_lines():
            print(line)

    if "mql" in args.only:
        mql = mql_costs()
        figures["mql_ns_per_event"] = round(mql["mql_ns_per_event"], 1)
        figures["mql_compile_us"] = round(mql["mql_compile_us"], 1)
        print(f"{'mql_ns_per_event':30s} {mql['mql_ns_per_event']:>12,.0f} ns   {MQL_QUERY!r}")
        print(
            f"  {mql['passing'] * 100:.0f} % of the events pass; the where alone "
            f"{mql['where_ns']:.0f} ns, the select alone {mql['select_ns']:.0f} ns; "
            f"{MQL_RE2_WHERE} (RE2) alone {mql['re2_ns']:.0f} ns; framing "
            f"(what the sink does to every event anyway) {mql['frame_ns']:.0f} ns; parse and "
            f"compile once per connection {mql['mql_compile_us']:.0f} us"
        )

    if "hop" in args.only:
        hop, snd, rcv = bench_hop(ctx, sizes.hop_events)
        figures["hop_events_per_s"] = round(hop)
        show("hop_events_per_s", hop, "/s")
        print(
            f"  vs the bare link with per-event orjson (1.66 M, measured earlier): "
            f"x{hop / BARE_LINK_ORJSON:.2f}"
        )
        print(cpu_line([("sender", snd.cpu, snd.events), ("receiver", rcv.cpu, rcv.events)]))

    if "sse1" in args.only:
        sse1, srv, cli = bench_sse(ctx, 1, 1, "throughput", sizes.sse_1_events)
        figures["sse_1_client_events_per_s"] = round(sse1)
        show("sse_1_client_events_per_s", sse1, "/s")
        print(cpu_line([("server", srv.cpu, srv.events), ("client", cli[0].cpu, cli[0].events)]))

    if "sse100" in args.only:
        sse100, srv, cli = bench_sse(ctx, 100, procs, "throughput", sizes.sse_100_events)
        figures["sse_100_clients_events_per_s"] = round(sse100)
        show("sse_100_clients_events_per_s", sse100, "/s")
        print(
            cpu_line(
                [("server", srv.cpu, srv.events)]
                + [(f"clients{i}", r.cpu, r.events) for i, r in enumerate(cli)]
            )
        )

    if "latency" in args.only:
        _, srv, cli = bench_sse(ctx, 100, procs, "latency", sizes.latency_seconds)
        lat = [x for r in cli for x in r.latencies]
        p50, p99 = percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3
        figures["sse_100_clients_p99_ms"] = round(p99, 3)
        show("sse_100_clients_p99_ms", p99, "ms", lower_is_better=True)
        print(
            f"  latency p50 {p50:.2f} ms, p99.9 {percentile(lat, 99.9) * 1e3:.2f} ms, "
            f"max {max(lat) * 1e3:.2f} ms over {len(lat):,} receipts ({procs} client "
            f"processes)"
        )
        shares = ", ".join(f"{r.cpu / (r.t1 - r.t0) * 100:.0f}%" for r in cli)
        print(
            f"  CPU, share of a core: server {srv.cpu / (srv.t1 - srv.t0) * 100:.0f}%, "
            f"client processes {shares}"
        )
        _, _, bare_cli = bench_sse(ctx, 100, procs, "latency", sizes.latency_seconds, bare=True)
        bare_lat = [x for r in bare_cli for x in r.latencies]
        b50, b99 = percentile(bare_lat, 50) * 1e3, percentile(bare_lat, 99) * 1e3
        print(
            f"  peer, bare sockets and a plain send loop, same clients, same run: p50 {b50:.2f} "
            f"ms, p99 {b99:.2f} ms; the sink's p99 is x{p99 / b99:.2f} of it"
        )
    if "job" in args.only or "e2e" in args.only:
        # The local master runs in this process: keep its request logs quiet.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    job_cpu_rate: float | None = None
    if "job" in args.only:
        run = asyncio.run(job_throughput(sizes.job_events))
        figures["job_events_per_s"] = round(run.source_rate)
        show("job_events_per_s", run.source_rate, "/s")
        print(
            f"  {run.counted:,} of {run.expected:,} events past the filter counted (of "
            f"{sizes.job_events:,} from the source); the rate over {run.windows} windows of "
            f"{keyed_count.WINDOW_SECONDS} s"
        )
        print(cpu_line(run.cpu))
        job_cpu_rate = 1e6 / max(cpu / events * 1e6 for _, cpu, events in run.cpu)
        lags = [x * 1e3 for x in run.lags]
        print(
            f"  window counts reach the client {percentile(lags, 50):.1f} ms after their "
            f"window closes (p50), {max(lags):.1f} ms at most"
        )

    if "bytewax" in args.only:
        if importlib.util.find_spec("bytewax") is None:
            print(
                "bytewax_events_per_s: skipped, bytewax is not installed (the bench extra: "
                "pip install -e '.[bench]'); so is job_vs_bytewax"
            )
        else:
            bw, rep = bench_bytewax(ctx, sizes.bytewax_events)
            figures["bytewax_events_per_s"] = round(bw)
            figures["bytewax_batch"] = BATCH
            print(
                f"{'bytewax_events_per_s':30s} {bw:>12,.0f} /s   peer, one process, input "
                f"batch {BATCH} as the job's source"
            )
            bw1, _ = bench_bytewax(ctx, sizes.bytewax_events // 4, batch=1)
            figures["bytewax_batch_1_events_per_s"] = round(bw1)
            print(
                f"{'bytewax_batch_1_events_per_s':30s} {bw1:>12,.0f} /s   the same, one event "
                f"per item"
            )
            bw_cpu_rate = sizes.bytewax_events / rep.cpu
            print(
                f"  CPU us per event: bytewax {1e6 / bw_cpu_rate:.2f}; with a core: "
                f"{bw_cpu_rate / 1e3:,.1f} k/s"
            )
            stateless, _ = bench_bytewax(ctx, sizes.bytewax_events, windowed=False)
            stateless1, _ = bench_bytewax(ctx, sizes.bytewax_events // 4, windowed=False, batch=1)
            print(
                f"  bytewax with the filter and map only (no key, no windows): "
                f"{stateless:,.0f} /s at batch {BATCH}, {stateless1:,.0f} /s at batch 1 "
                f"(earlier: {BYTEWAX_BATCH_1}); its count_window is what costs"
            )
            if "job_events_per_s" in figures:
                ratio = figures["job_events_per_s"] / bw
                figures["job_vs_bytewax"] = round(ratio, 2)
                show("job_vs_bytewax", ratio, "x")
                print(f"  at the matched input batch ({BATCH} events)")
                ratio1 = figures["job_events_per_s"] / bw1
                figures["job_vs_bytewax_batch_1"] = round(ratio1, 2)
                print(f"  {'job_vs_bytewax_batch_1':28s} {ratio1:>12.2f} x   bytewax at batch 1")
                if job_cpu_rate is not None:
                    print(
                        f"  with a core each: job {job_cpu_rate / 1e6:.2f} M/s, bytewax "
                        f"{bw_cpu_rate / 1e3:,.1f} k/s: x{job_cpu_rate / bw_cpu_rate:.1f}"
                    )

    if "e2e" in args.only:
        lat, job_shares = asyncio.run(job_latency(ctx, sizes.e2e_seconds, sizes.e2e_warm_seconds))
        lat_ms = [x * 1e3 for x in lat]
        p99 = percentile(lat_ms, 99)
        figures["e2e_p99_ms"] = round(p99, 3)
        show("e2e_p99_ms", p99, "ms", lower_is_better=True)
        print(
            f"  at {E2E_RATE:,.0f} events/s: p50 {percentile(lat_ms, 50):.2f} ms, p99.9 "
            f"{percentile(lat_ms, 99.9):.2f} ms, max {max(lat_ms):.2f} ms over {len(lat):,} "
            f"events; CPU, share of a core: stage1 {job_shares[0] * 100:.0f}%, stage2 "
            f"{job_shares[1] * 100:.0f}%"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""High availability on ZooKeeper: how long a failover takes, and what the ZooKeeper store costs.

Every figure is measured in this run, against a target and a peer measured in the same run. One
standalone ZooKeeper (adapters.zk.server, tick 200 ms) serves every part, each under a path of
its own; every session has a 4 s timeout (SESSION_S). A SIGKILLed holder's znodes go when its
session expires, 4 s (rounded up to a tick) after its last request: an idle kazoo client pings
every ~1.3 s (PING_S, less some jitter), so that is 2.7-4.2 s after the kill, by the phase of
the kill within the pings. Each failover is also split at that moment (``*_session_end_p50_s``,
seen through a watch on the group): ZooKeeper's share, then the product's.

- ``failover_p50_s`` / ``failover_max_s``: two ``mantis master --zk`` processes (as
  tests/integration/test_master_ha.py runs them) on one mesoslite master with one agent. The
  leader (GET /api/v1/masterInfo ``isLeader``, the other naming it) is SIGKILLed; then a
  POST /api/v1/jobClusters goes to the other every 10 ms (redirects not followed: a 307 to the
  dead leader or a 503 while it takes office does not count) until one is answered 201: the
  session expiring, the election, the new leader's recovery from the ZooKeeper store, its
  subscription and its API. The killed master is started again as a new candidate before the
  next run. Target: max <= 6 s.
- ``mesos_failover_p50_s`` / ``mesos_failover_max_s``: two mesoslite masters electing in
  ZooKeeper (``--zk zk://.../mesos-<n>``), one agent, and the Mantis master's own resource
  manager (adapters.mesos.resource_manager.PymesosResourceManager, given the zk:// URL). The
  leading mesoslite master is SIGKILLed: time to the first offer the resource manager gets
  from the next one (pymesos finds it in ZooKeeper, re-subscribes, the agent re-registers).
  The killed master comes back as the standby before the next run. After the session's end
  comes the driver's reconnection back-off (pymesos/process.py ``_run`` sleeps after a failed
  connect to the dead leader, and only then looks at the leader ZooKeeper named meanwhile;
  pymesos' own 2 s, 4 s, ... is shortened to 0.1 s doubling to 2 s by the adapter).
- ``zk_submit_p50_ms`` / ``zk_submit_p99_ms``: one master with ``--zk`` (it leads alone, on
  the ZooKeeper store) in a child process, with a resource manager that does nothing (as
  bench/api.py's submit), then sequential POST /api/v1/jobs answered 201. Target p99 <= 50 ms.

Peers, the floors ZooKeeper itself sets: ``zk_election_s`` (and its max), kazoo's Election
recipe (a lowest-ephemeral-sequential lock, Curator's LeaderLatch idea) held by a contender in
a child process that is SIGKILLed, to the next contender leading: no failover can beat it. The
kills are spread evenly over the ping interval (``kill_phase``), as a leader's kill falls
anywhere in it.
``zk_txn_p50_ms`` / ``zk_txn_p99_ms``: a bare kazoo transaction (check a version + create a
sequential znode the size of the store's batches), the floor of the store's fenced append; it
runs in blocks between the submissions', so both see the same load from the neighbours.

``--runs N`` failovers of each kind (10; ``--quick`` 3 and 200 submissions); ``--json`` ends
with one JSON object of the figures; ``--only`` runs some parts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402

from adapters.cli.master import ELECTION_ROOT, MasterProcess, MasterSettings  # noqa: E402
from adapters.mesos.resource_manager import PymesosResourceManager  # noqa: E402
from adapters.zk.server import ZooKeeperServer  # noqa: E402
from bench.api import (  # noqa: E402
    cluster_body,
    create_cluster,
    no_resources,
    percentile,
    quiet_child,
    submissions,
)
from common.logs import configure as configure_logging  # noqa: E402
from core.ports import TaskStatus  # noqa: E402
from core.scheduling import Offer  # noqa: E402
from mesoslite.local import LocalCluster, free_port  # noqa: E402

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
SESSION_S = 4.0
PING_S = SESSION_S / 3  # an idle kazoo client pings after 2/3 x 1/2 of its session timeout
TARGETS = {"failover_max_s": 6.0, "zk_submit_p99_ms": 50.0}
POLL_S = 0.01  # the client's retry interval during a failover
DEADLINE_S = 60.0  # any one wait: a failover taking this long is a failure, not a figure
STORE_ROOT = "/mantis/store"  # adapters.zk.store.ZkStore's default root, in the chroot
BLOCKS = 5  # submissions and bare transactions alternate in this many blocks
WARM = 20  # untimed calls before the timed ones
PARTS = ["election", "submit", "failover", "mesos"]
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    runs: int
    submits: int


FULL = Sizes(runs=10, submits=1000)
QUICK = Sizes(runs=3, submits=200)


def unique(name: str) -> str:
    """A ZooKeeper path of its own for one part of the run."""
    return f"/{name}-{uuid.uuid4().hex[:8]}"


def connect(zk: str) -> KazooClient:
    client = KazooClient(hosts=zk, timeout=SESSION_S)
    client.start(timeout=30)
    return client


def wait_until(condition: Callable[[], bool], what: str, seconds: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {seconds:g} s")
        time.sleep(POLL_S)


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while (value := await probe()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {DEADLINE_S:g} s")
        await asyncio.sleep(0.05)
    return value


class GroupWatch:
    """When a ZooKeeper group (the candidates' or the mesoslite masters' znodes) lost a
    member, seen through a children watch: a killed holder's session has ended then."""

    def __init__(self, client: KazooClient, path: str) -> None:
        self.losses: list[float] = []
        self._count: int | None = None
        client.ChildrenWatch(path, self._changed)

    def _changed(self, children: list[str]) -> None:
        if self._count is not None and len(children) < self._count:
            self.losses.append(time.monotonic())
        self._count = len(children)

    def lost_after(self, t0: float) -> float:
        """Seconds from `t0` to the first loss after it (waited for: the watch is async)."""
        wait_until(lambda: any(t > t0 for t in self.losses), "the group to lose a member", 10)
        return next(t for t in self.losses if t > t0) - t0


@dataclass(frozen=True)
class Failover:
    session_end_s: float
    """From the SIGKILL to its member znode gone (its session expired)."""
    took_s: float


# ---------------------------------------------------------------------------------------------
# Peers: ZooKeeper's own election and a bare transaction.


def contending(election: Any, n: int) -> bool:
    return len(election.contenders()) == n


def kill_phase(run: int, runs: int) -> float:
    """When to kill the contender, after its last request: spread evenly over kazoo's ping
    interval, so that the runs see as many phases of it as a leader killed at any moment."""
    return (run + 0.5) / runs * PING_S


def contender(zk: str, path: str, leading: MpEvent) -> None:
    """A child process that runs kazoo's Election on `path` and, once it leads, says so and
    holds on until it is killed."""
    client = connect(zk)

    def lead() -> None:
        leading.set()
        threading.Event().wait()

    client.Election(path, "child").run(lead)


def bench_election(ctx: mp.context.SpawnContext, zk: str, runs: int) -> list[float]:
    """Seconds from SIGKILL of the leading contender (a child) to the next one (ours) leading."""
    path = unique("election")
    client = connect(zk)
    took: list[float] = []
    try:
        for run in range(runs):
            leading = ctx.Event()
            child = ctx.Process(target=contender, args=(zk, path, leading), name="contender")
            child.start()
            try:
                if not leading.wait(DEADLINE_S):
                    raise TimeoutError("the child contender did not lead")
                led = time.monotonic()
                election = client.Election(path, "parent")
                ours, release = threading.Event(), threading.Event()

                def lead(ours: threading.Event = ours, release: threading.Event = release) -> None:
                    ours.set()
                    release.wait()

                runner = threading.Thread(target=election.run, args=(lead,), daemon=True)
                runner.start()
                wait_until(partial(contending, election, 2), "the second contender")
                time.sleep(max(0.0, led + kill_phase(run, runs) - time.monotonic()))
                assert child.pid is not None
                t0 = time.monotonic()
                os.kill(child.pid, signal.SIGKILL)
                if not ours.wait(DEADLINE_S):
                    raise TimeoutError("the next contender did not lead")
                took.append(time.monotonic() - t0)
                release.set()
                runner.join(10)
            finally:
                child.kill()
                child.join(10)
    finally:
        client.stop()
        client.close()
    return took


def bare_txns(client: KazooClient, head: str, record: bytes, n: int) -> list[float]:
    """Seconds per check + create-sequential transaction: the store's fenced append, bare."""
    took: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        tx = client.transaction()
        tx.check(head, 0)
        tx.create(f"{head}/b-", record, sequence=True)
        results = tx.commit()
        took.append(time.perf_counter() - t0)
        if any(isinstance(r, Exception) for r in results):
            raise RuntimeError(f"transaction failed: {results}")
    return took


def batch_size(client: KazooClient, root: str) -> int:
    """The median size of the store's batch znodes under `root` (the master's chroot)."""
    log = f"{root}{STORE_ROOT}/log"
    sizes = [client.exists(f"{log}/{name}").dataLength for name in client.get_children(log)]
    return int(statistics.median(sizes))


# ---------------------------------------------------------------------------------------------
# Submit latency on the ZooKeeper store.


def zk_master(folder: Path, port: int, zk: str, stop_q: Queue[str]) -> None:
    """A child process: one `--zk` master with no resources, until told to stop."""
    quiet_child(folder / "master.log")

    async def run() -> None:
        settings = MasterSettings(data_dir=folder, port=port, zk=zk, zk_session_timeout=SESSION_S)
        master = MasterProcess(settings, resource_manager=no_resources)
        await master.start()
        await asyncio.to_thread(stop_q.get)
        await master.stop()

    asyncio.run(run())


async def is_leader(http: aiohttp.ClientSession, url: str) -> bool | None:
    """True once `url` says it leads (None until then, for `eventually`)."""
    with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
        async with http.get(f"{url}/api/v1/masterInfo") as resp:
            if resp.status == 200 and (await resp.json()).get("isLeader"):
                return True
    return None


@dataclass
class StoreRun:
    submits: list[float] = field(default_factory=list)
    txns: list[float] = field(default_factory=list)
    record: int = 0
    """Bytes of each bare transaction's znode: the median of the store's batches."""


def bench_store(ctx: mp.context.SpawnContext, folder: Path, zk: str, n: int) -> StoreRun:
    """`n` submissions to a master leading on the ZooKeeper store and `n` bare transactions on
    the same ZooKeeper, in BLOCKS alternating blocks (so both see the same neighbours' load)."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    root = unique("submit")
    stop_q: Queue[str] = ctx.Queue()
    child = ctx.Process(target=zk_master, args=(folder, port, zk + root, stop_q), name="zk-master")
    child.start()
    client = connect(zk)
    out = StoreRun()

    async def run() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            await eventually(lambda: is_leader(http, url), "leading master")
        await create_cluster(url, "bench", "bench-artifact.py")
        head = client.create(unique("txn"), b"")
        for block in range(BLOCKS):
            latencies, _ = await submissions(url, n // BLOCKS, 1, WARM if block == 0 else 0)
            out.submits += latencies
            if block == 0:
                out.record = batch_size(client, root)
                bare_txns(client, head, b"x" * out.record, WARM)
            out.txns += bare_txns(client, head, b"x" * out.record, n // BLOCKS)

    try:
        asyncio.run(run())
        return out
    finally:
        client.stop()
        client.close()
        stop_q.put("stop")
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join(5)


# ---------------------------------------------------------------------------------------------
# Mantis failover: two `mantis master --zk` processes.


class MantisMaster:
    """`python -m adapters.cli.main master --zk ...` on a free port, logging to a file."""

    def __init__(self, folder: Path, zk: str, mesos: str) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = folder / f"master-{self.port}.log"
        self.log = self.log_path.open("wb")
        argv = [sys.executable, "-m", "adapters.cli.main", "master", "--zk", zk, "--mesos", mesos,
                "--data-dir", str(folder / f"m{self.port}"), "--port", str(self.port),
                "--zk-session-timeout", str(SESSION_S)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("MANTIS_API_TOKEN", None)
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"master {self.url} exited with {self.process.returncode}:\n{tail}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()


async def master_info(http: aiohttp.ClientSession, master: MantisMaster) -> Any:
    with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
        async with http.get(f"{master.url}/api/v1/masterInfo") as resp:
            return await resp.json() if resp.status == 200 else None
    return None


async def leader_of(
    http: aiohttp.ClientSession, masters: Sequence[MantisMaster]
) -> MantisMaster | None:
    """The master that says it leads, once every other one names it too."""
    for m in masters:
        m.check()
    infos = [await master_info(http, m) for m in masters]
    leading = [m for m, i in zip(masters, infos, strict=True) if i and i.get("isLeader")]
    if len(leading) != 1:
        return None
    others = [i for m, i in zip(masters, infos, strict=True) if m is not leading[0]]
    if all(i and (i.get("leader") or {}).get("url") == leading[0].url for i in others):
        return leading[0]
    return None


async def post_cluster(http: aiohttp.ClientSession, url: str, name: str) -> int:
    """The status of one create-cluster call (0: no answer); redirects are not followed."""
    body = cluster_body(name, "bench-artifact.py")
    with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
        async with http.post(f"{url}/api/v1/jobClusters", json=body, allow_redirects=False) as resp:
            await resp.read()
            return resp.status
    return 0


async def mantis_failovers(folder: Path, zk: str, mesos: str, runs: int) -> list[Failover]:
    path = unique("failover")
    root = zk + path  # the masters' chroot
    masters = [MantisMaster(folder, root, mesos) for _ in range(2)]
    took: list[Failover] = []
    client = connect(zk)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            leader = await eventually(lambda: leader_of(http, masters), "one leader")
            group = GroupWatch(client, f"{path}{ELECTION_ROOT}/hosts")
            if (status := await post_cluster(http, leader.url, "warm")) != 201:
                raise RuntimeError(f"the leader answered a write with {status}")
            for run in range(runs):
                (follower,) = [m for m in masters if m is not leader]
                t0 = time.monotonic()
                leader.kill()
                attempt = 0
                while await post_cluster(http, follower.url, f"f{run}-{attempt}") != 201:
                    follower.check()
                    if time.monotonic() - t0 > DEADLINE_S:
                        raise TimeoutError(f"no write answered 201 within {DEADLINE_S:g} s")
                    attempt += 1
                    await asyncio.sleep(POLL_S)
                took.append(Failover(group.lost_after(t0), time.monotonic() - t0))
                masters = [follower, MantisMaster(folder, root, mesos)]
                leader = await eventually(partial(leader_of, http, masters), "one leader")
                if leader is not follower:
                    raise RuntimeError("the new candidate leads, not the one that took over")
    finally:
        for m in masters:
            m.kill()
        client.stop()
        client.close()
    return took


def bench_mantis_failover(folder: Path, zk: str, runs: int) -> list[Failover]:
    mesos = LocalCluster(folder / "mesos", 1, log_level="warning").start()
    try:
        return asyncio.run(mantis_failovers(folder, zk, mesos.address, runs))
    finally:
        mesos.stop()


# ---------------------------------------------------------------------------------------------
# mesoslite failover: two masters in ZooKeeper, Mantis' resource manager following them.


@dataclass
class OfferTimes:
    """A ResourceManagerEvents that notes when each batch of offers arrived (pymesos' thread
    calls it; list.append is atomic)."""

    times: list[float] = field(default_factory=list)

    def registered(self, framework_id: str) -> None:
        pass

    def offers(self, offers: Sequence[Offer]) -> None:
        self.times.append(time.monotonic())

    def rescinded(self, offer_id: str) -> None:
        pass

    def task_status(self, status: TaskStatus) -> None:
        pass

    def offered_after(self, t0: float) -> bool:
        return any(t > t0 for t in self.times)


def standby_follows(cluster: LocalCluster) -> bool:
    """Both masters answer, one leads and the other names it."""
    leader = cluster.leader()
    if leader is None:
        return False
    leading, standby = cluster.master_state(leader), cluster.master_state(1 - leader)
    return bool(leading and standby and standby.get("leader") == leading["pid"])


def bench_mesos_failover(folder: Path, zk: str, runs: int) -> list[Failover]:
    logging.getLogger("pymesos").setLevel(logging.CRITICAL)  # it logs a lost master as errors
    path = unique("mesos")
    url = f"zk://{zk}{path}"
    args = ["--zk-session-timeout", f"{SESSION_S:g}"]
    cluster = LocalCluster(
        folder / "mesos-ha", 1, master_args=args, masters=2, zk=url, log_level="warning"
    )
    rm: PymesosResourceManager | None = None
    took: list[Failover] = []
    client = connect(zk)
    try:
        cluster.start()
        group = GroupWatch(client, path)
        events = OfferTimes()
        rm = PymesosResourceManager(cluster.address, framework_name="bench-failover", user="bench")
        rm.start(events)
        wait_until(lambda: bool(events.times), "first offer")
        for _ in range(runs):
            wait_until(lambda: standby_follows(cluster), "a standby following the leader")
            leader = cluster.leader()
            assert leader is not None
            t0 = time.monotonic()
            cluster.stop_master(signal.SIGKILL, leader)
            wait_until(partial(events.offered_after, t0), "an offer from the next leader")
            first = next(t for t in events.times if t > t0)
            took.append(Failover(group.lost_after(t0), first - t0))
            cluster.start_master(i=leader)
    finally:
        if rm is not None:
            rm.stop()
        cluster.stop()
        client.stop()
        client.close()
    return took


# ---------------------------------------------------------------------------------------------
# Reporting.


def show(name: str, value: float, unit: str) -> None:
    """A figure against its target (an upper bound): x > 1 is within it."""
    target = TARGETS[name]
    print(
        f"{name:24s} {value:>9.3f} {unit:2s}  target <= {target:g} {unit}   x{target / value:.2f}"
    )


def seconds(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def report_store(run: StoreRun, figures: dict[str, float]) -> None:
    def ms(values: list[float], p: float) -> float:
        return percentile(values, p) * 1e3

    figures.update(
        {
            "zk_submit_p50_ms": round(ms(run.submits, 50), 3),
            "zk_submit_p99_ms": round(ms(run.submits, 99), 3),
            "zk_txn_p50_ms": round(ms(run.txns, 50), 3),
            "zk_txn_p99_ms": round(ms(run.txns, 99), 3),
        }
    )
    show("zk_submit_p99_ms", ms(run.submits, 99), "ms")
    print(
        f"  {len(run.submits):,} POST /api/v1/jobs in a row, the master leading on the ZooKeeper "
        f"store: p50 {ms(run.submits, 50):.2f} ms, max {max(run.submits) * 1e3:.2f} ms"
    )
    print(
        f"  peer, a bare kazoo transaction (check + create of {run.record:,} B, the store's "
        f"median batch), {len(run.txns):,} in blocks between the submissions': p50 "
        f"{ms(run.txns, 50):.2f} ms, p99 {ms(run.txns, 99):.2f} ms; the submission's p50 is "
        f"x{ms(run.submits, 50) / ms(run.txns, 50):.2f} of it, its p99 "
        f"x{ms(run.submits, 99) / ms(run.txns, 99):.2f}"
    )


def report_failover(
    key: str,
    what: str,
    until: str,
    runs: list[Failover],
    election: list[float],
    figures: dict[str, float],
) -> None:
    """p50 and max of the runs, the share of it the killed one's session took, and how far
    above ZooKeeper's own election it is."""
    took = [r.took_s for r in runs]
    ended = [r.session_end_s for r in runs]
    rest = [r.took_s - r.session_end_s for r in runs]
    p50, worst = statistics.median(took), max(took)
    figures[f"{key}_p50_s"] = round(p50, 3)
    figures[f"{key}_max_s"] = round(worst, 3)
    figures[f"{key}_session_end_p50_s"] = round(statistics.median(ended), 3)
    if f"{key}_max_s" in TARGETS:
        show(f"{key}_max_s", worst, "s")
    else:
        print(f"{key + '_max_s':24s} {worst:>9.3f} s   (no target)")
    print(f"  {what}, {len(runs)} runs: p50 {p50:.2f} s  [{seconds(took)}]")
    print(
        f"  of which the killed one's session (its znode gone): p50 "
        f"{statistics.median(ended):.2f} s  [{seconds(ended)}]; then to {until}: p50 "
        f"{statistics.median(rest):.2f} s"
    )
    if election:
        print(
            f"  vs ZooKeeper's own election: p50 {p50 - statistics.median(election):+.2f} s "
            f"(x{p50 / statistics.median(election):.2f}), max x{worst / max(election):.2f} its max"
        )


@contextlib.contextmanager
def zookeeper(folder: Path) -> Iterator[str]:
    server = ZooKeeperServer(folder / "zookeeper")
    server.start()
    try:
        yield server.address
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs, 200 submissions")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--runs", type=int, default=None, help="failovers of each kind")
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=PARTS, help="run only these parts"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    runs = args.runs or sizes.runs
    configure_logging(level="error")  # a master lost is expected here
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # a killed peer's session is expected
    ctx = mp.get_context("spawn")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    figures: dict[str, float] = {}
    t_start = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="mantis-bench-failover-") as tmp,
        zookeeper(Path(tmp)) as zk,
    ):
        folder = Path(tmp)
        election = bench_election(ctx, zk, runs) if "election" in args.only else []
        if election:
            figures["zk_election_s"] = round(statistics.median(election), 3)
            figures["zk_election_max_s"] = round(max(election), 3)
            print(
                f"peer: ZooKeeper's own election (kazoo Election, the leading contender "
                f"SIGKILLed, {SESSION_S:g} s session): p50 {statistics.median(election):.2f} s, "
                f"max {max(election):.2f} s  [{seconds(election)}]"
            )
        if "submit" in args.only:
            (folder / "submit").mkdir()
            report_store(bench_store(ctx, folder / "submit", zk, sizes.submits), figures)
        if "failover" in args.only:
            report_failover(
                "failover",
                "Mantis leader SIGKILLed -> first 201 on the next",
                "the 201 (election, recovery from the store, the API)",
                bench_mantis_failover(folder / "failover", zk, runs),
                election,
                figures,
            )
        if "mesos" in args.only:
            report_failover(
                "mesos_failover",
                "mesoslite leader SIGKILLed -> first offer at Mantis' resource manager",
                "the offer (election, pymesos and the agent re-registering)",
                bench_mesos_failover(folder / "mesos", zk, runs),
                election,
                figures,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}; took {time.monotonic() - t_start:.0f} s")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

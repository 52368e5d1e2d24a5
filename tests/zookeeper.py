"""A real standalone ZooKeeper on 127.0.0.1 for the tests, as the Debian package `zookeeper` runs
it (`make test` installs the package through scripts/install_zookeeper.sh).

`ZooKeeperServer` starts, stops and restarts one server on the same port and data folder (the
tests where ZooKeeper itself goes away); the session-scoped fixture `zookeeper` is one shared
server's address, `zookeeper_server` a test's own server. The tick is 200 ms so that sessions
expire in under a second when a test wants them to (ZooKeeper negotiates a session timeout
within [2, 20] ticks: zookeeper.apache.org/doc/current/zookeeperAdmin.html#sc_configuration).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.eventually import wait_until

JAR = Path("/usr/share/java/zookeeper.jar")
CONF = Path("/etc/zookeeper/conf")
HOST = "127.0.0.1"
TICK_MS = 200


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class ZooKeeperServer:
    """One standalone ZooKeeper (QuorumPeerMain with a one-server zoo.cfg) writing its data and
    log under `folder`, serving 127.0.0.1:`port`; `start` again after `stop` keeps both."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        if not JAR.is_file():
            pytest.fail(
                f"ZooKeeper is not installed ({JAR} is missing): `make test` installs it "
                "(scripts/install_zookeeper.sh, the Debian package zookeeper)",
                pytrace=False,
            )
        self.folder = folder
        self.port = port if port is not None else free_port()
        self.log = folder / "zookeeper.log"
        self._process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "zoo.cfg").write_text(
            f"tickTime={TICK_MS}\n"
            f"minSessionTimeout={2 * TICK_MS}\n"
            f"dataDir={folder / 'data'}\n"
            f"clientPort={self.port}\n"
            f"clientPortAddress={HOST}\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr,stat,mntr\n"
        )

    @property
    def address(self) -> str:
        """The connection string kazoo takes: "127.0.0.1:PORT"."""
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and return once it answers `ruok` with `imok`."""
        assert self._process is None, "ZooKeeper is already running"
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    "java",
                    "-cp",
                    f"{CONF}:{JAR}",
                    f"-Dzookeeper.log.dir={self.folder}",
                    "-Djava.awt.headless=true",
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                    str(self.folder / "zoo.cfg"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(self._ready, f"ZooKeeper on {self.address}", timeout, describe=self._tail)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM (ZooKeeper exits 143), then SIGKILL if it has not exited within 10 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def ruok(self) -> bool:
        """Whether the server answers the four-letter word `ruok` with `imok` within a second."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as conn:
                conn.settimeout(1.0)
                conn.sendall(b"ruok")
                return conn.recv(4) == b"imok"
        except OSError:
            return False

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(
                f"ZooKeeper exited with {self._process.returncode} before serving "
                f"{self.address}\n{self._tail()}"
            )
        return self.ruok()

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.log.read_text(errors="replace").splitlines()[-20:]
            return f"last lines of {self.log}:\n" + "\n".join(lines)
        return f"no log at {self.log}"


@contextlib.contextmanager
def running(folder: Path) -> Iterator[ZooKeeperServer]:
    """A started `ZooKeeperServer` under `folder`, stopped on exit whatever happens."""
    server = ZooKeeperServer(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address ("127.0.0.1:PORT") of one ZooKeeper shared by the whole session: tests keep
    apart by using their own root paths."""
    with running(tmp_path_factory.mktemp("zookeeper")) as server:
        yield server.address


@pytest.fixture
def zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """A ZooKeeper of the test's own, which it may `stop` and `start` again (same port, same data)."""
    with running(tmp_path_factory.mktemp("zookeeper")) as server:
        yield server

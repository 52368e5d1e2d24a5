"""A standalone Apache ZooKeeper on 127.0.0.1, as the Debian package `zookeeper` runs it.

`mantis up --ha` runs one for its masters to elect leaders in, and the tests run their own. The
server is QuorumPeerMain with a one-server zoo.cfg (zookeeper.apache.org/doc/current/
zookeeperAdmin.html#sc_configuration) in a folder of ours: its data (`data/`, kept between
starts, so a restarted server has its znodes and sessions back), its config and its log. The
tick is 200 ms by default so that a dead client's session ends within seconds: ZooKeeper
negotiates a session timeout within [2, 20] ticks. Only loopback is served, and the admin HTTP
server (port 8080 by default) is off.

`command` is what to run (a supervisor such as `mantis up` starts it as one of its children);
`start`/`stop` run it directly; `ruok` is the four-letter-word probe (`imok` once it serves).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

JAR = Path("/usr/share/java/zookeeper.jar")
CONF = Path("/etc/zookeeper/conf")
HOST = "127.0.0.1"
TICK_MS = 200
INSTALL_HINT = "sudo apt-get install zookeeper, or make zookeeper (scripts/install_zookeeper.sh)"
STOP_SECS = 10.0


class ZooKeeperUnavailable(RuntimeError):
    """ZooKeeper cannot run here, or did not come up; the message is one line."""


def missing() -> str | None:
    """Why ZooKeeper cannot run on this machine (one line naming the way to install it), or
    None when it can."""
    if not JAR.is_file():
        return f"ZooKeeper is not installed ({JAR} is missing): {INSTALL_HINT}"
    if shutil.which("java") is None:
        return f"ZooKeeper needs java, which is not on PATH: {INSTALL_HINT}"
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the usual small race applies)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class ZooKeeperServer:
    """One standalone server serving 127.0.0.1:`port`, with its config, data and log under
    `folder`; `start` again after `stop` (or a new instance on the same folder) keeps the data."""

    def __init__(self, folder: Path, port: int | None = None, tick_ms: int = TICK_MS) -> None:
        self.folder = folder
        self.port = port if port is not None else free_port()
        self.config = folder / "zoo.cfg"
        self.log = folder / "zookeeper.log"
        self._process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"tickTime={tick_ms}\n"
            f"minSessionTimeout={2 * tick_ms}\n"
            f"dataDir={folder / 'data'}\n"
            f"clientPort={self.port}\n"
            f"clientPortAddress={HOST}\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr,stat,mntr\n"
        )

    @property
    def address(self) -> str:
        """The connection string ZooKeeper clients take: "127.0.0.1:PORT"."""
        return f"{HOST}:{self.port}"

    @property
    def command(self) -> list[str]:
        """The server's command line (what the Debian package's zkServer.sh runs)."""
        return [
            "java",
            "-cp",
            f"{CONF}:{JAR}",
            f"-Dzookeeper.log.dir={self.folder}",
            "-Djava.awt.headless=true",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(self.config),
        ]

    def ruok(self, timeout: float = 1.0) -> bool:
        """Whether the server answers `ruok` with `imok` within `timeout` (every socket call
        has that timeout: a probe without one once hung on a server that was starting)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=timeout) as conn:
                conn.settimeout(timeout)
                conn.sendall(b"ruok")
                return conn.recv(4) == b"imok"
        except OSError:
            return False

    def start(self, timeout: float = 30.0) -> None:
        """Start the server in a session of its own; return once it answers `ruok`."""
        assert self._process is None, "ZooKeeper is already running"
        reason = missing()
        if reason is not None:
            raise ZooKeeperUnavailable(reason)
        with self.log.open("ab") as out:
            self._process = process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        try:
            while not self.ruok():
                if process.poll() is not None:
                    raise ZooKeeperUnavailable(
                        f"ZooKeeper exited with {process.returncode} before serving "
                        f"{self.address}; see {self.log}"
                    )
                if time.monotonic() > deadline:
                    raise ZooKeeperUnavailable(
                        f"ZooKeeper did not answer on {self.address} within {timeout:g} s; "
                        f"see {self.log}"
                    )
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = STOP_SECS) -> None:
        """SIGTERM (ZooKeeper then exits 143), SIGKILL if it still runs after `timeout`."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

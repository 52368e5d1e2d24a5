"""`mantis master --zk` processes on loopback, for the tests of several masters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson

from mesoslite.local import free_port

ROOT = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT = 4.0
STATUS_PATH = "/api/v1/jobs/actions/postJobStatus"


class HaMaster:
    """One `mantis master --zk ZK --mesos MESOS` on a free port, with its own data folder,
    logging JSON at debug level (every request) to `log_path`."""

    def __init__(self, folder: Path, zk: str, mesos: str, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"master-{self.port}.log"
        argv = [sys.executable, "-m", "adapters.cli.main", "--log-json", "--log-level", "debug",
                "master", "--zk", zk, "--mesos", mesos, "--data-dir", str(folder / f"m{self.port}"),
                "--port", str(self.port), "--zk-session-timeout", str(SESSION_TIMEOUT), *options]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("MANTIS_API_TOKEN", None)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.zk = zk

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def status_posts(self) -> list[tuple[float, int]]:
        """(wall-clock time, HTTP status) of every postJobStatus this master answered."""
        found = []
        for line in self.log_path.read_bytes().splitlines():
            if b"http_request" not in line:
                continue
            try:
                entry = orjson.loads(line[line.find(b"{") :])
            except orjson.JSONDecodeError:
                continue
            if entry.get("event") == "http_request" and entry.get("path") == STATUS_PATH:
                at = datetime.fromisoformat(entry["timestamp"]).timestamp()
                found.append((at, int(entry["status"])))
        return found

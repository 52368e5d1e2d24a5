"""`mantis up` as a person runs it from a terminal, for the tests of tests/integration/test_up_*.

The process is the leader of its own process group (as a shell starts a foreground job), so
`interrupt()` is a terminal's Ctrl-C: SIGINT to the whole group at once. Its console (stdout
and stderr) goes to a file that the tests poll. What it started is found through /proc: every
process whose command line names the data folder or whose working directory is inside it (the
master and agents name it; mesoslite and the workers run inside it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from tests.eventually import wait_until

ROOT = Path(__file__).resolve().parents[2]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MANTIS_API_TOKEN"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


class UpProcess:
    """One `mantis up` run: `mantis up --data-dir DATA --port PORT *options`."""

    def __init__(self, data: Path, port: int, *options: str, console: Path | None = None) -> None:
        self.data = data
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.console_path = console or data.parent / f"up-{time.monotonic_ns()}.out"
        self._console = self.console_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapters.cli.main",
                "up",
                "--data-dir",
                str(data),
                "--port",
                str(port),
                *options,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            env=environment(),
            start_new_session=True,
        )

    def console(self) -> str:
        return self.console_path.read_bytes().decode("utf-8", "replace")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The console once it contains `text` (fails early if `mantis up` exits first)."""

        def printed() -> bool:
            seen = self.console()
            if text not in seen and self.process.poll() is not None:
                raise AssertionError(
                    f"mantis up exited ({self.process.returncode}) before "
                    f"printing {text!r}:\n{seen}"
                )
            return text in seen

        wait_until(printed, repr(text), timeout, describe=self.console)
        return self.console()

    def example_lines(self) -> list[Any]:
        """The example job's output lines printed so far."""
        return [
            orjson.loads(line) for line in self.console().splitlines() if line.startswith('{"key"')
        ]

    def interrupt(self) -> None:
        """Ctrl-C in the terminal: SIGINT to every process of the foreground group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._console.close()

    def kill(self) -> None:
        """Whatever happened, leave nothing running: `mantis up` and what it started."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._console.close()
        for pid in started_in(self.data):
            os.kill(pid, signal.SIGKILL)


def started_in(data: Path) -> list[int]:
    """Pids of the live processes that name `data` in their command line or run inside it."""
    folder = str(data.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (folder in cmdline or cwd == folder or cwd.startswith(folder + "/")):
            found.append(int(entry.name))
    return found


def process_named(data: Path, word: str) -> int:
    """The one live process started in `data` whose command line has `word`."""
    pids = [p for p in started_in(data) if word in _cmdline(p)]
    assert len(pids) == 1, f"expected one {word!r} process, found {pids}"
    return pids[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def nothing_left(data: Path, timeout: float = 3.0) -> None:
    """Every process started in `data` is gone (within `timeout`, for the last reaps)."""
    wait_until(
        lambda: not started_in(data),
        f"every process started in {data} to end",
        timeout,
        describe=lambda: (
            "left running: " + "; ".join(f"{p}: {_cmdline(p)[:160]}" for p in started_in(data))
        ),
    )

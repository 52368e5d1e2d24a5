"""Ctrl-C never damages a job: `mantis up --example` interrupted at 20 seeded moments.

A terminal's Ctrl-C is SIGINT to the whole foreground process group at once; `mantis up` runs
as such a group here (tests/integration/up_process.py). The moments are drawn from
random.Random(SEED) between 0.5 s and 8 s after the start, so they fall in the start-up, the
example's upload and submission, and its streaming. After each: `mantis up` exits 0, nothing it
started is left (/proc), and a new `mantis up --example` on the same data folder (that is the
point: restarts on one store) streams the example's output again, from the same job: a job
that a Ctrl-C had damaged would be replaced by a new one (synthetic-counts-2).
"""

from __future__ import annotations

import random
import re
import socket
import subprocess
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from tests.eventually import wait_until
from tests.integration.up_process import UpProcess, nothing_left

SEED = 20261204
MOMENTS = 20
EARLIEST, LATEST = 0.5, 8.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def phase(console: str) -> str:
    if "mantis is up" not in console:
        return "start-up"
    if '{"key"' not in console:
        return "submission"
    return "streaming"


def explain(up: UpProcess) -> str:
    """What a failure message shows: the console and the end of the master's log."""
    log = [
        line[:300]
        for line in (up.data / "master.log").read_text(errors="replace").splitlines()
        if "upstream_lost" not in line
    ]
    return "console:\n" + up.console() + "\nmaster.log (end):\n" + "\n".join(log[-15:])


def ctrl_c(up: UpProcess) -> str:
    """Interrupt `up` as a terminal would; its console once it has exited cleanly: stopped
    (0), or interrupted before it had started anything (130, while Python imports)."""
    up.interrupt()
    status = up.wait(timeout=40)
    console = up.console()
    assert "Traceback" not in console, console
    assert (status, console.splitlines()[-1:]) in (
        (0, ["mantis stopped."]),
        (130, ["mantis up: interrupted"]),
    ), console
    nothing_left(up.data)
    return console


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_ctrl_c_at_any_moment_leaves_nothing_running_and_the_job_intact(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "mantis-data"
    port = free_port()
    phases: Counter[str] = Counter()
    jobs: set[str] = set()
    runs: list[UpProcess] = []
    try:
        for moment in range(MOMENTS):
            delay = rng.uniform(EARLIEST, LATEST)
            up = UpProcess(
                data,
                port,
                "--example",
                "--agents",
                "1",
                console=tmp_path / f"{moment:02d}-interrupted.out",
            )
            runs.append(up)
            with pytest.raises(subprocess.TimeoutExpired):
                up.process.wait(timeout=delay)  # the Ctrl-C moment; it must still run then
            phases[phase(up.console())] += 1
            jobs.update(re.findall(r"example job (\S+) submitted", ctrl_c(up)))

            again = UpProcess(
                data,
                port,
                "--example",
                "--agents",
                "1",
                console=tmp_path / f"{moment:02d}-restarted.out",
            )
            runs.append(again)
            wait_until(
                again.example_lines,
                f"the example's output after Ctrl-C number {moment + 1} ({delay:.1f} s)",
                60,
                describe=partial(explain, again),
            )
            phases[phase(again.console())] += 1
            jobs.update(re.findall(r"example job (\S+) submitted", ctrl_c(again)))
    finally:
        for up in runs:
            up.kill()
    assert jobs == {"synthetic-counts-1"}, f"the example job was replaced: {sorted(jobs)}"
    assert set(phases) == {"start-up", "submission", "streaming"}, phases

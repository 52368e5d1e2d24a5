"""The example job through `mantis up --example`: one line per key and window, from the first
window on, and still when a stage-2 worker is SIGKILLed and replaced.

Stage 1 keys the synthetic events over the 2 workers of stage 2, which count each key in
1-second windows. Each (key, window start) must be reported once: by the one worker that owns
the key (runtime.transport, Declared membership).
"""

from __future__ import annotations

import os
import signal
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.eventually import wait_until
from tests.integration.up_process import UpProcess, started_in

pytestmark = pytest.mark.timeout(150)

KEYS = {f"k{n}" for n in range(16)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def twice(lines: list[Any]) -> list[tuple[str, float]]:
    """The (key, window start) pairs reported more than once."""
    seen = Counter((w["key"], w["start"]) for w in lines)
    return sorted(k for k, n in seen.items() if n > 1)


def windows(lines: list[Any]) -> dict[float, set[str]]:
    """The keys reported per window start."""
    out: dict[float, set[str]] = {}
    for w in lines:
        out.setdefault(w["start"], set()).add(w["key"])
    return out


def stage_workers(data: Path, stage: int) -> list[int]:
    """Pids of the live worker processes of `stage` started in `data`."""
    found = []
    for pid in started_in(data):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"MANTIS_STAGE=%d" % stage in environ and b"MANTIS_JOB_ID=" in b" ".join(environ):
            found.append(pid)
    return found


def test_each_key_once_per_window_from_the_first_and_across_a_killed_worker(
    tmp_path: Path,
) -> None:
    data = tmp_path / "mantis-data"
    up = UpProcess(data, free_port(), "--example")
    try:
        # The first windows, as `make run` prints them: every key once per window.
        wait_until(lambda: len(windows(up.example_lines())) >= 4, "4 windows printed", 90)
        first = up.example_lines()
        assert twice(first) == [], f"reported twice: {twice(first)}\n{up.console()}"
        assert min(first, key=lambda w: w["start"])["start"] == first[0]["start"]
        full = sorted(windows(first).items())[1:-1]  # whole seconds: neither partial end
        assert all(keys == KEYS for _, keys in full), full

        # One stage-2 worker SIGKILLed: its slot's keys wait for its replacement (dropped
        # meanwhile), never going to the other worker, so still no window twice.
        victims = stage_workers(data, 2)
        assert len(victims) == 2, victims
        os.kill(victims[0], signal.SIGKILL)
        killed_at = len(up.example_lines())

        def replaced() -> bool:
            after = up.example_lines()[killed_at:]
            pids = stage_workers(data, 2)
            later = sorted(windows(after).items())
            return (
                len(pids) == 2
                and victims[0] not in pids
                and len(later) >= 3
                and later[-2][1] == KEYS  # a whole window of every key, from both workers
            )

        wait_until(replaced, "a replacement counting its keys again", 90, describe=up.console)
        lines = up.example_lines()
        assert twice(lines) == [], f"reported twice: {twice(lines)}"
    finally:
        up.kill()

"""`mantis job submit --wait` and `mantis job get` on a worker that fails, with real worker
processes on a master over loopback HTTP: the failure's message is shown, escaped."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_cli_commands import (  # noqa: F401 (fixtures)
    TOKEN,
    _quiet_logs,
    loop,
    mantis,
    workers,
)
from tests.integration.workers import LocalMaster

pytestmark = pytest.mark.timeout(120)

# Raised while the job module is imported: a message with an escape sequence that, printed
# raw, would clear the screen.
BROKEN_JOB = 'raise ValueError("bad config \\x1b[2J\\x1b]0;owned\\x07 here")\n'


def test_wait_stops_at_the_failing_worker_and_get_shows_why_escaped(
    workers: LocalMaster,  # noqa: F811
    mantis: Any,  # noqa: F811
) -> None:
    auth = ("--url", workers.url, "--token", TOKEN, "--user", "alice")
    artifact = workers.tmp / "broken.py"
    artifact.write_text(BROKEN_JOB)
    assert mantis("cluster", "create", "broken", "--artifact", str(artifact), "--cpus", "0.1",
                  "--memory", "64", *auth).status == 0  # fmt: skip

    r = mantis("job", "submit", "broken", "--wait", "--timeout", "60", *auth)
    assert r.status == 1, (r.out, r.err, workers.logs())
    assert r.out.splitlines()[0] == "submitted job broken-1"
    assert r.err.count("\n") == 1 and "\x1b" not in r.err and "\x07" not in r.err, r.err
    assert r.err.startswith("mantis job: error: job broken-1: worker 0 of stage 1 (number 1) "
                            "failed (Error): "), r.err  # fmt: skip
    assert "ValueError: bad config \\x1b[2J\\x1b]0;owned\\x07 here" in r.err, r.err

    r = mantis("job", "kill", "broken-1", "--reason", "enough \x1b[31mred", *auth)
    assert r.status == 0, r.err
    r = mantis("job", "get", "broken-1", *auth)
    assert r.status == 0 and "\x1b" not in r.out, r.out
    assert "enough \\x1b[31mred" in r.out
    notes = [line for line in r.out.splitlines() if line.startswith("worker 0 of stage 1")]
    assert any("bad config \\x1b[2J" in n for n in notes), r.out

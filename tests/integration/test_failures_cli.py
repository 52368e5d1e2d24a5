"""`mantis job submit --wait` and `mantis job get` on a worker that fails, with real worker
processes on a master over loopback HTTP: the failure's message is shown, escaped."""

from __future__ import annotations

import urllib.request
from typing import Any

import orjson
import pytest

from tests.integration.cli_fixtures import TOKEN
from tests.integration.workers import LocalMaster

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("quiet_logs")]

# Raised while the job module is imported: a message with an escape sequence that, printed
# raw, would clear the screen.
BROKEN_JOB = 'raise ValueError("bad config \\x1b[2J\\x1b]0;owned\\x07 here")\n'


def test_wait_stops_at_the_failing_worker_and_get_shows_why_escaped(
    workers: LocalMaster,
    mantis: Any,
) -> None:
    auth = ("--url", workers.url, "--token", TOKEN, "--user", "alice")
    artifact = workers.tmp / "broken.py"
    artifact.write_text(BROKEN_JOB)
    assert (
        mantis(
            "cluster",
            "create",
            "broken",
            "--artifact",
            str(artifact),
            "--cpus",
            "0.1",
            "--memory",
            "64",
            *auth,
        ).status
        == 0
    )

    r = mantis("job", "submit", "broken", "--wait", "--timeout", "60", *auth)
    assert r.status == 1, (r.out, r.err, workers.logs())
    assert r.out.splitlines()[0] == "submitted job broken-1"
    assert r.err.count("\n") == 1 and "\x1b" not in r.err and "\x07" not in r.err, r.err
    assert r.err.startswith(
        "mantis job: error: job broken-1: worker 0 of stage 1 (number 1) failed (Error): "
    ), r.err
    assert "ValueError: bad config \\x1b[2J\\x1b]0;owned\\x07 here" in r.err, r.err

    r = mantis("job", "kill", "broken-1", "--reason", "enough \x1b[31mred", *auth)
    assert r.status == 0, r.err
    r = mantis("job", "get", "broken-1", *auth)
    assert r.status == 0 and "\x1b" not in r.out, r.out
    assert "enough \\x1b[31mred" in r.out
    notes = [line for line in r.out.splitlines() if line.startswith("worker 0 of stage 1")]
    assert any("bad config \\x1b[2J" in n for n in notes), r.out


def test_wait_and_get_say_why_a_worker_cannot_be_placed(
    workers: LocalMaster,
    mantis: Any,
) -> None:
    """Two workers of a stage with hard UniqueHost, and one agent: the second never fits."""
    auth = ("--url", workers.url, "--token", TOKEN, "--user", "alice")
    stage = {
        "numberOfInstances": 2,
        "machineDefinition": {"cpuCores": 0.1, "memoryMB": 64},
        "hardConstraints": ["UniqueHost"],
    }
    definition = {
        "name": "unique",
        "user": "alice",
        "jobJarFileLocation": str(workers.tmp / "ticks.py"),
        "version": "1",
        "schedulingInfo": {"stages": {"1": stage}},
    }
    request = urllib.request.Request(
        f"{workers.url}/api/v1/jobClusters",
        data=orjson.dumps({"jobDefinition": definition}),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 201

    reason = "hard constraint UniqueHost not satisfiable on any agent on offer"
    r = mantis("job", "submit", "unique", "--wait", "--timeout", "5", *auth)
    assert r.status == 1, (r.out, r.err, workers.logs())
    assert f"unique-1: worker 1 of stage 1 not placed: {reason}" in r.out.splitlines(), r.out
    assert r.err == "mantis job: error: job unique-1: 1/2 workers Started after 5 s\n"

    r = mantis("job", "get", "unique-1", *auth)
    assert f"worker 1 of stage 1 not placed: {reason}" in r.out.splitlines(), r.out
    pending = [
        w
        for w in mantis("job", "get", "unique-1", "--json", *auth).json()["workerMetadataList"]
        if w["state"] == "Accepted"
    ]
    assert [w["pendingReason"] for w in pending] == [reason]
    assert mantis("job", "kill", "unique-1", "--reason", "done", *auth).status == 0

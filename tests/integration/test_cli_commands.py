"""`mantis cluster|job|artifact` against a real master over loopback HTTP.

The CLI is synchronous, so the master runs on its own asyncio loop in a background thread:
a plain API (with an artifact folder) for clusters, artifacts, errors and the token, and
`LocalMaster`, which also runs real worker processes, for submit --wait, scale and connect.
Commands run through `main(argv)`; their stdout and stderr are captured.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.eventually import wait_until
from tests.integration.cli_fixtures import TICKS_JOB, TOKEN, Loop, Run, plain_master
from tests.integration.workers import HOST, ROOT, LocalMaster

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("quiet_logs")]


def one_error_line(r: Run, command: str, message: str) -> None:
    assert r.status == 1, (r.out, r.err)
    assert r.err.count("\n") == 1, r.err
    assert r.err == f"mantis {command}: error: {message}\n"


# ---------------------------------------------------------------------- clusters


def test_cluster_create_list_get_update_delete(api: str, mantis: Any) -> None:
    common = ("--url", api, "--user", "alice")
    r = mantis(
        "cluster",
        "create",
        "demo",
        "--artifact",
        "https://x.example/demo.zip",
        "--stages",
        "1:2,2:1",
        "--cpus",
        "0.5",
        "--memory",
        "256",
        "--param",
        "n=10",
        "--label",
        "team=streams",
        "--version",
        "v1",
        *common,
    )
    assert (r.status, r.out, r.err) == (0, "created job cluster demo (version v1)\n", "")
    r = mantis("cluster", "create", "other", "--artifact", "other.py", *common)
    assert re.fullmatch(r"created job cluster other \(version \d{13}\)\n", r.out)  # a timestamp
    mantis("cluster", "update", "other", "--version", "7", *common)

    r = mantis("cluster", "list", *common)
    assert r.out.splitlines() == [
        "NAME   VERSION  ARTIFACT  STAGES   JOBS  STATE",
        "demo   v1       demo.zip  1:2,2:1  0     enabled",
        "other  7        other.py  1:1      0     enabled",
    ]
    assert [
        c["name"] for c in mantis("cluster", "list", "--matching", "^d", "--json", *common).json()
    ] == ["demo"]

    r = mantis("cluster", "get", "demo", *common)
    assert r.out.splitlines() == [
        "name        demo",
        "version     v1",
        "artifact    https://x.example/demo.zip",
        "stage 1     2 workers x 0.5 cpu, 256 MB",
        "stage 2     1 worker x 0.5 cpu, 256 MB",
        "parameters  n=10",
        "labels      team=streams",
        "user        alice",
        "jobs        0 submitted",
        "state       enabled",
    ]

    r = mantis(
        "cluster",
        "update",
        "demo",
        "--stages",
        "1:3",
        "--param",
        "m=x",
        "--scalable",
        "--version",
        "v2",
        *common,
    )
    assert r.out == "updated job cluster demo to version v2\n", r.err
    cluster = mantis("cluster", "get", "demo", "--json", *common).json()
    assert cluster["latestVersion"] == "v2"
    stages = cluster["jars"][-1]["schedulingInfo"]["stages"]
    assert list(stages) == ["1"] and stages["1"]["numberOfInstances"] == 3
    assert stages["1"]["machineDefinition"]["cpuCores"] == 0.5 and stages["1"]["scalable"]
    assert cluster["parameters"] == [{"name": "n", "value": "10"}, {"name": "m", "value": "x"}]
    assert cluster["jars"][-1]["url"] == "https://x.example/demo.zip"

    assert mantis("cluster", "disable", "demo", *common).out == "disabled job cluster demo\n"
    assert mantis("cluster", "get", "demo", "--json", *common).json()["disabled"] is True
    assert mantis("cluster", "enable", "demo", *common).out == "enabled job cluster demo\n"

    assert mantis("cluster", "delete", "demo", *common).out == "deleted job cluster demo\n"
    one_error_line(
        mantis("cluster", "get", "demo", *common), "cluster", "404 job cluster 'demo' not found"
    )
    assert [c["name"] for c in mantis("cluster", "list", "--json", *common).json()] == ["other"]


def test_rejections_are_one_line_naming_what_is_wrong(api: str, mantis: Any) -> None:
    one_error_line(
        mantis("job", "submit", "nope", "--url", api), "job", "404 job cluster 'nope' not found"
    )
    r = mantis("cluster", "create", "bad name", "--artifact", "a.py", "--url", api)
    assert r.status == 1 and r.err.count("\n") == 1
    assert r.err.startswith("mantis cluster: error: 400 jobDefinition.name: 'bad name' "), r.err
    one_error_line(
        mantis("job", "get", "nope-1", "--url", api), "job", "404 job 'nope-1' not found"
    )
    one_error_line(
        mantis("job", "kill", "nojobid", "--reason", "r", "--url", api),
        "job",
        "400 jobId: 'nojobid' is not of the form <cluster>-<number>",
    )


def test_wait_gives_up_after_its_timeout(api: str, mantis: Any) -> None:
    assert mantis("cluster", "create", "idle", "--artifact", "a.py", "--url", api).status == 0
    r = mantis("job", "submit", "idle", "--wait", "--timeout", "0.3", "--url", api)
    assert r.status == 1
    assert r.out.splitlines() == ["submitted job idle-1", "idle-1: 0/1 workers placed, 0/1 started"]
    assert r.err == "mantis job: error: job idle-1: 0/1 workers Started after 0.3 s\n"


def test_a_master_not_running_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        url = f"http://{HOST}:{s.getsockname()[1]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MANTIS_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "adapters.cli.main", "cluster", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"mantis cluster: error: cannot reach the master at {url} "
        "(connection refused): is `mantis up` running?\n"
    )


def test_changes_need_the_token_when_the_master_has_one(
    cli_loop: Loop, tmp_path: Path, mantis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url in plain_master(cli_loop, tmp_path, api_token=TOKEN):
        args = ("cluster", "create", "guarded", "--artifact", "a.py", "--url", url)
        one_error_line(
            mantis(*args),
            "cluster",
            "401 Authorization: a valid bearer token is "
            "required (give --token or set $MANTIS_API_TOKEN)",
        )
        assert mantis("cluster", "list", "--url", url).out == "no job clusters\n"  # reads are open
        assert mantis(*args, "--token", TOKEN).status == 0
        monkeypatch.setenv("MANTIS_API_TOKEN", TOKEN)
        assert mantis("cluster", "delete", "guarded", "--url", url).status == 0


# ---------------------------------------------------------------------- artifacts


def test_artifact_upload_then_list(api: str, mantis: Any, tmp_path: Path) -> None:
    assert mantis("artifact", "list", "--url", api).out == "no artifacts\n"
    job = tmp_path / "ticks.py"
    job.write_text(TICKS_JOB)
    r = mantis("artifact", "upload", str(job), "--url", api)
    assert r.status == 0, r.err
    assert re.fullmatch(
        rf"uploaded ticks\.py \({len(TICKS_JOB)} bytes, sha256 [0-9a-f]{{12}}\.\.\.\): "
        rf"{api}/api/v1/jobArtifacts/ticks\.py\n",
        r.out,
    )
    stored = mantis(
        "artifact", "upload", str(job), "--name", "ticks-2.py", "--json", "--url", api
    ).json()
    assert (stored["name"], stored["size"]) == ("ticks-2.py", len(TICKS_JOB))

    lines = mantis("artifact", "list", "--url", api).out.splitlines()
    assert lines[0].split() == ["NAME", "BYTES", "UPLOADED", "(UTC)"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["ticks-2.py", str(len(TICKS_JOB))],
        ["ticks.py", str(len(TICKS_JOB))],
    ]
    assert [a["name"] for a in mantis("artifact", "list", "--json", "--url", api).json()] == [
        "ticks-2.py",
        "ticks.py",
    ]
    one_error_line(
        mantis("artifact", "upload", str(job), "--name", ".hidden", "--url", api),
        "artifact",
        "400 name: '.hidden' is not a safe artifact name: use letters, "
        "digits, '.', '_', '-' (not first '.'; at most 255 characters; not 'names')",
    )


# ---------------------------------------------------------------------- jobs, with workers


def test_submit_wait_connect_and_kill(workers: LocalMaster, mantis: Any) -> None:
    auth = ("--url", workers.url, "--token", TOKEN, "--user", "alice")
    artifact = str(workers.tmp / "ticks.py")
    assert (
        mantis(
            "cluster",
            "create",
            "ticks",
            "--artifact",
            artifact,
            "--cpus",
            "0.1",
            "--memory",
            "64",
            *auth,
        ).status
        == 0
    )

    r = mantis(
        "job", "submit", "ticks", "--param", "every_ms=10", "--wait", "--timeout", "30", *auth
    )
    assert r.status == 0, (r.out, r.err, workers.logs())
    lines = r.out.splitlines()
    assert lines[0] == "submitted job ticks-1"
    assert lines[-2:] == [
        "ticks-1: 1/1 workers placed, 1/1 started",
        "ticks-1: all 1 worker Started",
    ]

    r = mantis("job", "list", *auth)
    header, row = r.out.splitlines()
    assert header.split()[:3] == ["JOB", "ID", "STATE"]
    assert row.split()[:3] == ["ticks-1", "Launched", "1/1"] and row.endswith("alice")

    r = mantis("job", "get", "ticks-1", *auth)
    assert "state       Launched\n" in r.out and "parameters  every_ms=10\n" in r.out
    assert re.search(r"^1      0      1       Started  127\.0\.0\.1  [\d,]+$", r.out, re.M), r.out

    r = mantis(
        "job", "connect", "ticks-1", "--limit", "5", "--client-id", "cli", "--sample", "0.05", *auth
    )
    assert r.status == 0, r.err
    events = [orjson.loads(line) for line in r.out.splitlines()]
    assert len(events) == 5 and all(set(e) == {"i"} for e in events), events
    assert [e["i"] for e in events] == sorted(e["i"] for e in events)

    r = mantis("job", "connect", "--cluster", "ticks", "--limit", "3", *auth)
    assert r.status == 0 and len(r.out.splitlines()) == 3, r.err

    assert (
        mantis("job", "kill", "ticks-1", "--reason", "done", *auth).out == "killing job ticks-1\n"
    )
    wait_until(
        lambda: (
            mantis("job", "get", "ticks-1", "--json", *auth).json()["jobMetadata"]["state"]
            == "Completed"
        ),
        "ticks-1 Completed",
        timeout=20,
    )
    assert mantis("job", "list", *auth).out == "no jobs\n"
    assert "ticks-1  Completed" in mantis("job", "list", "--all", "--cluster", "ticks", *auth).out


def test_scale_and_resubmit_a_worker(workers: LocalMaster, mantis: Any) -> None:
    auth = ("--url", workers.url, "--token", TOKEN)
    artifact = str(workers.tmp / "ticks.py")
    assert (
        mantis(
            "cluster",
            "create",
            "scaled",
            "--artifact",
            artifact,
            "--scalable",
            "--cpus",
            "0.1",
            "--memory",
            "64",
            *auth,
        ).status
        == 0
    )
    job = mantis("job", "submit", "scaled", "--wait", "--json", *auth).json()
    jid = job["jobMetadata"]["jobId"]

    def started() -> list[dict[str, Any]]:
        view = mantis("job", "get", jid, "--json", *auth).json()
        return [w for w in view["workerMetadataList"] if w["state"] == "Started"]

    r = mantis("job", "scale", jid, "--stage", "1", "--workers", "2", "--reason", "more", *auth)
    assert r.out == f"scaled stage 1 of job {jid} to 2 workers\n", r.err
    wait_until(lambda: len(started()) == 2, "2 workers Started", timeout=20)

    number = started()[0]["workerNumber"]
    r = mantis("job", "resubmit-worker", jid, "--worker-number", str(number), *auth)
    assert r.out == f"resubmitted worker {number} of job {jid}\n", r.err
    wait_until(
        lambda: len(started()) == 2 and number not in {w["workerNumber"] for w in started()},
        "a replacement Started",
        timeout=20,
    )

    one_error_line(
        mantis("job", "scale", jid, "--stage", "2", "--workers", "1", *auth),
        "job",
        "400 stageNumber: job has stages 1..1, not 2",
    )
    assert mantis("job", "kill", jid, "--reason", "done", *auth).status == 0

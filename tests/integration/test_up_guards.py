"""`mantis up` tells the truth: a taken port, a dying child, the API token, a damaged store.

Each test runs real `mantis up` processes (tests/integration/up_process.py) on free ports and
temporary data folders, and ends with nothing of them left running (checked through /proc).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from adapters.cli.client import cluster_definition
from adapters.cli.up import GIVE_UP_DEATHS, LocalUp
from adapters.store.log import EventLog
from tests.contracts.store import events
from tests.eventually import wait_until
from tests.integration.up_process import (
    UpProcess,
    environment,
    nothing_left,
    process_named,
    started_in,
)

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _AnswersEverything(BaseHTTPRequestHandler):
    """Another server: 200 and `{}` to every GET, health checks included."""

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnswersEverything)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def runs() -> Iterator[list[UpProcess]]:
    """The `mantis up` runs of a test, killed with what they started if the test failed."""
    started: list[UpProcess] = []
    yield started
    for up in started:
        up.kill()


def test_a_taken_api_port_fails_fast_naming_the_port_and_the_way_out(
    tmp_path: Path, other_server: int, runs: list[UpProcess]
) -> None:
    up = UpProcess(tmp_path / "data", other_server, "--agents", "1")
    runs.append(up)
    assert up.wait(timeout=15) == 1
    console = up.console()
    assert f"port {other_server} on 127.0.0.1 (--port) is in use" in console
    assert "choose another with --port PORT" in console
    assert "mantis is up" not in console and "Traceback" not in console
    assert len(console.strip().splitlines()) == 1, console
    nothing_left(up.data)


def test_a_taken_mesoslite_port_fails_fast_too(
    tmp_path: Path, other_server: int, runs: list[UpProcess]
) -> None:
    up = UpProcess(
        tmp_path / "data", free_port(), "--agents", "1", "--mesos-port", str(other_server)
    )
    runs.append(up)
    assert up.wait(timeout=15) == 1
    assert f"port {other_server} on 127.0.0.1 (--mesos-port) is in use" in up.console()
    nothing_left(up.data)


def test_a_second_mantis_up_on_the_same_data_folder_is_refused(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    first = UpProcess(tmp_path / "data", free_port(), "--agents", "1")
    runs.append(first)
    first.wait_for("mantis is up")
    second = UpProcess(
        tmp_path / "data", free_port(), "--agents", "1", console=tmp_path / "second.out"
    )
    runs.append(second)
    assert second.wait(timeout=15) == 1
    assert (
        f"another `mantis up` (pid {first.process.pid}) uses {tmp_path / 'data'}"
        in second.console()
    )
    first.interrupt()
    assert first.wait() == 0
    nothing_left(first.data)


def test_what_mantis_up_started_dies_with_it_even_by_sigkill(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    up = UpProcess(tmp_path / "data", free_port(), "--agents", "1", "--example")
    runs.append(up)
    wait_until(up.example_lines, "the example's output", 60, describe=up.console)
    assert len(started_in(up.data)) >= 6  # mesoslite, an agent, the master, 3 workers
    os.kill(up.process.pid, signal.SIGKILL)  # no chance to stop anything itself
    assert up.wait() == -signal.SIGKILL
    nothing_left(up.data, timeout=15)


def test_every_child_killed_is_started_again_and_reported(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    up = UpProcess(tmp_path / "data", free_port(), "--agents", "1")
    runs.append(up)
    up.wait_for("mantis is up")
    mesos_url = _mesos_url(up.console())

    def all_there() -> bool:
        """mesoslite has the agent and the master's framework (subscribed with credentials)."""
        try:
            with urllib.request.urlopen(mesos_url + "/master/state", timeout=2) as r:
                state = orjson.loads(r.read())
        except OSError:
            return False
        frameworks = [f["name"] for f in state["frameworks"] if f.get("active")]
        return bool(state["activated_slaves"] == 1 and frameworks == ["mantis"])

    for word, name in (
        ("mesoslite.master", "mesoslite"),
        ("mesoslite.agent", "agent 1 (127.0.0.2)"),
        (" master --data-dir", "the master"),
    ):
        pid = process_named(up.data, word)
        os.kill(pid, signal.SIGKILL)
        up.wait_for(f"mantis up: {name} exited (killed by SIGKILL); starting it again", 20)
        wait_until(partial(_replaced, up.data, word, pid), f"a new {name}", 20)
        wait_until(all_there, "the agent and the framework active again", 30)
        wait_until(partial(_answers, up.url + "/api/v1/healthcheck"), "the API answering", 30)
    up.interrupt()
    assert up.wait() == 0
    nothing_left(up.data)


def _mesos_url(console: str) -> str:
    """mesoslite's URL, from the console's `mesoslite  http://.../master/state` line."""
    return next(
        line.split()[1] for line in console.splitlines() if line.strip().startswith("mesoslite ")
    ).removesuffix("/master/state")


def _replaced(data: Path, word: str, old: int) -> bool:
    now = [
        p
        for p in started_in(data)
        if word in Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")
    ]
    return len(now) == 1 and now[0] != old


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_the_api_needs_the_generated_token_and_the_cli_finds_it(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    up = UpProcess(tmp_path / "mantis-data", free_port(), "--agents", "1")
    runs.append(up)
    console = up.wait_for("mantis is up")
    token_file = up.data / "api-token"
    token = token_file.read_text().strip()
    assert len(token) >= 40 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f"API token    {token}" in console
    master = process_named(up.data, " master --data-dir")
    assert token.encode() not in Path(f"/proc/{master}/cmdline").read_bytes()

    body = orjson.dumps(cluster_definition("c", "x.py", "u"))
    request = urllib.request.Request(
        up.url + "/api/v1/jobClusters",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401

    credentials = up.data / "mesos" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    entries = orjson.loads(credentials.read_bytes())["credentials"]
    (secret,) = [c["secret"] for c in entries if c["principal"] == "mantis"]
    assert secret.encode() not in Path(f"/proc/{master}/cmdline").read_bytes()
    subscribe = orjson.dumps(
        {
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": {"user": "intruder", "name": "intruder"}},
        }
    )
    request = urllib.request.Request(
        _mesos_url(console) + "/api/v1/scheduler",
        data=subscribe,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401, "mesoslite takes frameworks without credentials"

    def mantis(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "adapters.cli.main", *args, "--url", up.url],
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    created = mantis("cluster", "create", "tokened", "--artifact", "x.py")
    assert created.returncode == 0, created.stderr  # with the token of ./mantis-data
    listed = mantis("cluster", "list", "--json")
    assert "tokened" in listed.stdout
    up.interrupt()
    assert up.wait() == 0
    nothing_left(up.data)


def test_the_cli_reads_the_token_from_the_data_folder_it_is_given(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    up = UpProcess(tmp_path / "data", free_port(), "--agents", "1")
    runs.append(up)
    up.wait_for("mantis is up")

    def create(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "adapters.cli.main",
                "cluster",
                "create",
                name,
                "--artifact",
                "x.py",
                "--url",
                up.url,
                *extra,
            ],
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = create("without")  # ./mantis-data does not exist here
    assert refused.returncode == 1 and "401" in refused.stderr
    assert create("with", "--data-dir", str(up.data)).returncode == 0
    up.interrupt()
    assert up.wait() == 0
    nothing_left(up.data)


def test_no_token_leaves_the_api_open_and_removes_the_token_file(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "api-token").write_text("stale\n")
    up = UpProcess(tmp_path / "data", free_port(), "--agents", "1", "--no-token")
    runs.append(up)
    console = up.wait_for("mantis is up")
    assert "API token" not in console and not (up.data / "api-token").exists()
    body = orjson.dumps(cluster_definition("open", "x.py", "u"))
    request = urllib.request.Request(
        up.url + "/api/v1/jobClusters",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 201
    up.interrupt()
    assert up.wait() == 0


def test_a_damaged_store_stops_mantis_up_with_the_masters_one_line(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    data = tmp_path / "data"
    store = EventLog(data / "store")
    for name in "abc":
        store.append(events(2, name))
    store.close()
    (segment,) = sorted((data / "store").glob("segment-*.log"))
    damaged = bytearray(segment.read_bytes())
    damaged[12] ^= 0x40  # inside the first record, valid records after it
    segment.write_bytes(bytes(damaged))

    up = UpProcess(data, free_port(), "--agents", "1")
    runs.append(up)
    assert up.wait(timeout=30) == 1
    console = up.console()
    (refused,) = [line for line in console.splitlines() if "refused to start" in line]
    assert refused.startswith("mantis up: the master refused to start: ")
    assert str(segment) in refused and "--recover-from-snapshot" in refused
    assert "starting it again" not in console and "Traceback" not in console
    assert "mantis is up" not in console
    assert (data / "master.log").read_text().count("mantis master: ") == 1, "started once"
    nothing_left(data)

    again = UpProcess(data, free_port(), "--agents", "1", "--recover-from-snapshot")
    runs.append(again)
    again.wait_for("mantis is up")
    again.interrupt()
    assert again.wait() == 0
    nothing_left(data)


def test_a_child_that_keeps_dying_is_given_up_on_after_backing_off(tmp_path: Path) -> None:
    """In-process, with a real mesoslite: an agent command that exits at once, a master that
    only sleeps. Back-off 0.5 + 1 + 2 + 4 s, then the fifth quick death gives up."""
    err = io.StringIO()
    up = LocalUp(tmp_path / "data", 1, port=0, err=err)
    up.agents[0].argv = [sys.executable, "-c", "raise SystemExit(3)"]
    up.master.argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    status = up.run(lambda: False, lambda: None, start_timeout=60)
    lines = err.getvalue().splitlines()
    assert status == 1
    restarts = [
        x for x in lines if "agent 1 (127.0.0.2) exited (exit status 3); starting it again" in x
    ]
    assert [x.split(" in ")[-1].split(" (log")[0] for x in restarts] == [
        "0.5 s",
        "1 s",
        "2 s",
        "4 s",
    ]
    assert lines[-1].startswith(
        f"mantis up: agent 1 (127.0.0.2) died {GIVE_UP_DEATHS} times in "
        "60 s, each time before it was up (last: exit status 3"
    )
    assert lines[-1].endswith("; stopping")
    assert all(child.process is None for child in up.children)
    nothing_left(tmp_path / "data")


def test_allowed_origins_are_passed_to_every_master(tmp_path: Path) -> None:
    up = LocalUp(tmp_path / "data", 1, port=0, allowed_origins=["https://ui.example", "*"])
    argv = up.master.argv
    given = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--allowed-origin"]
    assert given == ["https://ui.example", "*"]

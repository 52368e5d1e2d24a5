"""`mantis up --ha` survives `kill -9` of either leader: a real ZooKeeper, three Mantis masters,
two mesoslite masters and an agent, as a person starts them from a terminal.

The example job runs throughout: after the Mantis leader is SIGKILLed another master leads
within the session timeout + 2 s (masterInfo says so on every master's port), `mantis up`
starts the killed one again as a follower, and the job's output goes on; the same for the
mesoslite leader. Ctrl-C then leaves nothing running.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.cli.client import ApiError, MantisClient, MasterUnreachable, cluster_definition
from adapters.cli.up import EXAMPLE, EXAMPLE_CLUSTER, ZK_SESSION_SECS, LocalUp, UpError
from adapters.zk import server as zk_server
from tests.eventually import wait_until
from tests.integration.up_process import UpProcess, nothing_left, process_named

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TAKEOVER_SECS = ZK_SESSION_SECS + 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    """The JSON answer of a GET that is not followed if it redirects; None if none."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=2) as response:
            return orjson.loads(response.read())
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError):
        return None


def mantis_leader(urls: list[str]) -> str | None:
    """The URL of the one master whose masterInfo says it leads (None if none does)."""
    leading = [u for u in urls if (get_json(u + "/api/v1/masterInfo") or {}).get("isLeader")]
    assert len(leading) <= 1, f"two Mantis masters lead: {leading}"
    return leading[0] if leading else None


def mesos_leader(urls: list[str]) -> str | None:
    """The URL of the one mesoslite master whose own state names it as the leader (by id: a
    master started again on a dead leader's port has its pid until the old session ends)."""
    states = {u: get_json(u + "/master/state") or {} for u in urls}
    leading = [u for u, s in states.items() if s and s.get("leader_info", {}).get("id") == s["id"]]
    assert len(leading) <= 1, f"two mesoslite masters lead: {leading}"
    return leading[0] if leading else None


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def runs() -> Iterator[list[UpProcess]]:
    started: list[UpProcess] = []
    yield started
    for up in started:
        up.kill()


class Tail:
    """An SSE client on a thread of its own: a master's job output, as `curl -N` shows it."""

    def __init__(self, url: str) -> None:
        self.events: list[Any] = []
        self.ended = False
        self._response = urllib.request.urlopen(url, timeout=30)
        assert self._response.status == 200 and self._response.geturl() == url, "not redirected"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self._response:
                if line.startswith(b"data:"):
                    self.events.append(orjson.loads(line[5:]))
        except OSError:
            pass
        finally:
            self.ended = True

    def last_end(self) -> int:
        return max((e["end"] for e in self.events), default=0)


def output_goes_on(up: UpProcess, seen: int, what: str) -> None:
    """The example prints lines for a new second after `seen` of them were printed."""

    def more() -> bool:
        lines = up.example_lines()
        return len(lines) > seen and max(x["end"] for x in lines[seen:]) > lines[seen - 1]["end"]

    wait_until(more, f"the example's output to go on after {what}", 40, describe=up.console)


def test_either_leader_killed_another_leads_and_the_example_goes_on(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    data = tmp_path / "data"
    up = UpProcess(data, free_port(), "--ha", "--example", "--agents", "1")
    runs.append(up)
    console = up.wait_for("mantis is up, highly available", 90)
    masters = masters_of(console)
    leading = re.search(r"leading +Mantis master (\S+), mesoslite (\S+)", console)
    mesos = re.search(r"mesoslite +(.+) \(/master/state", console)
    assert leading and mesos, console
    mesos_masters = mesos.group(1).split(", ")
    assert len(masters) == 3 and len(mesos_masters) == 2
    assert mantis_leader(masters) == leading.group(1)
    assert mesos_leader(mesos_masters) == leading.group(2)
    followers = [u for u in masters if u != leading.group(1)]
    for url in followers:  # a follower names the leader
        info = get_json(url + "/api/v1/masterInfo")
        assert info["isLeader"] is False and info["leader"]["url"] == leading.group(1)
    wait_until(lambda: len(up.example_lines()) > 0, "the example's output", 60, describe=up.console)

    # every master serves the job's output, a follower from the leader's discovery stream
    tails = {u: Tail(f"{u}/jobconnectbyname/{EXAMPLE_CLUSTER}") for u in followers}
    wait_until(lambda: all(t.events for t in tails.values()), "output from every follower", 30)

    # -- the Mantis leader, SIGKILLed
    old = leading.group(1)
    index = masters.index(old) + 1
    pid = process_named(data, f"--data-dir {data.resolve()}/master-{index} ")
    seen = len(up.example_lines())
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: mantis_leader(masters) not in (None, old),
        "another Mantis master to lead",
        TAKEOVER_SECS,
        describe=up.console,
    )
    mantis_takeover = time.monotonic() - killed_at
    new = mantis_leader(masters)
    up.wait_for(
        f"master {index} (port {port_of(old)}) exited (killed by SIGKILL); starting it again"
    )
    up.wait_for(f"the Mantis master leading is {new}")
    wait_until(  # started again, the killed one follows the new leader
        lambda: (
            ((get_json(old + "/api/v1/masterInfo") or {}).get("leader") or {}).get("url") == new
        ),
        "the killed master to follow the new leader",
        30,
        describe=up.console,
    )
    output_goes_on(up, seen, "the Mantis leader was killed")
    mantis_output = time.monotonic() - killed_at
    (follower,) = [tails[u] for u in followers if u != new]  # its stream never broke
    at_kill = follower.last_end()
    wait_until(lambda: follower.last_end() > at_kill, "a follower's client to read on", 30)
    assert not follower.ended

    # -- the mesoslite leader, SIGKILLed
    old_mesos = leading.group(2)
    pid = process_named(data, f"--port {port_of(old_mesos)} ")
    seen = len(up.example_lines())
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: mesos_leader(mesos_masters) not in (None, old_mesos),
        "the other mesoslite master to lead",
        TAKEOVER_SECS,
        describe=up.console,
    )
    mesos_takeover = time.monotonic() - killed_at
    up.wait_for(f"the mesoslite master leading is {mesos_leader(mesos_masters)}")
    output_goes_on(up, seen, "the mesoslite leader was killed")
    mesos_output = time.monotonic() - killed_at
    print(
        f"takeover: Mantis {mantis_takeover:.2f} s (output again {mantis_output:.2f} s), "
        f"mesoslite {mesos_takeover:.2f} s (output again {mesos_output:.2f} s)"
    )

    up.interrupt()
    assert up.wait(60) == 0
    assert "mantis stopped." in up.console()
    nothing_left(data)


def test_a_second_mantis_up_ha_finds_the_state_and_zookeeper_killed_comes_back(
    tmp_path: Path, runs: list[UpProcess]
) -> None:
    """The store is in ZooKeeper, whose data is in the data folder: a job cluster created
    through a follower's redirect is there after Ctrl-C and a new `mantis up --ha`, and after
    ZooKeeper itself is SIGKILLed (and started again). A taken port after --port is skipped."""
    data = tmp_path / "data"
    with socket.socket() as taken:
        port = port_before_a_taken_one(taken)
        first = UpProcess(data, port, "--ha", "--agents", "1")
        runs.append(first)
        console = first.wait_for("mantis is up, highly available", 90)
    masters = masters_of(console)
    assert masters[0] == f"http://127.0.0.1:{port}"
    assert f"http://127.0.0.1:{port + 1}" not in masters, "the taken port is skipped"
    token = (data / "api-token").read_text().strip()
    client = MantisClient(wait_for_leader(masters, first), token)
    client.upload_artifact(EXAMPLE)
    client.create_cluster(cluster_definition("kept", EXAMPLE.name, "alice"))
    first.interrupt()
    assert first.wait(60) == 0
    nothing_left(data)

    again = UpProcess(data, port, "--ha", "--agents", "1")
    runs.append(again)
    masters = masters_of(again.wait_for("mantis is up, highly available", 90))
    client = MantisClient(wait_for_leader(masters, again), token)
    assert [c["name"] for c in client.list_clusters()] == ["kept"]
    assert EXAMPLE.name in [a["name"] for a in client.list_artifacts()]

    os.kill(process_named(data, "QuorumPeerMain"), signal.SIGKILL)
    again.wait_for("ZooKeeper exited (killed by SIGKILL); starting it again")
    wait_until(
        lambda: clusters_at(wait_for_leader(masters, again), token) == ["kept"],
        "a leader serving the kept cluster after ZooKeeper came back",
        40,
        describe=again.console,
    )
    again.interrupt()
    assert again.wait(60) == 0
    nothing_left(data)


def port_before_a_taken_one(taken: socket.socket) -> int:
    """A free port whose next one `taken` binds."""
    while True:
        port = free_port()
        try:
            taken.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        taken.listen()
        return port


def masters_of(console: str) -> list[str]:
    """The three master URLs `mantis up --ha` printed."""
    api = re.search(r"API +(http://127\.0\.0\.1:\d+)/api/v1/jobClusters", console)
    others = re.search(r"also (.+): any master redirects to the leader", console)
    assert api and others, console
    return [api.group(1), *others.group(1).split(", ")]


def wait_for_leader(masters: list[str], up: UpProcess) -> str:
    wait_until(lambda: mantis_leader(masters), "a Mantis master to lead", 30, describe=up.console)
    leader = mantis_leader(masters)
    assert leader is not None
    return leader


def clusters_at(url: str, token: str) -> list[str] | None:
    try:
        return [c["name"] for c in MantisClient(url, token).list_clusters()]
    except (ApiError, MasterUnreachable):
        return None


def test_without_zookeeper_installed_mantis_up_ha_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zk_server, "JAR", tmp_path / "zookeeper.jar")
    with pytest.raises(UpError) as refused:
        LocalUp(tmp_path / "data", 1, port=0, ha=True)
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path / "zookeeper.jar") in message
    assert "sudo apt-get install zookeeper" in message and "make zookeeper" in message
    assert not (tmp_path / "data").exists(), "nothing written, nothing started"


def test_recover_from_snapshot_is_refused_with_ha(tmp_path: Path) -> None:
    with pytest.raises(UpError, match="with --ha the store is in ZooKeeper"):
        LocalUp(tmp_path / "data", 1, port=0, ha=True, recover_from_snapshot=True)

"""`mantis up` authenticates its agents: mesoslite runs with `--authenticate-agents`, each agent
gets the path of its credential file (0600) through MESOSLITE_AGENT_CREDENTIAL, never through
argv, the workers it runs do not inherit it, another process cannot register as an agent, and
the example job still streams its output."""

from __future__ import annotations

import os
import socket
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from mesoslite.auth import AGENT_CREDENTIAL_ENV
from tests.eventually import wait_until
from tests.integration.up_process import UpProcess, nothing_left, process_named, started_in

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    run = UpProcess(tmp_path / "data", free_port(), "--agents", "1", "--example")
    yield run
    run.kill()


def test_mantis_up_authenticates_its_agents_and_keeps_the_credential_from_tasks(
    up: UpProcess,
) -> None:
    wait_until(up.example_lines, "the example's output", 90, describe=up.console)
    mesos = up.data / "mesos"
    credential_file = mesos / "agent-credential.json"
    assert stat.S_IMODE(credential_file.stat().st_mode) == 0o600
    credential = orjson.loads(credential_file.read_bytes())
    credentials = orjson.loads((mesos / "credentials.json").read_bytes())["credentials"]
    assert credential in credentials and credential["principal"] == "mantis-agent"
    secret = credential["secret"].encode()

    mesoslite = process_named(up.data, "mesoslite.master")
    assert b"--authenticate-agents" in cmdline(mesoslite)
    agent = process_named(up.data, "mesoslite.agent")
    assert environ(agent)[AGENT_CREDENTIAL_ENV] == str(credential_file)
    master = process_named(up.data, " master --data-dir")
    assert AGENT_CREDENTIAL_ENV not in environ(master)
    for pid in started_in(up.data):
        assert secret not in cmdline(pid) and b"agent-credential" not in cmdline(pid)

    # The workers are the agent's tasks: none inherits the credential's path or its secret.
    sandboxes = str(mesos / "agent-0" / "slaves")
    workers = [
        p for p in started_in(up.data) if os.readlink(f"/proc/{p}/cwd").startswith(sandboxes)
    ]
    assert len(workers) >= 3  # the example job's stages
    for pid in workers:
        env = environ(pid)
        assert "MESOS_TASK_ID" in env  # it is a task
        assert AGENT_CREDENTIAL_ENV not in env
        assert not any(
            b"agent-credential" in v.encode() or secret in v.encode() for v in env.values()
        )

    # Another local process cannot register as an agent.
    console = up.console()
    mesos_url = next(
        line.split()[1] for line in console.splitlines() if line.strip().startswith("mesoslite ")
    ).removesuffix("/master/state")
    request = urllib.request.Request(
        mesos_url + "/mesoslite/api/v1/agent",
        data=orjson.dumps({"type": "REGISTER"}),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="mesoslite-master-agent"'

    up.interrupt()
    assert up.wait() == 0
    nothing_left(up.data)

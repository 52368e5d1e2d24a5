"""Agent authentication (`--authenticate-agents` on the master, `--credential` on the agent):
the agent's credential file, the flags, and a real loopback master that refuses every call of
the agent API without valid credentials, before reading it, while an in-process agent with
the right credential registers and one without is refused and stops."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from mesoslite import agent as agent_module
from mesoslite.agent import AgentConfig, AuthenticationRefused, MesosliteAgent
from mesoslite.auth import AGENT_CREDENTIAL_ENV, Credential, CredentialsError, load_credential
from mesoslite.flags import MasterConfig, add_arguments, agent_credentials, config_from_args
from mesoslite.http import AGENT_PATH, create_app
from mesoslite.master import MesosliteMaster
from mesoslite.resources import Resources
from tests.eventually import eventually
from tests.unit.mesoslite_fakes import FirstFitAllocator

AGENT = Credential("agent", "agent secret: with a colon")
CREDENTIALS = {
    "credentials": [
        {"principal": "mantis", "secret": "framework secret"},
        {"principal": AGENT.principal, "secret": AGENT.secret},
    ]
}
REGISTER = {
    "type": "REGISTER",
    "register": {
        "agent_info": {
            "hostname": "127.0.0.1",
            "port": 5051,
            "resources": Resources.parse("cpus:1;mem:128").to_mesos(),
        }
    },
}


def basic(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(CREDENTIALS))
    return path


# -- the agent's credential file and the flags ----------------------------------------------------


def test_an_agent_credential_file_is_read_and_presents_its_principal(tmp_path: Path) -> None:
    path = tmp_path / "credential.json"
    path.write_text(json.dumps({"principal": AGENT.principal, "secret": AGENT.secret}))
    assert load_credential(str(path)) == AGENT
    assert load_credential(f"file://{path}") == AGENT
    assert AGENT.secret not in repr(AGENT)  # a logged config does not show it
    assert AGENT.authorization() == basic(AGENT.principal, AGENT.secret)


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ("{", "is not JSON"),
        ('{"credentials": [{"principal": "a", "secret": "b"}]}', "principal must be"),
        ('["a", "b"]', 'expected {"principal"'),
        ('{"principal": "", "secret": "b"}', "principal must be"),
        ('{"principal": "a:b", "secret": "b"}', "principal must be"),
        ('{"principal": "a"}', "secret must be a string"),
    ],
)
def test_a_bad_agent_credential_file_is_refused_naming_the_field(
    tmp_path: Path, content: str, names: str
) -> None:
    path = tmp_path / "credential.json"
    path.write_text(content)
    with pytest.raises(CredentialsError, match=names.replace("[", r"\[")):
        load_credential(str(path))
    with pytest.raises(CredentialsError, match="cannot read credential file"):
        load_credential(str(tmp_path / "missing.json"))


def test_authenticate_agents_needs_the_credentials_file(
    credentials_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESOSLITE_CREDENTIALS", raising=False)
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def config(*argv: str) -> MasterConfig:
        return config_from_args(parser.parse_args(list(argv)))

    assert agent_credentials(config()) is None
    assert agent_credentials(config("--credentials", str(credentials_file))) is None
    with pytest.raises(CredentialsError, match="--authenticate-agents needs --credentials"):
        agent_credentials(config("--authenticate-agents"))
    on = agent_credentials(config("--authenticate-agents", "--credentials", str(credentials_file)))
    assert on is not None and on.authenticate(AGENT.authorization()) == AGENT.principal


def test_the_agent_takes_its_credential_from_the_flag_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "credential.json"
    path.write_text(json.dumps({"principal": AGENT.principal, "secret": AGENT.secret}))
    parser = argparse.ArgumentParser()
    agent_module.add_arguments(parser)

    def config(*argv: str) -> AgentConfig:
        return agent_module.config_from_args(
            parser.parse_args(["--work-dir", str(tmp_path / "work"), *argv])
        )

    monkeypatch.delenv(AGENT_CREDENTIAL_ENV, raising=False)
    assert config().credential is None
    assert config("--credential", str(path)).credential == AGENT
    monkeypatch.setenv(AGENT_CREDENTIAL_ENV, str(path))
    assert config().credential == AGENT
    # An unusable credential stops the agent before it starts, as Mesos' agent does.
    monkeypatch.setenv(AGENT_CREDENTIAL_ENV, str(tmp_path / "missing.json"))
    args = parser.parse_args(["--work-dir", str(tmp_path / "work")])
    with capture_logs() as logs:
        assert agent_module.run(args) == 2
    assert logs[0]["event"] == "agent_config_invalid"
    assert "missing.json" in logs[0]["error"]


# -- a real master on loopback ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def secured(credentials_file: Path) -> AsyncIterator[tuple[MesosliteMaster, str]]:
    config = MasterConfig(
        allocation_interval=0.02,
        heartbeat_interval=60.0,
        agent_ping_timeout=60.0,
        agent_reregister_timeout=0.0,
        authenticate_agents=True,
        credentials=str(credentials_file),
    )
    master = MesosliteMaster(config, FirstFitAllocator())
    server = TestServer(create_app(master, None, agent_credentials(config)), host="127.0.0.1")
    await server.start_server()
    master.port = server.port or 0
    try:
        yield master, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def post(
    http: aiohttp.ClientSession, url: str, call: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str]]:
    async with http.post(url + AGENT_PATH, data=orjson.dumps(call), headers=headers) as resp:
        return resp.status, dict(resp.headers)


@pytest.mark.timeout(20)
async def test_every_agent_call_needs_valid_credentials(credentials_file: Path) -> None:
    json_type = {"Content-Type": "application/json"}
    async with secured(credentials_file) as (master, url), aiohttp.ClientSession() as http:
        for auth in (
            {},
            {"Authorization": basic(AGENT.principal, "wrong")},
            {"Authorization": basic("nobody", AGENT.secret)},
            {"Authorization": "Bearer " + AGENT.secret},
        ):
            status, headers = await post(http, url, REGISTER, **json_type, **auth)
            assert status == 401
            assert headers["WWW-Authenticate"] == 'Basic realm="mesoslite-master-agent"'
        assert master.agents == {}

        # The right credential registers; the stream stays open as the agent's event stream.
        auth = {"Authorization": AGENT.authorization()}
        async with http.post(
            url + AGENT_PATH, data=orjson.dumps(REGISTER), headers={**json_type, **auth}
        ) as stream:
            assert stream.status == 200
            session = stream.headers["Mesoslite-Agent-Session"]
            (agent_id,) = master.agents
            calls = [
                {"type": "PONG", "agent_id": {"value": agent_id}, "pong": {"seq": 1}},
                {"type": "UPDATE", "agent_id": {"value": agent_id}, "update": {"updates": []}},
                {"type": "UNREGISTER", "agent_id": {"value": agent_id}},
            ]
            # Knowing the session is not enough: each call must authenticate too.
            for call in calls:
                status, _ = await post(
                    http, url, call, **json_type, **{"Mesoslite-Agent-Session": session}
                )
                assert status == 401, call["type"]
            assert master.agents[agent_id].connected
            for call in calls:
                status, _ = await post(
                    http, url, call, **json_type, **auth, **{"Mesoslite-Agent-Session": session}
                )
                assert status == 202, call["type"]
            assert master.agents == {}  # UNREGISTER went through


@pytest.mark.timeout(20)
async def test_a_call_without_credentials_is_refused_before_its_body_is_read(
    credentials_file: Path,
) -> None:
    async with secured(credentials_file) as (master, url):
        reader, writer = await asyncio.open_connection("127.0.0.1", master.port)
        # Announce a large body and send none of it: the 401 must not wait for it.
        writer.write(
            f"POST {AGENT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            "\r\nContent-Length: 1000000\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 401"), status_line
        writer.close()
        assert master.agents == {}


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("credential", "fix"),
    [
        (None, "give the agent --credential PATH or MESOSLITE_AGENT_CREDENTIAL"),
        (Credential(AGENT.principal, "wrong"), "not in the master's --credentials"),
        (Credential("mantis", AGENT.secret), "not in the master's --credentials"),
    ],
)
async def test_a_refused_agent_says_why_once_and_stops(
    credentials_file: Path, tmp_path: Path, credential: Credential | None, fix: str
) -> None:
    async with secured(credentials_file) as (master, url):
        agent = MesosliteAgent(
            AgentConfig(master=url, work_dir=tmp_path / "work", credential=credential)
        )
        with capture_logs() as logs, pytest.raises(AuthenticationRefused):
            async with asyncio.timeout(10):
                await agent.run(asyncio.Event())  # never set: the refusal ends the run
        refused = [e for e in logs if e["event"] == "agent_authentication_refused"]
        assert len(refused) == 1
        assert refused[0]["log_level"] == "error" and fix in refused[0]["fix"]
        assert refused[0]["principal"] == (None if credential is None else credential.principal)
        assert master.agents == {} and agent.registrations == 0


@pytest.mark.timeout(20)
async def test_an_agent_with_the_right_credential_registers_and_stays(
    credentials_file: Path, tmp_path: Path
) -> None:
    async with secured(credentials_file) as (master, url):
        agent = MesosliteAgent(
            AgentConfig(master=url, work_dir=tmp_path / "work", credential=AGENT)
        )
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        await eventually(lambda: bool(master.agents), "the agent registered")
        assert agent.id in master.agents and master.agents[agent.id].connected
        stop.set()
        async with asyncio.timeout(10):
            await running  # no AuthenticationRefused: UNREGISTER was accepted too
        assert master.agents == {}

"""HTTP Basic authentication of frameworks (`--authenticate-http-frameworks`): the check itself,
the credentials file, the flags, and a real loopback master that enforces it on the scheduler
API and the teardown while its read-only endpoints and the agent API stay open (agents are
authenticated under their own flag: tests/unit/test_mesoslite_agent_auth_check.py)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from mesoslite.auth import CredentialsError, load_credentials
from mesoslite.client import CallFailed, SchedulerClient
from mesoslite.flags import MasterConfig, add_arguments, config_from_args, framework_credentials
from mesoslite.http import AGENT_PATH, create_app
from mesoslite.master import MesosliteMaster
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent, FirstFitAllocator, offer

CREDENTIALS = {
    "credentials": [
        {"principal": "mantis", "secret": "s3cret:with colon"},
        {"principal": "other", "secret": "another"},
    ]
}
MANTIS = {"principal": "mantis", "secret": "s3cret:with colon"}
OTHER = {"principal": "other", "secret": "another"}


def basic(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(CREDENTIALS))
    return path


# -- the check ----------------------------------------------------------------------------------


def test_only_a_known_principal_with_its_secret_is_authenticated(credentials_file: Path) -> None:
    creds = load_credentials(str(credentials_file))
    assert creds.authenticate(basic("mantis", "s3cret:with colon")) == "mantis"
    assert creds.authenticate(basic("other", "another")) == "other"
    assert creds.authenticate(basic("mantis", "another")) is None  # another principal's secret
    assert creds.authenticate(basic("mantis", "s3cret")) is None  # a prefix of the secret
    assert creds.authenticate(basic("nobody", "s3cret:with colon")) is None
    assert creds.authenticate(None) is None
    assert creds.authenticate("Bearer " + "x" * 20) is None
    assert creds.authenticate("Basic not-base64!") is None
    assert creds.authenticate("Basic " + base64.b64encode(b"no colon").decode()) is None
    assert load_credentials(f"file://{credentials_file}").secrets == creds.secrets


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ("{", "is not JSON"),
        ('{"credentials": []}', "at least one credential"),
        ('{"principal": "a", "secret": "b"}', "at least one credential"),
        ('{"credentials": [{"secret": "b"}]}', "credentials[0].principal"),
        ('{"credentials": [{"principal": "a:b", "secret": "b"}]}', "credentials[0].principal"),
        (
            '{"credentials": [{"principal": "a", "secret": "b"}, {"principal": "c"}]}',
            "credentials[1].secret",
        ),
    ],
)
def test_a_bad_credentials_file_is_refused_naming_the_field(
    tmp_path: Path,
    content: str,
    names: str,
) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(content)
    with pytest.raises(CredentialsError, match=names.replace("[", r"\[").replace("]", r"\]")):
        load_credentials(str(path))
    with pytest.raises(CredentialsError, match="cannot read"):
        load_credentials(str(tmp_path / "missing.json"))


def parse(argv: list[str]) -> MasterConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_flags_and_the_environment_variable_choose_the_credentials(
    credentials_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MESOSLITE_CREDENTIALS", raising=False)
    assert framework_credentials(parse([])) is None
    with pytest.raises(CredentialsError, match="needs --credentials"):
        framework_credentials(parse(["--authenticate-http-frameworks"]))
    on = parse(["--authenticate-http-frameworks", "--credentials", str(credentials_file)])
    creds = framework_credentials(on)
    assert creds is not None and set(creds.secrets) == {"mantis", "other"}
    # Credentials without the flag: checked (a bad file is an error), not enforced.
    assert framework_credentials(parse(["--credentials", str(credentials_file)])) is None
    with pytest.raises(CredentialsError):
        framework_credentials(parse(["--credentials", str(credentials_file.parent / "nope")]))
    # The path can come from the environment, so that it is not on the command line.
    monkeypatch.setenv("MESOSLITE_CREDENTIALS", str(credentials_file))
    config = parse(["--authenticate-http-frameworks"])
    assert config.credentials == str(credentials_file)
    assert framework_credentials(config) is not None


# -- a real master on loopback ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def secured(credentials_file: Path) -> AsyncIterator[tuple[MesosliteMaster, str]]:
    config = MasterConfig(
        allocation_interval=0.02,
        heartbeat_interval=60.0,
        agent_ping_timeout=60.0,
        agent_reregister_timeout=0.0,
        authenticate_http_frameworks=True,
        credentials=str(credentials_file),
    )
    master = MesosliteMaster(config, FirstFitAllocator())
    server = TestServer(create_app(master, framework_credentials(config)), host="127.0.0.1")
    await server.start_server()
    master.port = server.port or 0
    try:
        yield master, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def refused(client: SchedulerClient, **info: Any) -> CallFailed:
    with pytest.raises(CallFailed) as failed:
        await client.subscribe({**FRAMEWORK, **info})
    await client.close()
    return failed.value


@pytest.mark.timeout(20)
async def test_the_scheduler_api_needs_valid_credentials(credentials_file: Path) -> None:
    async with secured(credentials_file) as (master, url):
        wrong = {"principal": "mantis", "secret": "wrong"}
        for auth in ({}, wrong, {"principal": "x", "secret": "y"}):
            failure = await refused(SchedulerClient(url, **auth))
            assert failure.status == 401
        async with (
            aiohttp.ClientSession() as http,
            http.post(url + "/api/v1/scheduler", json={"type": "SUBSCRIBE"}) as resp,
        ):
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="mesos-master-scheduler"'
        assert master.frameworks == {}

        agent = FakeAgent(url)  # the agent API is not framework authentication
        await agent.register()
        client = SchedulerClient(url, **MANTIS)
        event = await client.subscribe(FRAMEWORK)  # no principal in FrameworkInfo: it is set
        assert event["type"] == "SUBSCRIBED"
        assert (await offer(client))["agent_id"]["value"] == agent.id
        assert master.state()["frameworks"][0]["principal"] == "mantis"
        await client.close()
        await agent.close()


@pytest.mark.timeout(20)
async def test_a_framework_is_bound_to_the_principal_it_authenticated_as(
    credentials_file: Path,
) -> None:
    async with secured(credentials_file) as (master, url):
        failure = await refused(SchedulerClient(url, **OTHER), principal="mantis")
        assert failure.status == 400
        assert failure.text == (
            "Authenticated principal 'other' does not match principal 'mantis' set in `FrameworkInfo`"
        )
        assert master.frameworks == {}

        client = SchedulerClient(url, **MANTIS)
        assert (await client.subscribe({**FRAMEWORK, "principal": "mantis"}))[
            "type"
        ] == "SUBSCRIBED"
        fid = client.framework_id
        assert fid is not None
        # Another principal may neither call for it nor take its id over.
        async with aiohttp.ClientSession(
            headers={"Authorization": basic("other", "another")}
        ) as http:
            body = {"type": "REVIVE", "framework_id": {"value": fid}}
            headers = {"Mesos-Stream-Id": client.stream_id or ""}
            async with http.post(url + "/api/v1/scheduler", json=body, headers=headers) as resp:
                assert resp.status == 400
                assert "Authenticated principal 'other'" in await resp.text()
        thief = SchedulerClient(url, **OTHER)
        event = await thief.subscribe({**FRAMEWORK, "principal": "other"}, framework_id=fid)
        assert event == {
            "type": "ERROR",
            "error": {"message": "Changing framework's principal is not allowed."},
        }
        await thief.close()
        assert master.frameworks[fid].connected  # the owner's subscription is untouched
        assert await client.call({"type": "REVIVE"}) == (202, "")
        await client.close()


@pytest.mark.timeout(20)
async def test_teardown_needs_credentials_and_read_only_endpoints_stay_open(
    credentials_file: Path,
) -> None:
    async with secured(credentials_file) as (master, url):
        client = SchedulerClient(url, **MANTIS)
        await client.subscribe(FRAMEWORK)
        form = {"frameworkId": client.framework_id or ""}
        async with aiohttp.ClientSession() as http:
            for path in ("/master/state", "/health", "/version"):
                async with http.get(url + path) as resp:
                    assert resp.status == 200, path
            async with http.post(url + AGENT_PATH, json={"type": "NOPE"}) as resp:
                assert resp.status == 400  # read and judged: not held back for credentials
            async with http.post(url + "/master/teardown", data=form) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"] == 'Basic realm="mesos-master-readwrite"'
            assert client.framework_id in master.frameworks
            headers = {"Authorization": basic("other", "another")}
            async with http.post(url + "/master/teardown", data=form, headers=headers) as resp:
                assert resp.status == 200
        assert master.frameworks == {}
        await client.close()

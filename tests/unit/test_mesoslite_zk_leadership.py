"""mesoslite's ZooKeeper pieces without ZooKeeper: the `zk://` URL, which member leads, and
what a standby, an elected and a demoted master answer over real HTTP (mesoslite.leadership,
driven by a scripted election in place of mesoslite.zk.MasterGroup)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from mesoslite import agent as agent_module
from mesoslite.client import SchedulerClient
from mesoslite.flags import MasterConfig, add_arguments, config_from_args
from mesoslite.http import create_app
from mesoslite.leadership import Leadership
from mesoslite.master import MesosliteMaster
from mesoslite.zk import ZkUrl, leading_member, master_info_of
from tests.eventually import eventually
from tests.unit.mesoslite_fakes import FRAMEWORK, FakeAgent, FirstFitAllocator

OTHER = {
    "id": "other-master",
    "pid": "master@127.0.0.1:5999",
    "hostname": "127.0.0.1",
    "port": 5999,
    "address": {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": 5999},
}


# -- zk:// URLs and the leading member ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hosts", "path"),
    [
        ("zk://127.0.0.1:2181/mesos", "127.0.0.1:2181", "/mesos"),
        ("zk://127.0.0.1:2181,127.0.0.1:2182/a/b/", "127.0.0.1:2181,127.0.0.1:2182", "/a/b"),
        ("zk://127.0.0.1:2181", "127.0.0.1:2181", "/mesos"),
        (" zk://localhost:2181/ ", "localhost:2181", "/mesos"),
    ],
)
def test_zk_urls_name_servers_and_a_path(text: str, hosts: str, path: str) -> None:
    url = ZkUrl.parse(text)
    assert (url.hosts, url.path) == (hosts, path)
    assert ZkUrl.parse(str(url)) == url


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("http://127.0.0.1:2181/mesos", "expected zk://"),
        ("zk:///mesos", "no ZooKeeper server"),
        ("zk://127.0.0.1/mesos", "expected host:port"),
        ("zk://127.0.0.1:99999/mesos", "expected host:port"),
        ("zk://127.0.0.1:2181,:2182/mesos", "expected host:port"),
        ("zk://user:secret@127.0.0.1:2181/mesos", "credentials"),
        ("zk://127.0.0.1:2181/a/../b", "not a ZooKeeper path"),
        ("zk://127.0.0.1:2181/a//b", "not a ZooKeeper path"),
    ],
)
def test_bad_zk_urls_are_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        ZkUrl.parse(text)


def test_the_lowest_sequence_leads_among_json_info_members_only() -> None:
    assert leading_member([]) is None
    assert leading_member(["log_replicas", "info_0000000001", "json.info_x"]) is None
    children = ["json.info_0000000010", "log_replicas", "json.info_0000000009", "info_0000000001"]
    assert leading_member(children) == "json.info_0000000009"
    # By number, as Mesos' Group parses the sequence, not by name.
    assert leading_member(["json.info_10", "json.info_9"]) == "json.info_9"


def test_a_member_without_a_json_master_info_is_no_leader_to_follow() -> None:
    assert master_info_of(b"not json") is None
    assert master_info_of(b"[1, 2]") is None
    assert master_info_of(b'{"id": "x"}') is None
    assert master_info_of(b'{"id": "x", "address": {"ip": "127.0.0.1", "port": 1}}') == {
        "id": "x",
        "address": {"ip": "127.0.0.1", "port": 1},
    }


def test_the_zk_flags_of_master_and_agent_are_checked_when_parsed() -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--zk", "zk://127.0.0.1:2181/m/"]))
    assert (config.zk, config.zk_session_timeout) == ("zk://127.0.0.1:2181/m", 10.0)
    assert config_from_args(parser.parse_args([])).zk is None
    with pytest.raises(argparse.ArgumentError, match="expected host:port"):
        parser.parse_args(["--zk", "zk://127.0.0.1/m"])
    with pytest.raises(argparse.ArgumentError, match="must be > 0"):
        parser.parse_args(["--zk-session-timeout", "0"])

    agent_parser = argparse.ArgumentParser(exit_on_error=False)
    agent_module.add_arguments(agent_parser)
    args = agent_parser.parse_args(["--work-dir", "w", "--master", "zk://127.0.0.1:2181"])
    assert args.master == "zk://127.0.0.1:2181/mesos"
    with pytest.raises(argparse.ArgumentError, match="no ZooKeeper server"):
        agent_parser.parse_args(["--work-dir", "w", "--master", "zk:///mesos"])


# -- a standby, an elected and a demoted master ------------------------------------------------


class ScriptedGroup:
    """The election as the test decides it."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.leader: dict[str, Any] | None = None
        self.leading = False
        self.contended: list[dict[str, Any]] = []
        self.running = False

    def contend(self, info: dict[str, Any]) -> None:
        self.contended.append(info)

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def decide(self, leader: dict[str, Any] | None, leading: bool = False) -> None:
        self.leader, self.leading = leader, leading
        self.on_change()


@contextlib.asynccontextmanager
async def standby() -> AsyncIterator[tuple[Leadership, ScriptedGroup, str]]:
    groups: list[ScriptedGroup] = []

    def group(on_change: Callable[[], None]) -> ScriptedGroup:
        groups.append(ScriptedGroup(on_change))
        return groups[-1]

    config = MasterConfig(allocation_interval=0.02, agent_reregister_timeout=0.0)
    leadership = Leadership(lambda: MesosliteMaster(config, FirstFitAllocator()), group)
    server = TestServer(create_app(leadership), host="127.0.0.1")
    await server.start_server()
    try:
        yield leadership, groups[0], f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()
    assert not groups[0].running, "a stopped master leaves the election"


async def answer(url: str, method: str = "POST", body: Any = None) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=body, allow_redirects=False) as resp,
    ):
        return resp.status, resp.headers.get("Location", ""), await resp.text()


async def state(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url + "/master/state") as resp:
        body: dict[str, Any] = await resp.json()
        return body


@pytest.mark.timeout(20)
async def test_a_standby_without_a_leader_answers_503_and_names_none() -> None:
    async with standby() as (leadership, group, url):
        assert group.contended == [leadership.master.master_info()]
        subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": FRAMEWORK}}
        assert await answer(url + "/api/v1/scheduler", body=subscribe) == (
            503,
            "",
            "No leader elected",
        )
        assert (await answer(url + "/mesoslite/api/v1/agent", body={}))[0] == 503
        assert (await answer(url + "/master/redirect", "GET"))[0] == 503
        body = await state(url)
        assert "leader" not in body and "leader_info" not in body and "elected_time" not in body


@pytest.mark.timeout(20)
async def test_a_standby_redirects_calls_to_the_leaders_same_path() -> None:
    async with standby() as (_leadership, group, url):
        group.decide(OTHER)
        assert await answer(url + "/api/v1/scheduler?x=1", body={"type": "SUBSCRIBE"}) == (
            307,
            "//127.0.0.1:5999/api/v1/scheduler?x=1",
            "",
        )
        assert (await answer(url + "/mesoslite/api/v1/agent", body={}))[:2] == (
            307,
            "//127.0.0.1:5999/mesoslite/api/v1/agent",
        )
        assert (await answer(url + "/master/teardown"))[:2] == (
            307,
            "//127.0.0.1:5999/master/teardown",
        )
        assert (await answer(url + "/master/redirect", "GET"))[:2] == (307, "//127.0.0.1:5999")
        body = await state(url)
        assert body["leader"] == OTHER["pid"] and body["leader_info"] == OTHER
        assert body["pid"] != OTHER["pid"]


@pytest.mark.timeout(20)
async def test_a_leader_named_at_the_standbys_own_address_gets_no_redirect_loop() -> None:
    async with standby() as (leadership, group, url):
        group.decide(leadership.master.master_info())  # its member, not yet replaced
        assert (await answer(url + "/api/v1/scheduler", body={"type": "SUBSCRIBE"}))[0] == 503


@pytest.mark.timeout(20)
async def test_an_elected_master_serves_and_a_demoted_one_starts_over_as_a_standby() -> None:
    async with standby() as (leadership, group, url):
        first = leadership.master
        group.decide(first.master_info(), leading=True)
        agent = FakeAgent(url)
        await agent.register()
        client = SchedulerClient(url)
        subscribed = await client.subscribe(FRAMEWORK)
        assert subscribed["subscribed"]["master_info"]["id"] == first.id
        body = await state(url)
        assert body["leader"] == body["pid"] and body["id"] == first.id
        assert "elected_time" in body and len(body["frameworks"]) == 1

        group.decide(None)  # the session is suspended: it leads no more
        await eventually(client.closed.is_set, "the framework's stream to end")
        await eventually(
            lambda: agent.reader is not None and agent.reader.done(), "the agent's stream to end"
        )
        second = leadership.master
        assert second is not first and second.id != first.id
        assert group.contended[-1] == second.master_info()
        assert second.master_info()["port"] == first.master_info()["port"]
        body = await state(url)
        assert body["id"] == second.id and body["frameworks"] == [] and "leader" not in body
        assert (await answer(url + "/api/v1/scheduler", body={"type": "SUBSCRIBE"}))[0] == 503

        group.decide(second.master_info(), leading=True)  # elected again, as a new master
        again = SchedulerClient(url)
        resubscribed = await again.subscribe({**FRAMEWORK}, framework_id=client.framework_id)
        assert resubscribed["subscribed"]["framework_id"]["value"] == client.framework_id
        assert resubscribed["subscribed"]["master_info"]["id"] == second.id
        await again.close()
        await client.close()
        await agent.close()

"""Masters elect a leader in ZooKeeper, and agents find it, the way Mesos does.

Every master contends by creating an EPHEMERAL SEQUENTIAL znode `json.info_<sequence>` under
the `--zk` path that holds its MasterInfo as JSON (include/mesos/v1/mesos.proto); the member
with the lowest sequence leads (Mesos' src/master/contender/zookeeper.cpp and
src/master/detector/zookeeper.cpp over src/zookeeper/group.cpp). Standby masters, agents and
frameworks (pymesos' MasterDetector takes the lowest `json.info_*` child and reads its
`address.ip` and `address.port`) all read the same group, so they agree on the leader.

`MasterGroup` follows the group with one kazoo client: after every watch event and every
connection state change it reads the children and the leader's data again, so a missed or
coalesced event cannot leave it wrong. With `contend` it also keeps this process's member: it
creates one when it has none in the current session (after a session loss the old one is gone),
and finds the one it created itself after a lost reply by the node's ephemeral owner.
A client that is not connected (kazoo's SUSPENDED or LOST) knows no leader and leads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry

log = structlog.get_logger()

SCHEME = "zk://"
DEFAULT_PATH = "/mesos"
MEMBER_PREFIX = "json.info_"
"""Mesos' label for MasterInfo as JSON (src/master/constants.cpp MASTER_INFO_JSON_LABEL)."""
RETRY_AFTER_ERROR = 0.2  # seconds before reading the group again after a failed read
RECONNECT_DELAY_MAX = 1.0  # kazoo's default back-off grows to an hour


def is_zk(text: str) -> bool:
    return text.strip().startswith(SCHEME)


@dataclass(frozen=True, slots=True)
class ZkUrl:
    """`zk://host:port[,host:port...][/path]`, Mesos' `--zk` and `--master` form."""

    hosts: str
    path: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.hosts}{self.path}"

    @classmethod
    def parse(cls, text: str) -> ZkUrl:
        """The URL's servers and group path (DEFAULT_PATH when it names none); ValueError
        saying what is wrong otherwise."""
        text = text.strip()
        if not text.startswith(SCHEME):
            raise ValueError(f"expected {SCHEME}host:port[,host:port]/path, got {text!r}")
        hosts, slash, path = text[len(SCHEME) :].partition("/")
        if "@" in hosts:
            raise ValueError("ZooKeeper credentials in the URL are not supported")
        if not hosts:
            raise ValueError(f"no ZooKeeper server in {text!r}")
        for server in hosts.split(","):
            parts = urlsplit(f"//{server}")
            try:
                port = parts.port
            except ValueError:
                port = None
            if not parts.hostname or port is None or not 0 < port < 65536:
                raise ValueError(f"{server!r} in {text!r}: expected host:port")
        path = "/" + path.strip("/") if slash and path.strip("/") else DEFAULT_PATH
        if any(not part or part in (".", "..") for part in path[1:].split("/")):
            raise ValueError(f"{path!r} in {text!r} is not a ZooKeeper path")
        return cls(hosts, path)


def sequence_of(name: str) -> int | None:
    """The sequence number of a member's znode name, None for any other child."""
    if not name.startswith(MEMBER_PREFIX):
        return None
    digits = name[len(MEMBER_PREFIX) :]
    return int(digits) if digits.isdigit() else None


def leading_member(children: Iterable[str]) -> str | None:
    """The child named `json.info_<sequence>` with the lowest sequence, as Mesos' detector
    picks the leader (other children, such as the replicated log's, are not masters)."""
    members = [(seq, name) for name in children if (seq := sequence_of(name)) is not None]
    return min(members)[1] if members else None


def master_info_of(data: bytes) -> dict[str, Any] | None:
    """A member's MasterInfo, None when its data is not a JSON object with an address."""
    try:
        info = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("address"), dict):
        return None
    return info


@dataclass(frozen=True, slots=True)
class _Reading:
    """One read of the group: the leader's MasterInfo, whether it is our member, our member."""

    leader: dict[str, Any] | None
    leading: bool
    member: str | None
    written: bytes | None


class MasterGroup:
    """The masters' group under one path: who leads (`leader`, its MasterInfo, None while
    unknown) and, once `contend` gave this process's MasterInfo, whether it is us (`leading`).

    `on_change` is called on the event loop whenever either changes. kazoo's calls block, so
    they run on a worker thread; its callbacks come on kazoo's threads and only wake the loop.
    """

    def __init__(
        self,
        url: ZkUrl,
        on_change: Callable[[], None],
        session_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.session_timeout = session_timeout
        self.leader: dict[str, Any] | None = None
        self.leading = False
        self._on_change = on_change
        self._info: bytes | None = None  # our MasterInfo, once contending
        self._member: str | None = None
        self._written: bytes | None = None  # what our member holds
        self._epoch = 0  # connection state changes so far: a read from an older one is stale
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._client = KazooClient(
            hosts=url.hosts,
            timeout=session_timeout,
            connection_retry=KazooRetry(
                max_tries=-1, delay=0.1, backoff=2, max_delay=RECONNECT_DELAY_MAX
            ),
        )

    def contend(self, info: dict[str, Any]) -> None:
        """Be a member with this MasterInfo (replacing the one it held, keeping its place)."""
        self._info = orjson.dumps(info)
        self._wake.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._client.add_listener(self._state_changed)
        self._client.start_async()  # connects in the background, retrying until stopped
        self._task = asyncio.create_task(self._follow(), name="zk-group")
        log.info("zk_group_following", zk=str(self.url), contending=self._info is not None)

    async def stop(self) -> None:
        """Leave the group: closing the session deletes our member at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._client.remove_listener(self._state_changed)
        await asyncio.to_thread(self._close)
        self.leader, self.leading = None, False

    def _close(self) -> None:
        self._client.stop()
        self._client.close()

    # -- kazoo's threads ------------------------------------------------------------------------

    def _state_changed(self, state: str) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connection_changed, state)

    def _watched(self, _event: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- the event loop -------------------------------------------------------------------------

    def _connection_changed(self, state: str) -> None:
        self._epoch += 1
        log.info("zk_connection", state=str(state), zk=str(self.url))
        if state != KazooState.CONNECTED:
            self._publish(_Reading(None, False, self._member, self._written))
        self._wake.set()

    async def _follow(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            epoch = self._epoch
            try:
                reading = await asyncio.to_thread(
                    self._read, self._info, self._member, self._written
                )
            except (KazooException, KazooTimeoutError) as e:
                log.info("zk_group_read_failed", zk=str(self.url), error=repr(e))
                reading = self._retry_later()
            except Exception:  # a bug must not end the following for good
                log.exception("zk_group_read_crashed", zk=str(self.url))
                reading = self._retry_later()
            if epoch != self._epoch:
                self._wake.set()  # the connection changed meanwhile: read again
                continue
            self._publish(reading)

    def _retry_later(self) -> _Reading:
        """What a failed read leaves known (nothing), with another read scheduled."""
        if self._loop is not None:
            self._loop.call_later(RETRY_AFTER_ERROR, self._wake.set)
        return _Reading(None, False, self._member, self._written)

    def _publish(self, reading: _Reading) -> None:
        self._member, self._written = reading.member, reading.written
        if (reading.leader, reading.leading) == (self.leader, self.leading):
            return
        self.leader, self.leading = reading.leader, reading.leading
        log.info(
            "zk_leader",
            zk=str(self.url),
            leader=None if reading.leader is None else reading.leader.get("pid"),
            leading=reading.leading,
        )
        self._on_change()

    # -- a worker thread ------------------------------------------------------------------------

    def _read(self, info: bytes | None, member: str | None, written: bytes | None) -> _Reading:
        client = self._client
        if client.state != KazooState.CONNECTED:
            return _Reading(None, False, member, written)
        path = self.url.path
        client.ensure_path(path)
        children: list[str] = client.get_children(path, watch=self._watched)
        if info is not None:
            if member not in children:
                member = self._own_member(children)
            if member is None:
                created: str = client.create(
                    f"{path}/{MEMBER_PREFIX}", info, ephemeral=True, sequence=True
                )
                member, written = created.rsplit("/", 1)[1], info
                log.info("zk_member_created", zk=str(self.url), member=member)
                # Read again: a member created meanwhile may have a lower sequence.
                children = client.get_children(path, watch=self._watched)
            elif written != info:
                client.set(f"{path}/{member}", info)
                written = info
        leader_name = leading_member(children)
        if leader_name is None:
            return _Reading(None, False, member, written)
        data, _stat = client.get(f"{path}/{leader_name}", watch=self._watched)
        return _Reading(master_info_of(data), leader_name == member, member, written)

    def _own_member(self, children: list[str]) -> str | None:
        """A member this session created (its reply may have been lost), else None."""
        session = self._client.client_id
        if session is None:
            return None
        for name in children:
            if sequence_of(name) is None:
                continue
            stat = self._client.exists(f"{self.url.path}/{name}")
            if stat is not None and stat.ephemeralOwner == session[0]:
                return name
        return None

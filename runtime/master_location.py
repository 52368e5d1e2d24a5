"""Where a worker finds the master: the URL it was given, or the elected leader's, followed
across failovers.

With several masters (``mantis master --zk``) the leader publishes its description at
``<root>/leader`` in ZooKeeper (common.master_leader). `ZkLeaderWatch` keeps a kazoo DataWatch
on that znode and moves the `MasterLocation` to the leader's `url` whenever it changes, as
Mantis' workers follow the leader's MasterDescription through ZookeeperMasterMonitor
(io.mantisrx.server.core.master); common.master_location says how readers follow it.

kazoo calls back on its own threads; the location is only changed on the asyncio loop
(``loop.call_soon_threadsafe``), as adapters/zk/election.py does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import structlog
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.recipe.watchers import DataWatch

from common.master_leader import DEFAULT_ZK_ROOT, leader_path, leader_url
from common.master_location import MasterLocation

log = structlog.get_logger()

ZK_RETRY = {"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 2.0}
"""kazoo reconnects for ever, at most 2 s apart (its default waits up to an hour)."""


class ZkLeaderWatch:
    """Moves `location` to the leader published under `root` in ZooKeeper `hosts`
    (``host:port[,host:port][/chroot]``) whenever it changes; see the module docstring."""

    def __init__(self, location: MasterLocation, hosts: str, root: str = DEFAULT_ZK_ROOT) -> None:
        self.location = location
        self.hosts = hosts
        self.path = leader_path(root)
        self._client = KazooClient(hosts=hosts, connection_retry=dict(ZK_RETRY))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False

    def start(self) -> None:
        """Connect and watch, without waiting: until ZooKeeper answers, the location stays."""
        self._loop = asyncio.get_running_loop()
        connected = self._client.start_async()
        # DataWatch reads the znode before it returns: on a thread of its own, once connected
        # (a read queued before would be retried for ever once the client is stopped).
        threading.Thread(
            target=self._watch, args=(connected,), name="zk-leader-watch", daemon=True
        ).start()
        log.info("master_leader_watch_started", zk=self.hosts, path=self.path)

    def _watch(self, connected: threading.Event) -> None:
        while not connected.wait(0.5):
            if self._stopped:
                return
        with contextlib.suppress(KazooException):  # stopped meanwhile
            DataWatch(self._client, self.path, self._on_data)

    def _on_data(self, data: bytes | None, _stat: Any, _event: Any = None) -> bool | None:
        """On kazoo's thread, for every version of the znode (None while it is missing)."""
        if self._stopped:
            return False  # kazoo's way to end a DataWatch
        url = leader_url(data)
        if url is None:
            log.warning("master_leader_unknown", path=self.path, data=(data or b"")[:200])
            return None
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is listening
            loop.call_soon_threadsafe(self.location.move, url)
        return None

    async def stop(self) -> None:
        self._stopped = True
        client = self._client
        await asyncio.to_thread(client.stop)
        await asyncio.to_thread(client.close)


@contextlib.asynccontextmanager
async def followed(
    url: str, zk: str = "", zk_root: str = DEFAULT_ZK_ROOT
) -> AsyncIterator[MasterLocation]:
    """The master at `url`, following the leader in ZooKeeper `zk` if given."""
    location = MasterLocation(url)
    if not zk:
        yield location
        return
    watch = ZkLeaderWatch(location, zk, zk_root)
    watch.start()
    try:
        yield location
    finally:
        await watch.stop()

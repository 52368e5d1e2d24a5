"""The test ZooKeeper (tests/zookeeper.py) serves kazoo, and comes back with its data after a restart."""

from __future__ import annotations

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from tests.zookeeper import ZooKeeperServer


def test_kazoo_creates_and_reads_a_node(zookeeper: str) -> None:
    client = KazooClient(hosts=zookeeper, timeout=5.0)
    client.start(timeout=10)
    try:
        client.create("/test-zookeeper/node", b"hello", makepath=True)
        data, stat = client.get("/test-zookeeper/node")
        assert (data, stat.version) == (b"hello", 0)
    finally:
        client.stop()
        client.close()


def test_a_restarted_server_keeps_its_port_and_data(zookeeper_server: ZooKeeperServer) -> None:
    client = KazooClient(hosts=zookeeper_server.address, timeout=5.0)
    client.start(timeout=10)
    try:
        client.create("/kept", b"before the restart")
        zookeeper_server.stop()
        assert not zookeeper_server.ruok()
        zookeeper_server.start()
        data, _ = KazooRetry(max_tries=-1, deadline=10.0)(client.get, "/kept")
        assert data == b"before the restart"
    finally:
        client.stop()
        client.close()

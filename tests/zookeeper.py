"""A real standalone ZooKeeper on 127.0.0.1 for the tests: the product's own starter
(adapters.zk.server, which `mantis up --ha` runs too) with the fixtures around it. `make test`
installs the Debian package `zookeeper` (scripts/install_zookeeper.sh).

The session-scoped fixture `zookeeper` is one shared server's address; `zookeeper_server` is a
test's own server, which it may `stop` and `start` again on the same port and data (the tests
where ZooKeeper itself goes away). The tick is 200 ms, so that sessions expire in under a
second when a test wants them to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.zk.server import ZooKeeperServer, missing

__all__ = ["ZooKeeperServer", "running", "zookeeper", "zookeeper_server"]


@contextlib.contextmanager
def running(folder: Path) -> Iterator[ZooKeeperServer]:
    """A started `ZooKeeperServer` under `folder`, stopped on exit whatever happens; the test
    fails (not skips) where ZooKeeper is not installed."""
    reason = missing()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    server = ZooKeeperServer(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address ("127.0.0.1:PORT") of one ZooKeeper shared by the whole session: tests keep
    apart by using their own root paths."""
    with running(tmp_path_factory.mktemp("zookeeper")) as server:
        yield server.address


@pytest.fixture
def zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """A ZooKeeper of the test's own, which it may `stop` and `start` again (same port, same data)."""
    with running(tmp_path_factory.mktemp("zookeeper")) as server:
        yield server

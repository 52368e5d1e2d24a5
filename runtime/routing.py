"""Consistent hashing with virtual nodes: which downstream worker a key goes to.

As in Mantis' ConsistentHashingRouter, each node (a downstream worker's slot id) owns
``vnodes`` points on a 64-bit ring and a key belongs to the first point at or after its hash.
Adding a node moves only the keys that now fall on the new node's points; removing one moves
only that node's keys. Every upstream worker builds the same ring from the same slot ids,
because the hash is a fixed function of bytes (BLAKE2b, 8 bytes), never Python's ``hash()``,
so all upstream workers send a key to the same downstream worker.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

DEFAULT_VNODES = 1000
"""Mantis' virtual nodes per connection."""


def hash64(data: bytes) -> int:
    """A stable 64-bit hash of bytes, the same in every process and on every machine."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def key_bytes(key: Any) -> bytes:
    """The bytes a key is hashed by: bytes as they are, any JSON value as its JSON text.

    So ``"5"`` and ``5`` are different keys, and a key hashes alike in every process.
    """
    if isinstance(key, bytes):
        return key
    return orjson.dumps(key)


class HashRing:
    """A consistent-hash ring of node ids (str) with ``vnodes`` points each."""

    __slots__ = ("_vnodes", "_nodes", "_points", "_owners", "_node_points")

    def __init__(self, nodes: Iterable[str] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be >= 1")
        self._vnodes = vnodes
        self._nodes: set[str] = set()
        self._points: list[int] = []
        self._owners: list[str] = []
        self._node_points: dict[str, list[int]] = {}
        for node in nodes:
            self._nodes.add(node)
        self._rebuild()

    @property
    def nodes(self) -> list[str]:
        """The node ids on the ring, sorted."""
        return sorted(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def add(self, node: str) -> bool:
        """Put a node on the ring; False if it was there already."""
        if node in self._nodes:
            return False
        self._nodes.add(node)
        self._rebuild()
        return True

    def remove(self, node: str) -> bool:
        """Take a node off the ring; False if it was not there."""
        if node not in self._nodes:
            return False
        self._nodes.discard(node)
        self._node_points.pop(node, None)
        self._rebuild()
        return True

    def lookup(self, key: Any) -> str:
        """The node that owns `key`. Raises LookupError on an empty ring."""
        return self.lookup_hash(hash64(key_bytes(key)))

    def lookup_hash(self, h: int) -> str:
        """The node that owns hash `h` (from ``hash64``)."""
        if not self._points:
            raise LookupError("no nodes on the ring")
        i = bisect.bisect_left(self._points, h)
        if i == len(self._points):
            i = 0
        return self._owners[i]

    def _rebuild(self) -> None:
        # (point, node) sorted: equal points (vanishingly rare) are ordered by node id, so
        # every process builds the identical ring.
        for node in self._nodes:
            if node not in self._node_points:
                self._node_points[node] = [
                    hash64(f"{node}#{v}".encode()) for v in range(self._vnodes)
                ]
        ring = sorted((p, node) for node in self._nodes for p in self._node_points[node])
        self._points = [p for p, _ in ring]
        self._owners = [n for _, n in ring]

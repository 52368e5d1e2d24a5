"""Consistent hashing: the same key to the same node everywhere, and few keys move on change."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from runtime.routing import HashRing, hash64, key_bytes

KEYS = [f"user-{i}" for i in range(5000)]


def owners(ring: HashRing) -> dict[str, str]:
    return {k: ring.lookup(k) for k in KEYS}


def test_hash_is_a_fixed_function_of_bytes() -> None:
    # Known answer: every upstream worker, in every process, must agree.
    assert hash64(b"mantis") == 3690218124064340241
    assert key_bytes("5") == b'"5"' and key_bytes(5) == b"5" and key_bytes(b"5") == b"5"


def test_the_ring_is_the_same_in_another_process() -> None:
    code = "from runtime.routing import HashRing; print(HashRing(['a','b','c']).lookup('user-42'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        check=True,
    )
    assert out.stdout.strip() == HashRing(["c", "b", "a"]).lookup("user-42")


def test_same_nodes_same_owners_whatever_the_order_of_joining() -> None:
    a = HashRing(["w0", "w1", "w2", "w3"])
    b = HashRing()
    for node in ["w3", "w1", "w0", "w2"]:
        b.add(node)
    assert owners(a) == owners(b)


def test_keys_spread_over_nodes() -> None:
    counts = Counter(owners(HashRing(["w0", "w1", "w2", "w3"])).values())
    assert set(counts) == {"w0", "w1", "w2", "w3"}
    assert all(0.15 * len(KEYS) < c < 0.35 * len(KEYS) for c in counts.values()), counts


def test_adding_a_node_moves_keys_only_to_it() -> None:
    ring = HashRing(["w0", "w1", "w2"])
    before = owners(ring)
    ring.add("w3")
    after = owners(ring)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "w3" for k in moved)
    assert 0.15 * len(KEYS) < len(moved) < 0.35 * len(KEYS)  # about a quarter


def test_removing_a_node_moves_only_its_keys() -> None:
    ring = HashRing(["w0", "w1", "w2", "w3"])
    before = owners(ring)
    ring.remove("w1")
    after = owners(ring)
    assert all(before[k] == after[k] for k in KEYS if before[k] != "w1")
    assert all(after[k] != "w1" for k in KEYS)
    ring.add("w1")
    assert owners(ring) == before  # a replaced worker with the same slot gets its keys back


def test_membership() -> None:
    ring = HashRing(vnodes=10)
    with pytest.raises(LookupError):
        ring.lookup("k")
    assert ring.add("a") and not ring.add("a")
    assert "a" in ring and len(ring) == 1 and ring.nodes == ["a"]
    assert ring.lookup("anything") == "a"
    assert ring.remove("a") and not ring.remove("a")
    with pytest.raises(ValueError):
        HashRing(vnodes=0)

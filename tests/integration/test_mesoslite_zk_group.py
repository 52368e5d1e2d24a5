"""mesoslite.zk.MasterGroup on a real ZooKeeper: members contending at once never see two
leaders, a stopped leader is replaced, a follower that does not contend sees who leads."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kazoo.client import KazooClient

from mesoslite.zk import MasterGroup, ZkUrl
from tests.eventually import eventually


def info(n: int) -> dict[str, Any]:
    return {
        "id": f"master-{n}",
        "pid": f"master@127.0.0.1:{5050 + n}",
        "port": 5050 + n,
        "address": {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": 5050 + n},
    }


class Recorded:
    """A group and every (leader id, leading) it published."""

    def __init__(self, url: ZkUrl) -> None:
        self.seen: list[tuple[str | None, bool]] = []
        self.group = MasterGroup(url, self.changed, session_timeout=4.0)

    def changed(self) -> None:
        leader = self.group.leader
        self.seen.append((None if leader is None else leader["id"], self.group.leading))


@pytest.mark.timeout(60)
async def test_masters_contending_at_once_elect_one_and_a_stopped_one_is_replaced(
    zookeeper: str,
) -> None:
    url = ZkUrl.parse(f"zk://{zookeeper}/group-{uuid.uuid4().hex[:8]}")
    masters = [Recorded(url) for _ in range(5)]
    follower = Recorded(url)
    for n, m in enumerate(masters):
        m.group.contend(info(n))
    await asyncio.gather(*(m.group.start() for m in [*masters, follower]))
    try:

        def agreed() -> bool:
            leaders = {m.group.leader["id"] if m.group.leader else None for m in masters}
            return len(leaders) == 1 and None not in leaders and follower.group.leader is not None

        await eventually(agreed, "every member to know the same leader", 10)
        leading = [m for m in masters if m.group.leading]
        assert len(leading) == 1
        first = leading[0]
        assert follower.group.leader == first.group.leader and not follower.group.leading
        # Nobody ever believed it led but the one that does.
        assert [m for m in masters if any(lead for _, lead in m.seen)] == [first]

        assert first.group.leader is not None
        first_id = first.group.leader["id"]
        await first.group.stop()
        rest = [m for m in masters if m is not first]

        def replaced() -> bool:
            return sum(m.group.leading for m in rest) == 1 and all(
                m.group.leader is not None and m.group.leader["id"] != first_id
                for m in [*rest, follower]
            )

        await eventually(replaced, "another master to lead", 5)
        second = next(m for m in rest if m.group.leading)
        assert follower.group.leader == second.group.leader

        # A new MasterInfo replaces the member's data in place: it keeps leading.
        second.group.contend({**info(9), "id": "renewed"})
        await eventually(
            lambda: follower.group.leader is not None and follower.group.leader["id"] == "renewed",
            "the renewed MasterInfo",
            5,
        )
        assert second.group.leading
        client = KazooClient(hosts=zookeeper)
        await asyncio.to_thread(client.start, 10)
        try:
            children = await asyncio.to_thread(client.get_children, url.path)
        finally:
            await asyncio.to_thread(client.stop)
            client.close()
        assert len(children) == 4 and all(c.startswith("json.info_") for c in children)
    finally:
        await asyncio.gather(*(m.group.stop() for m in [*masters, follower]))

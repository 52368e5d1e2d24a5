"""Whether this master process leads, and whom a standby sends callers to.

Alone (no `--zk`) a master leads from the start. With `--zk` (mesoslite.zk) it contends and
serves as a standby until it is elected: its scheduler, agent and operator endpoints then
answer 307 Temporary Redirect to the leader's same path, or 503 while no leader is known, as
Mesos' Master::Http::redirect does (src/master/http.cpp); `/master/state` names the leader.

A leadership term is one MesosliteMaster incarnation. Elected, the waiting incarnation starts as
a master recovering from a failover (agents re-register with their tasks, frameworks
re-subscribe). A master that stops leading (its ZooKeeper session suspended or lost: another
master may lead meanwhile, so what it knows is stale) stops that incarnation, which closes every
stream so that agents and frameworks look for the leader again, and contends with a fresh one:
a new master id, as Mesos' master that loses leadership exits and is restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from mesoslite.master import MesosliteMaster

log = structlog.get_logger()


class Group(Protocol):
    """The election (mesoslite.zk.MasterGroup): who leads, and whether it is this process."""

    leader: dict[str, Any] | None
    leading: bool

    def contend(self, info: dict[str, Any]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


GroupFactory = Callable[[Callable[[], None]], Group]
"""Makes the group, given what it calls on the event loop when the leader changes."""


class Leadership:
    """The master incarnation this process serves (`master`) and whether it leads."""

    def __init__(
        self,
        new_master: Callable[[], MesosliteMaster],
        group: GroupFactory | None = None,
    ) -> None:
        self._new_master = new_master
        self._group_factory = group
        self._group: Group | None = None
        self.master = new_master()
        self.leading = False
        self._retiring: set[asyncio.Task[None]] = set()

    @classmethod
    def sole(cls, master: MesosliteMaster) -> Leadership:
        """A master without an election: it leads from `start` on."""
        return cls(lambda: master)

    async def start(self) -> None:
        """Lead at once when alone; otherwise contend (the master's port must be known)."""
        if self._group_factory is None:
            self._elected()
            return
        self._group = self._group_factory(self._changed)
        self._group.contend(self.master.master_info())
        await self._group.start()

    async def stop(self) -> None:
        """Leave the election first, so that a standby takes over at once, then stop serving."""
        if self._group is not None:
            await self._group.stop()
        if self.leading:
            self.leading = False
            await self.master.stop()
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def leader(self) -> dict[str, Any] | None:
        """The leading master's MasterInfo; None while no leader is known."""
        if self._group is None:
            return self.master.master_info() if self.leading else None
        return self._group.leader

    def redirect_target(self) -> dict[str, Any] | None:
        """Where a standby sends callers: the leader, unless it is this very address (a member
        of this process not yet replaced) or unknown."""
        leader = self.leader()
        if leader is None or self.leading:
            return None
        own = self.master.master_info()["address"]
        address = leader.get("address") or {}
        if (address.get("ip"), address.get("port")) == (own["ip"], own["port"]):
            return None
        return leader

    def state(self) -> dict[str, Any]:
        """`/master/state`: the incarnation's own, with the leader fields naming the leader."""
        state = self.master.state()
        del state["leader"], state["leader_info"]
        leader = self.leader()
        if leader is not None:
            state["leader"] = leader.get("pid")
            state["leader_info"] = leader
        return state

    def _changed(self) -> None:
        assert self._group is not None
        if self._group.leading and not self.leading:
            self._elected()
        elif not self._group.leading and self.leading:
            self._demoted()

    def _elected(self) -> None:
        self.leading = True
        self.master.start()
        log.info("master_elected", id=self.master.id, pid=self.master.pid)

    def _demoted(self) -> None:
        assert self._group is not None
        self.leading = False
        old = self.master
        self.master = self._new_master()
        self.master.port = old.port
        self._group.contend(self.master.master_info())
        log.warning("master_lost_leadership", id=old.id, next_id=self.master.id)
        task = asyncio.create_task(old.stop(), name="retire-master")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

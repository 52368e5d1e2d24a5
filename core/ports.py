"""Ports: what the core needs from the outside world, as `typing.Protocol`s.

Adapters implement them without inheriting anything; mypy checks the fit. The language of
the ResourceManager port is Mesos' (offers, task ids, TaskState names), since Mesos and
mesoslite are what it abstracts; the simulation speaks it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.effects import LaunchTask
from core.events import Event
from core.scheduling import Offer

# Mesos TaskState names (include/mesos/v1/mesos.proto).
TASK_STATES = frozenset(
    {
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_RUNNING",
        "TASK_KILLING",
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_UNREACHABLE",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
    }
)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """A status update for a task; the task id is the worker id."""

    task_id: str
    state: str
    agent_id: str = ""
    message: str = ""
    reason: str = ""
    uuid: str = ""  # set on updates that must be acknowledged


@dataclass(frozen=True, slots=True)
class TaskLaunch:
    """A placed worker's task: where the matcher put it, and what the agent runs for it.

    `command` runs under `/bin/sh -c` (Mesos' CommandInfo with `shell: true`) with
    `environment` added to the agent's; the simulation ignores both.
    """

    task: LaunchTask
    command: str = ""
    environment: tuple[tuple[str, str], ...] = ()


class ResourceManagerEvents(Protocol):
    """What a resource manager reports; the master implements it."""

    def registered(self, framework_id: str) -> None:
        """(Re-)registered: reconcile tasks now."""

    def offers(self, offers: Sequence[Offer]) -> None: ...

    def rescinded(self, offer_id: str) -> None: ...

    def task_status(self, status: TaskStatus) -> None:
        """Acknowledge it (`ResourceManager.acknowledge`) only once its events are persisted."""


class ResourceManager(Protocol):
    """A Mesos-style resource manager: offers in, launches, declines and kills out."""

    def start(self, events: ResourceManagerEvents) -> None: ...

    def stop(self) -> None: ...

    def launch(self, tasks: Sequence[TaskLaunch]) -> None:
        """Launch tasks on the offers of their assignments (one ACCEPT per agent)."""

    def decline(self, offer_ids: Sequence[str], refuse_seconds: float) -> None: ...

    def kill(self, task_id: str, agent_id: str, grace_secs: float | None = None) -> None:
        """SIGTERM, then SIGKILL after `grace_secs` (None: the agent's default grace)."""

    def revive(self) -> None:
        """Pending work appeared: clear decline filters and send offers again."""

    def reconcile(self, tasks: Sequence[tuple[str, str]]) -> None:
        """Ask for the state of (task id, agent id) pairs; empty: every task (implicit)."""

    def acknowledge(self, status: TaskStatus) -> None: ...


class Store(Protocol):
    """Durable, ordered event log: `append` and `commit` return only once the events are safe.

    A failed append or commit raises and leaves the log as it was before the call.
    """

    def append(self, events: Sequence[Event]) -> None: ...

    async def commit(self, events: Sequence[Event]) -> None:
        """`append` without blocking the caller's event loop."""

    def load(self) -> Iterable[Event]: ...


class LeaderElectionEvents(Protocol):
    """What a leader election reports, on the master's event loop; the master implements it."""

    def became_leader(self, epoch: int) -> None:
        """Lead from now on. `epoch` is higher than that of every earlier leadership, so what
        the leader writes with it fences off the writes of a leader that has not yet noticed
        it lost (Mantis' leader epoch; Mesos' MasterContender, src/master/contender)."""

    def lost_leadership(self, reason: str) -> None:
        """Stop acting as the leader at once: another master may be leading already."""


class LeaderElection(Protocol):
    """Masters contend to lead; one leads at a time (Mantis' ILeadershipManager)."""

    def start(self, events: LeaderElectionEvents) -> None:
        """Enter the election; returns at once."""

    def stop(self) -> None:
        """Withdraw, so another master may lead; no callback runs once it has returned."""

    def leader(self) -> dict[str, Any] | None:
        """The leader's description as last seen (Mantis' MasterDescription fields, `url` and
        `epoch`), for followers to redirect to; None while none is known. Never blocks."""

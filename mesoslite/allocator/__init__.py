"""Allocation modules: decide which framework is offered which agent's free resources.

The master holds one `Allocator` and calls it on every change (agents and frameworks coming
and going, declines with filters, task ends) and once per allocation interval (`allocate`).
Allocators are pure: time arrives as `now`. Modules are found by name through the entry
point group `mesoslite.allocators` (`drf` and `priority` ship with mesoslite).

The allocator's "framework" is a framework in one role: the master adds a framework once per
role it subscribes with, under `client_id(framework_id, role)`, as Mesos keeps one framework
sorter per role (src/master/allocator/mesos/hierarchical.cpp). So a MULTI_ROLE framework is
offered, filtered, suppressed and weighed per role, and each Grant is for one role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

from mesoslite.resources import Resources

ENTRY_POINT_GROUP = "mesoslite.allocators"


def client_id(framework_id: str, role: str) -> str:
    """The allocator's id for `framework_id` in `role` (role names hold no whitespace)."""
    return f"{framework_id} {role}"


def client_parts(client: str) -> tuple[str, str]:
    """(framework id, role) of a `client_id`."""
    framework_id, _, role = client.rpartition(" ")
    return framework_id, role


@dataclass(frozen=True, slots=True)
class Grant:
    """Offer these resources of this agent to this framework (a `client_id`: one role)."""

    framework_id: str
    agent_id: str
    resources: Resources


class Allocator(Protocol):
    """Every `framework_id` below is a framework in one role: the master passes `client_id`s."""

    def add_framework(self, framework_id: str, role: str, now: float) -> None:
        """A framework subscribed (or failed over); it is offered resources from now on."""

    def remove_framework(self, framework_id: str) -> None:
        """The framework is gone; its allocations must already have been recovered."""

    def set_weight(self, role: str, weight: float) -> None: ...

    def set_quota(self, role: str, limits: Mapping[str, float]) -> None:
        """Quota limits of `role` (resource name -> amount; empty: no limit)."""

    def add_agent(self, agent_id: str, total: Resources, allocated: dict[str, Resources]) -> None:
        """An agent (re-)registered with `total`, of which `allocated` is in use by frameworks."""

    def remove_agent(self, agent_id: str) -> None: ...

    def allocate(self, now: float) -> list[Grant]:
        """One allocation cycle: offers to make. Granted resources count as allocated."""

    def recover(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        now: float,
        refuse_seconds: float | None = None,
    ) -> None:
        """Resources come back (declined, unused in an accept, task ended, offer rescinded).

        With `refuse_seconds`, the framework is not offered a subset of these resources on
        that agent again until the filter expires (Mesos' RefusedOfferFilter).
        """

    def suppress(self, framework_id: str) -> None: ...

    def revive(self, framework_id: str) -> None:
        """Un-suppress and clear the framework's filters."""


def load_allocator(name: str) -> Allocator:
    """Instantiate the allocation module registered under `name`."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ValueError(f"unknown allocator {name!r} (known: {known})")
    factory = found[name].load()
    allocator: Allocator = factory()
    return allocator

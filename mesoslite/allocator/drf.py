"""Hierarchical DRF: Mesos' default allocator (roles by weighted dominant share, then frameworks).

A role's share is its dominant share of the cluster divided by its weight (`set_weight`,
default 1); roles are visited in ascending share, then ascending allocation count, then name
(Mesos' `DRFSorter`). Frameworks inside a role are ordered the same way, unweighted.
See `mesoslite.allocator.hierarchical` for offers, filters and suppression.
"""

from __future__ import annotations

from mesoslite.allocator.hierarchical import HierarchicalAllocator, RoleKey, RoleState


class HierarchicalDRF(HierarchicalAllocator):
    """Dominant Resource Fairness between roles (weighted) and between a role's frameworks."""

    def _role_key(self, role: RoleState) -> RoleKey:
        return (0.0, self._role_share(role) / role.weight, role.count, role.name)

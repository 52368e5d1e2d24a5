"""Strict priority: roles by weight, the heaviest first; frameworks in a role by DRF.

A role is offered an agent only when every role of higher weight has no framework that takes it
(all suppressed, or filtered on that agent). Roles of equal weight are ordered by DRF
(unweighted dominant share, then allocation count, then name). Offers, filters and suppression
are those of `mesoslite.allocator.hierarchical`.
"""

from __future__ import annotations

from mesoslite.allocator.hierarchical import HierarchicalAllocator, RoleKey, RoleState


class StrictPriority(HierarchicalAllocator):
    """Higher role weight first, always; DRF breaks ties and orders frameworks in a role."""

    def _role_key(self, role: RoleState) -> RoleKey:
        return (-role.weight, self._role_share(role), role.count, role.name)

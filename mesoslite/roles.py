"""Role names and a framework's roles, checked as Mesos checks them, with its messages:
src/common/roles.cpp (`roles::validate`) and src/master/validation.cpp
(`framework::internal::validateRoles`: `role` and `roles` are exclusive, which one depends on
the MULTI_ROLE capability; no duplicates)."""

from __future__ import annotations

from typing import Any

from mesoslite.protocol import has_capability

MULTI_ROLE = "MULTI_ROLE"
_INVALID = frozenset("\t\n\x0b\x0c\r \x7f")


def role_error(role: str) -> str | None:
    """Why `role` is not a valid role name, or None."""
    if role == "*":
        return None
    if role.startswith("/"):
        return f"Role '{role}' cannot start with a slash"
    if role.endswith("/"):
        return f"Role '{role}' cannot end with a slash"
    if "//" in role:
        return f"Role '{role}' cannot contain two adjacent slashes"
    components = [c for c in role.split("/") if c]
    if not components:
        return "Role names cannot be the empty string"
    for component in components:
        if component in (".", "..", "*"):
            return f"Role '{role}' cannot include '{component}' as a component"
        if component.startswith("-"):
            return f"Role component '{component}' is invalid because it starts with a dash"
        if any(c in _INVALID for c in component):
            return (
                f"Role component '{component}' is invalid because it contains backspace or"
                " whitespace"
            )
    return None


def framework_roles_error(info: dict[str, Any]) -> str | None:
    """Why a FrameworkInfo's `role`/`roles` are refused, or None."""
    multi_role = has_capability(info, MULTI_ROLE)
    if multi_role and "role" in info:
        return "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
    roles = info.get("roles")
    if not multi_role and roles:
        return "'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable"
    if multi_role:
        if roles is None:
            roles = []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            return "'FrameworkInfo.roles' must be a list of strings"
        duplicates = sorted({r for r in roles if roles.count(r) > 1})
        if duplicates:
            return f"'FrameworkInfo.roles' contains duplicate items: {{ {', '.join(duplicates)} }}"
        for role in roles:
            error = role_error(role)
            if error is not None:
                return f"'FrameworkInfo.roles' contains invalid role: {error}"
        return None
    role = info.get("role", "*")
    if not isinstance(role, str):
        return "'FrameworkInfo.role' must be a string"
    error = role_error(role)
    return None if error is None else f"'FrameworkInfo.role' is not a valid role: {error}"

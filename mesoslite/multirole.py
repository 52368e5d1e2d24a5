"""A framework's roles and the role its tasks' resources are allocated to, as Mesos' master
sees them: a MULTI_ROLE framework (FrameworkInfo.capabilities) subscribes with `roles`, any
other with its one `role`; each offer is for one role (`allocation_info.role`), and an ACCEPT
uses offers of one role only (src/master/validation.cpp `validateAllocationRole`). The master
writes the offers' role into the task's resources that lack it (master.cpp
`injectAllocationInfo`), so a task remembers its role when the agent reports it again; a task
whose resources name several roles is invalid (`validateAllocatedToSingleRole`).
"""

from __future__ import annotations

from typing import Any

from mesoslite.protocol import framework_role, has_capability
from mesoslite.roles import MULTI_ROLE


def framework_roles(info: dict[str, Any]) -> tuple[str, ...]:
    """The roles the framework is offered resources for."""
    roles = info.get("roles")
    if has_capability(info, MULTI_ROLE) and isinstance(roles, list):
        return tuple(r for r in roles if isinstance(r, str))
    return (framework_role(info),)


def inject_allocation_role(resources: list[dict[str, Any]], role: str) -> None:
    """Give `allocation_info.role` to the Resources that have none (they are the offers')."""
    for r in resources:
        if not isinstance(r.get("allocation_info"), dict) or "role" not in r["allocation_info"]:
            r["allocation_info"] = {"role": role}


def allocation_role_problem(resources: list[dict[str, Any]]) -> str | None:
    """Mesos' check that resources are allocated to one role, with its message."""
    roles = [r.get("allocation_info", {}).get("role") for r in resources]
    if any(not isinstance(role, str) for role in roles):
        return "The resources are not allocated to a role"
    for role in roles[1:]:
        if role != roles[0]:
            return (
                f"The resources have multiple allocation roles ('{role}' and '{roles[0]}')"
                " but only one allocation role is allowed"
            )
    return None


def allocation_role(task_info: dict[str, Any], default: str) -> str:
    """The role a task's resources are allocated to (`default` if they do not say)."""
    for r in task_info.get("resources") or []:
        role = r.get("allocation_info", {}).get("role") if isinstance(r, dict) else None
        if isinstance(role, str):
            return role
    return default


def aggregated_offers_problem(offers: list[tuple[str, str]]) -> str | None:
    """(offer id, role) of the offers of one ACCEPT: Mesos' message if roles differ."""
    for offer_id, role in offers[1:]:
        if role != offers[0][1]:
            return (
                f"Aggregated offers must be allocated to the same role. Offer {offer_id} uses"
                f" role '{role} but another is using role '{offers[0][1]}"
            )
    return None


def launch_problem(task_info: dict[str, Any], role: str) -> str | None:
    """Give the task (and its executor) the offers' `role` where its resources name none, then
    Mesos' checks: one allocation role, and the offers' (else TASK_ERROR with this message)."""
    resources = task_info.get("resources") or []
    inject_allocation_role(resources, role)
    executor = task_info.get("executor")
    if isinstance(executor, dict):
        executor_resources = executor.get("resources") or []
        inject_allocation_role(executor_resources, role)
        problem = allocation_role_problem(executor_resources)
        if problem is not None:
            return f"Invalid executor resources: {problem}"
    problem = allocation_role_problem(resources)
    if problem is not None:
        return f"Invalid task resources: {problem}"
    mine = allocation_role(task_info, role)
    if mine != role:
        return (
            f"Task uses resources allocated to role '{mine}' but its offers are for role '{role}'"
        )
    return None


def suppressed_roles_error(info: dict[str, Any], suppressed: Any) -> str | None:
    """Mesos' validateSuppressedRoles: suppressed roles must be roles of the framework."""
    if not isinstance(suppressed, list):
        return "'suppressed_roles' must be a list of roles"
    extra = sorted({str(r) for r in suppressed} - set(framework_roles(info)))
    if extra:
        return f"Suppressed roles {{ {', '.join(extra)} }} are not contained in the set of roles"
    return None

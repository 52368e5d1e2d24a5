"""Quota in the v1 operator API, Mesos 1.9+ shape: UPDATE_QUOTA with `quota_configs: [{role,
guarantees, limits}]` (maps of resource name to `{"value": x}`, include/mesos/v1/quota/quota.proto
QuotaConfig) and GET_QUOTA answering `{"status": {"infos", "configs"}}` (QuotaStatus).

Checks, messages and order are those of src/master/quota_handler.cpp (`update`) and
src/master/quota.cpp (`validate`): a nested role, an invalid role or value, guarantees beyond
limits, a limit below what the role already consumes or guarantees beyond the cluster's capacity
(these two unless `force`) are a 400 and change nothing. Consumed quota is Mesos' (the role's
unreserved allocation, offers included, plus all its reservations). Limits cap what the role is
offered (mesoslite.allocator); guarantees are kept and reported, not enforced. A config with
neither is the default and removes the role's entry. Like weights, quota lives in the master's
memory only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from mesoslite.protocol import InvalidCall, sub_message
from mesoslite.resources import Resources
from mesoslite.roles import role_error

if TYPE_CHECKING:
    from mesoslite.master import MesosliteMaster

log = structlog.get_logger()

EXABYTE_IN_MB = 1024**4  # quota.cpp: mem and disk above 1 exabyte are refused
ONE_TRILLION = 1000**4  # and anything else above 1 trillion

Amounts = dict[str, float]


def _text(amounts: Mapping[str, float]) -> str:
    """Mesos' ResourceQuantities / ResourceLimits text: `cpus:1; mem:512`, `{}` when empty."""
    if not amounts:
        return "{}"
    return "; ".join(f"{n}:{v:g}" for n, v in sorted(amounts.items()))


def _map_text(amounts: Mapping[str, float]) -> str:
    """A protobuf map as stout's stringify prints it: `{ cpus: 1, mem: 512 }`."""
    return "{ " + ", ".join(f"{n}: {v:g}" for n, v in sorted(amounts.items())) + " }"


def _scalar_problem(value: float) -> str | None:
    """common/validation.cpp `validateInputScalarValue`."""
    if math.isinf(value):
        return "Infinite values not supported"
    if math.isnan(value):
        return "NaN not supported"
    if value != 0 and abs(value) < 2.2250738585072014e-308:
        return "Subnormal values not supported"
    if value < 0:
        return "Negative values not supported"
    return None


def _amounts(config: dict[str, Any], field: str) -> Amounts:
    """A `map<string, Value.Scalar>` field: name -> value."""
    raw = config.get(field) or {}
    if not isinstance(raw, dict):
        raise InvalidCall(f"Invalid QuotaConfig: 'QuotaConfig.{field}' must be a map")
    out: Amounts = {}
    for name, scalar in raw.items():
        value = scalar.get("value") if isinstance(scalar, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidCall(
                f"Invalid QuotaConfig: 'QuotaConfig.{field}.{name}' must be {{\"value\": number}}"
            )
        out[str(name)] = float(value)
    return out


def validate(config: Any) -> tuple[str, Amounts, Amounts]:
    """One QuotaConfig: (role, guarantees, limits), or InvalidCall with Mesos' message."""
    if not isinstance(config, dict) or not isinstance(config.get("role"), str):
        raise InvalidCall("Invalid QuotaConfig: 'QuotaConfig.role' must be set")
    role = str(config["role"])
    if "/" in role:
        raise InvalidCall(f"Updating quota on nested role '{role}' is not supported yet")
    error = role_error(role)
    if error is not None:
        raise InvalidCall(f"Invalid QuotaConfig: Invalid 'QuotaConfig.role': {error}")
    guarantees, limits = _amounts(config, "guarantees"), _amounts(config, "limits")
    for field, amounts in (("guarantees", guarantees), ("limits", limits)):
        for name, value in amounts.items():
            ceiling, unit = (
                (EXABYTE_IN_MB, "1 exabyte")
                if name in ("mem", "disk")
                else (ONE_TRILLION, "1 trillion")
            )
            if value > ceiling:
                raise InvalidCall(
                    f"Invalid QuotaConfig: Invalid 'QuotaConfig.{field}': {{'{name}': {value:g}}}"
                    f" is invalid: values greater than {unit} ({ceiling}) are not supported"
                )
    for what, amounts in (("guarantee", guarantees), ("limit", limits)):
        for name, value in amounts.items():
            problem = _scalar_problem(value)
            if problem is not None:
                raise InvalidCall(
                    f"Invalid QuotaConfig: Invalid {what} configuration {{'{name}': {value:g}}}:"
                    f" {problem}"
                )
    if not _within(guarantees, limits):
        raise InvalidCall(
            f"Invalid QuotaConfig: 'QuotaConfig.guarantees' {_map_text(guarantees)} is not"
            f" contained within the 'QuotaConfig.limits' {_map_text(limits)}"
        )
    return role, guarantees, limits


def _within(amounts: Mapping[str, float], limits: Mapping[str, float]) -> bool:
    """ResourceLimits::contains: every limited name has at most its limit."""
    return all(amounts.get(name, 0.0) <= limit + 1e-9 for name, limit in limits.items())


def _quantities(resources: Iterable[Resources]) -> Amounts:
    out: Amounts = {}
    for r in resources:
        for name, milli in r.quantities().items():
            out[name] = out.get(name, 0.0) + milli / 1000
    return out


def consumed(master: MesosliteMaster, role: str) -> Amounts:
    """The role's consumed quota: unreserved resources its tasks and offers hold, plus every
    reservation for it (Mesos' RoleResourceBreakdown::consumedQuota)."""
    held: list[Resources] = [a.total.reserved_for(role) for a in master.agents.values()]
    for fw in master.frameworks.values():
        held += [o.resources.unreserved() for o in fw.offers.values() if o.role == role]
        held += [
            t.resources.unreserved()
            for t in fw.tasks.values()
            if not t.terminal and master.task_role(t) == role
        ]
    return _quantities(held)


def update_quota(master: MesosliteMaster, call: dict[str, Any]) -> None:
    """UPDATE_QUOTA: every config checked, then all applied, as Mesos' QuotaHandler::update."""
    update = sub_message(call, "update_quota")
    configs = update.get("quota_configs") or []
    force = update.get("force", False) is True
    if not isinstance(configs, list):
        raise InvalidCall("Expecting 'update_quota.quota_configs' to be a list")
    checked = [validate(config) for config in configs]
    for role, _, limits in checked:
        used = consumed(master, role)
        if not _within(used, limits):
            if not force:
                raise InvalidCall(
                    f"Invalid QuotaConfig: Role '{role}' is already consuming '{_text(used)}';"
                    f" this is more than the requested limits '{_text(limits)}'"
                    " (use 'force' flag to bypass this check)"
                )
            log.info("quota_limit_below_consumption_forced", role=role, consumed=_text(used))
    guarantees = {role: g for role, (g, _) in master.quotas.items()}
    guarantees |= {role: g for role, g, _ in checked}
    total = _quantities([])
    for amounts in guarantees.values():
        for name, value in amounts.items():
            total[name] = total.get(name, 0.0) + value
    capacity = _quantities(a.total for a in master.agents.values())
    if any(value > capacity.get(name, 0.0) + 1e-9 for name, value in total.items()):
        if not force:
            raise InvalidCall(
                f"Invalid QuotaConfig: total quota guarantees '{_text(total)}' exceed cluster"
                f" capacity '{_text(capacity)}' (use 'force' flag to bypass this check)"
            )
        log.info("quota_overcommit_forced", guarantees=_text(total))
    for role, guaranteed, limits in checked:
        if guaranteed or limits:
            master.quotas[role] = (guaranteed, limits)
        else:
            master.quotas.pop(role, None)
        master.allocator.set_quota(role, limits)
        log.info("quota_updated", role=role, guarantees=_text(guaranteed), limits=_text(limits))
    master.trigger_allocation()


def get_quota(master: MesosliteMaster) -> dict[str, Any]:
    """GET_QUOTA's body: QuotaStatus with the legacy `infos` beside `configs`."""
    infos, configs = [], []
    for role, (guarantees, limits) in sorted(master.quotas.items()):
        infos.append(
            {
                "role": role,
                "guarantee": [
                    {"name": n, "type": "SCALAR", "scalar": {"value": v}}
                    for n, v in sorted(guarantees.items())
                ],
            }
        )
        config: dict[str, Any] = {"role": role}
        if guarantees:
            config["guarantees"] = {n: {"value": v} for n, v in sorted(guarantees.items())}
        if limits:
            config["limits"] = {n: {"value": v} for n, v in sorted(limits.items())}
        configs.append(config)
    return {"status": {"infos": infos, "configs": configs}}


def role_quota(master: MesosliteMaster, role: str) -> dict[str, Any]:
    """The `quota` of a role in `/master/roles`: guarantee, limit and consumed by name."""
    guarantees, limits = master.quotas.get(role, ({}, {}))
    return {
        "role": role,
        "guarantee": dict(sorted(guarantees.items())),
        "limit": dict(sorted(limits.items())),
        "consumed": dict(sorted(consumed(master, role).items())),
    }

"""Mesos resources and attributes: arithmetic, the agent flag syntax and the v1 JSON form.

Scalars are kept in thousandths, as Mesos does (fixed point, 3 decimals), so that adding
and subtracting offers never drifts. Port ranges are inclusive and kept merged and sorted.
Besides cpus, mem, disk, gpus and ports, any other name is a custom scalar resource
(`network:1000`), as Mesos' agent `--resources` allows: offered, accounted and checked like
the others (the allocators' fair shares count the four standard scalars only).
JSON follows `Resource` in include/mesos/v1/mesos.proto: `{"name", "type", "scalar"|"ranges"}`.

Static reservations (`cpus(prod):2` in `--resources`, Mesos' text format) are kept apart:
the fields of `Resources` are the unreserved pool (role `*`), `reserved` holds one pool per
role. Arithmetic and `contains` work pool by pool, so a task that names reserved resources
only fits where that role's reservation has them, as in Mesos' `Resources::contains`. In JSON a
reserved Resource carries `reservations: [{type: STATIC, role}]` and the pre-refinement `role`
(mesos.proto `Resource.reservations`, `Resource.role`); either is read.

Attributes are kept as text and typed as Mesos' agent types them (src/common/values.cpp
`parse`): a number is a SCALAR, `[a-b,...]` RANGES, `{a,b}` a SET, anything else TEXT.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mesoslite.roles import role_error

Range = tuple[int, int]
SCALARS = ("cpus", "mem", "disk", "gpus")
_NAME = re.compile(r"[A-Za-z0-9_.\-/]+")
Custom = tuple[tuple[str, int], ...]  # sorted (name, thousandths), no zero amounts
UNRESERVED = "*"
_RESERVED_NAME = re.compile(r"([^()]*)\(([^()]*)\)")  # name(role)


class ResourceError(ValueError):
    """A resource or attribute string or JSON that cannot be understood."""


def _milli(value: float) -> int:
    return round(value * 1000)


def normalize(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sorted, merged, inclusive ranges."""
    merged: list[list[int]] = []
    for begin, end in sorted(ranges):
        if begin > end:
            raise ResourceError(f"range [{begin}-{end}] ends before it begins")
        if merged and begin <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    return tuple((b, e) for b, e in merged)


def subtract_ranges(have: tuple[Range, ...], take: tuple[Range, ...]) -> tuple[Range, ...]:
    out: list[Range] = []
    for begin, end in have:
        for t_begin, t_end in take:
            if t_end < begin or t_begin > end:
                continue
            if t_begin > begin:
                out.append((begin, t_begin - 1))
            begin = t_end + 1
            if begin > end:
                break
        if begin <= end:
            out.append((begin, end))
    return normalize(out)


def ranges_contain(have: tuple[Range, ...], want: tuple[Range, ...]) -> bool:
    return all(any(b <= wb and we <= e for b, e in have) for wb, we in want)


def range_count(ranges: tuple[Range, ...]) -> int:
    return sum(e - b + 1 for b, e in ranges)


@dataclass(frozen=True, slots=True)
class Resources:
    """Scalars in thousandths (`cpus_m` = millicpus, `mem_m` = thousandths of a MB, ...).

    The fields are the unreserved pool; `reserved` is (role, pool) pairs sorted by role, each
    pool non-empty and itself unreserved in form.
    """

    cpus_m: int = 0
    mem_m: int = 0
    disk_m: int = 0
    gpus_m: int = 0
    ports: tuple[Range, ...] = ()
    custom: Custom = ()
    reserved: tuple[tuple[str, Resources], ...] = ()

    @classmethod
    def of(
        cls,
        cpus: float = 0,
        mem: float = 0,
        disk: float = 0,
        gpus: float = 0,
        ports: Iterable[Range] = (),
        custom: Mapping[str, float] | None = None,
    ) -> Resources:
        values = {"cpus": cpus, "mem": mem, "disk": disk, "gpus": gpus, **(custom or {})}
        for name, value in values.items():
            if value < 0:
                raise ResourceError(f"{name} must be >= 0, got {value}")
        extra = {n: _milli(v) for n, v in (custom or {}).items()}
        return cls(
            _milli(cpus), _milli(mem), _milli(disk), _milli(gpus), normalize(ports), _custom(extra)
        )

    @property
    def cpus(self) -> float:
        return self.cpus_m / 1000

    @property
    def mem(self) -> float:
        return self.mem_m / 1000

    @property
    def disk(self) -> float:
        return self.disk_m / 1000

    @property
    def gpus(self) -> float:
        return self.gpus_m / 1000

    def scalars(self) -> dict[str, int]:
        """The standard scalar amounts in thousandths, by Mesos name, reserved or not."""
        r = self.flatten() if self.reserved else self
        return {"cpus": r.cpus_m, "mem": r.mem_m, "disk": r.disk_m, "gpus": r.gpus_m}

    def quantities(self) -> dict[str, int]:
        """Every scalar amount in thousandths, custom ones too (Mesos' ResourceQuantities)."""
        amounts = {n: v for n, v in self.scalars().items() if v}
        for name, amount in (self.flatten() if self.reserved else self).custom:
            amounts[name] = amount
        return amounts

    def is_empty(self) -> bool:
        return not (
            self.cpus_m
            or self.mem_m
            or self.disk_m
            or self.gpus_m
            or self.ports
            or self.custom
            or self.reserved
        )

    # -- reservations ---------------------------------------------------------------------------

    def unreserved(self) -> Resources:
        """The unreserved pool alone."""
        return replace(self, reserved=()) if self.reserved else self

    def reserved_for(self, role: str) -> Resources:
        """The pool reserved for `role` (in unreserved form), maybe empty."""
        for name, pool in self.reserved:
            if name == role:
                return pool
        return _EMPTY

    def flatten(self) -> Resources:
        """Every pool in one, reservations dropped (Mesos' `Resources::flatten`)."""
        out = self.unreserved()
        for _, pool in self.reserved:
            out = out + pool
        return out

    def allocatable_to(self, role: str) -> Resources:
        """What a framework in `role` may be offered: the unreserved pool and the pools reserved
        for the role or one of its ancestors (Mesos' `Resources::allocatableTo`)."""
        if not self.reserved:
            return self
        mine = tuple((r, p) for r, p in self.reserved if r == role or role.startswith(r + "/"))
        return replace(self, reserved=mine)

    def reserve(self, role: str) -> Resources:
        """These (unreserved) resources, reserved for `role` instead."""
        if role == UNRESERVED or self.is_empty():
            return self
        return Resources(reserved=((role, self.unreserved()),))

    def contains(self, other: Resources) -> bool:
        if other.reserved and not all(
            self.reserved_for(role).contains(pool) for role, pool in other.reserved
        ):
            return False
        mine = dict(self.custom)
        return (
            self.cpus_m >= other.cpus_m
            and self.mem_m >= other.mem_m
            and self.disk_m >= other.disk_m
            and self.gpus_m >= other.gpus_m
            and ranges_contain(self.ports, other.ports)
            and all(mine.get(n, 0) >= v for n, v in other.custom)
        )

    def __add__(self, other: Resources) -> Resources:
        reserved = self.reserved
        if other.reserved:
            pools = dict(self.reserved)
            for role, pool in other.reserved:
                pools[role] = pools[role] + pool if role in pools else pool
            reserved = tuple(sorted(pools.items()))
        custom = dict(self.custom)
        for n, v in other.custom:
            custom[n] = custom.get(n, 0) + v
        return Resources(
            self.cpus_m + other.cpus_m,
            self.mem_m + other.mem_m,
            self.disk_m + other.disk_m,
            self.gpus_m + other.gpus_m,
            normalize(self.ports + other.ports),
            _custom(custom),
            reserved,
        )

    def __sub__(self, other: Resources) -> Resources:
        """`self` minus `other`; `other` must be contained in `self`."""
        if not self.contains(other):
            raise ResourceError(f"cannot subtract {other} from {self}")
        reserved = self.reserved
        if other.reserved:
            pools = dict(self.reserved)
            for role, pool in other.reserved:
                pools[role] = pools[role] - pool
            reserved = tuple((r, p) for r, p in sorted(pools.items()) if not p.is_empty())
        custom = dict(self.custom)
        for n, v in other.custom:
            custom[n] -= v
        return Resources(
            self.cpus_m - other.cpus_m,
            self.mem_m - other.mem_m,
            self.disk_m - other.disk_m,
            self.gpus_m - other.gpus_m,
            subtract_ranges(self.ports, other.ports),
            _custom(custom),
            reserved,
        )

    def capped(self, limits: Mapping[str, int]) -> Resources:
        """The unreserved scalars cut down to `limits` (thousandths by name; missing means no
        limit); ports and reserved pools untouched (Mesos' `shrinkResources` for quota)."""
        cut = {n: min(v, max(0, limits[n])) for n, v in self._own_scalars() if n in limits}
        if not cut:
            return self
        amounts = dict(self._own_scalars()) | cut
        return Resources(
            amounts["cpus"],
            amounts["mem"],
            amounts["disk"],
            amounts["gpus"],
            self.ports,
            _custom({n: v for n, v in amounts.items() if n not in SCALARS}),
            self.reserved,
        )

    def _own_scalars(self) -> list[tuple[str, int]]:
        """The unreserved pool's scalars, custom ones included."""
        own = [("cpus", self.cpus_m), ("mem", self.mem_m), ("disk", self.disk_m)]
        return [*own, ("gpus", self.gpus_m), *self.custom]

    def __str__(self) -> str:
        parts = _text(self, "")
        for role, pool in self.reserved:
            parts += _text(pool, f"({role})")
        return ";".join(parts)

    @classmethod
    def parse(cls, text: str) -> Resources:
        """The agent flag syntax: `cpus:4;mem:8192;disk:10000;ports:[31000-32000,33000-33010]`,
        `name(role):value` reserving for a role (Mesos' `Resources::parse` text format)."""
        pools: dict[str, list[str]] = {}
        for item in filter(None, (p.strip() for p in text.split(";"))):
            name, sep, value = item.partition(":")
            name = name.strip()
            if not sep:
                raise ResourceError(f"{item!r}: expected name:value")
            role = UNRESERVED
            m = _RESERVED_NAME.fullmatch(name)
            if m is not None:
                name, role = m.group(1).strip(), m.group(2).strip()
                error = role_error(role)
                if error is not None:
                    raise ResourceError(f"{item!r}: {error}")
            pools.setdefault(role, []).append(f"{name}:{value}")
        out = cls._parse_pool(pools.pop(UNRESERVED, []))
        for role, items in sorted(pools.items()):
            out = out + cls._parse_pool(items).reserve(role)
        return out

    @classmethod
    def _parse_pool(cls, items: list[str]) -> Resources:
        values: dict[str, float] = {}
        custom: dict[str, float] = {}
        ports: list[Range] = []
        for item in items:
            name, _, value = item.partition(":")
            if not _NAME.fullmatch(name):
                raise ResourceError(
                    f"invalid resource name {name!r}: letters, digits and _ . - / only"
                )
            if name == "ports":
                ports += _parse_ranges(value)
                continue
            try:
                amount = float(value)
            except ValueError:
                raise ResourceError(
                    f"{name}: {value!r} is not a number (only ports may be ranges)"
                ) from None
            if name in SCALARS:
                values[name] = amount
            else:
                custom[name] = custom.get(name, 0.0) + amount
        return cls.of(**values, ports=ports, custom=custom)

    def to_mesos(self) -> list[dict[str, Any]]:
        """v1 Resource messages; reserved ones with `reservations` and the legacy `role`."""
        out = self._pool_to_mesos(UNRESERVED)
        for role, pool in self.reserved:
            out += pool._pool_to_mesos(role)
        return out

    def _pool_to_mesos(self, role: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"name": n, "type": "SCALAR", "scalar": {"value": v / 1000}, "role": role}
            for n, v in self._own_scalars()
            if v
        ]
        if self.ports:
            rs = [{"begin": b, "end": e} for b, e in self.ports]
            out.append({"name": "ports", "type": "RANGES", "ranges": {"range": rs}, "role": role})
        if role != UNRESERVED:
            for r in out:
                r["reservations"] = [{"type": "STATIC", "role": role}]
        return out

    @classmethod
    def from_mesos(cls, resources: Iterable[dict[str, Any]]) -> Resources:
        """Sum a list of v1 Resource messages: the standard ones, ports and any other SCALAR
        (custom); other RANGES or SETs are ignored, as offers may carry more. A reserved one
        (`reservations`, or a `role` other than `*`) goes to its role's pool."""
        by_role: dict[str, list[dict[str, Any]]] = {}
        for r in resources:
            by_role.setdefault(_reservation_role(r), []).append(r)
        out = cls._pool_from_mesos(by_role.pop(UNRESERVED, []))
        for role, pool in sorted(by_role.items()):
            out = out + cls._pool_from_mesos(pool).reserve(role)
        return out

    @classmethod
    def _pool_from_mesos(cls, resources: list[dict[str, Any]]) -> Resources:
        values = dict.fromkeys(SCALARS, 0.0)
        custom: dict[str, float] = {}
        ports: list[Range] = []
        try:
            for r in resources:
                if r["name"] in SCALARS:
                    values[r["name"]] += float(r["scalar"]["value"])
                elif r["name"] == "ports":
                    ports += [(int(x["begin"]), int(x["end"])) for x in r["ranges"]["range"]]
                elif r.get("type", "SCALAR") == "SCALAR" and isinstance(r["name"], str):
                    name = r["name"]
                    custom[name] = custom.get(name, 0.0) + float(r["scalar"]["value"])
        except (KeyError, TypeError, ValueError) as e:
            raise ResourceError(f"malformed resource: {e!r}") from None
        return cls.of(**values, ports=ports, custom=custom)


_EMPTY = Resources()


def _custom(amounts: Mapping[str, int]) -> Custom:
    return tuple(sorted((n, v) for n, v in amounts.items() if v))


def _text(r: Resources, role: str) -> list[str]:
    parts = [f"{n}{role}:{v / 1000:g}" for n, v in r._own_scalars() if v]
    if r.ports:
        parts.append(f"ports{role}:[" + ",".join(f"{b}-{e}" for b, e in r.ports) + "]")
    return parts


def _reservation_role(r: Any) -> str:
    """The role a Resource is reserved for (`*`: unreserved). Only STATIC reservations exist
    in mesoslite (no RESERVE operation); a DYNAMIC one is refused."""
    if not isinstance(r, dict):
        raise ResourceError(f"malformed resource: {r!r}")
    reservations = r.get("reservations")
    if reservations:
        if not isinstance(reservations, list) or not all(
            isinstance(x, dict) and isinstance(x.get("role"), str) for x in reservations
        ):
            raise ResourceError(f"{r.get('name')}: 'reservations' must be a list of {{type, role}}")
        last = reservations[-1]
        if last.get("type", "STATIC") != "STATIC":
            raise ResourceError(
                f"{r.get('name')}: {last.get('type')} reservations are not supported by mesoslite"
                " (static reservations only)"
            )
        return str(last["role"])
    role = r.get("role", UNRESERVED)
    return role if isinstance(role, str) and role else UNRESERVED


def _parse_ranges(text: str) -> list[Range]:
    m = re.fullmatch(r"\s*\[([0-9,\-\s]*)\]\s*", text)
    if not m:
        raise ResourceError(f"ports: {text!r} is not of the form [31000-32000,...]")
    out = []
    for part in filter(None, (p.strip() for p in m.group(1).split(","))):
        begin, _, end = part.partition("-")
        if not begin.isdigit() or not end.isdigit():
            raise ResourceError(f"ports: {part!r} is not a range begin-end")
        out.append((int(begin), int(end)))
    return out


Attributes = tuple[tuple[str, str], ...]


def parse_attributes(text: str) -> Attributes:
    """The agent flag syntax `zone:a;rack:r1`, as sorted (name, text value) pairs."""
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ResourceError(f"attribute {item!r}: expected name:value")
        pairs[name.strip()] = value.strip()
    return tuple(sorted(pairs.items()))


def attribute_to_mesos(name: str, value: str) -> dict[str, Any]:
    """One Attribute, typed from its text as Mesos' agent types `--attributes` values."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None and math.isfinite(number):
        return {"name": name, "type": "SCALAR", "scalar": {"value": number}}
    if value.startswith("[") and value.endswith("]"):
        with contextlib.suppress(ResourceError):
            ranges = [{"begin": b, "end": e} for b, e in _parse_ranges(value)]
            return {"name": name, "type": "RANGES", "ranges": {"range": ranges}}
    if value.startswith("{") and value.endswith("}"):
        items = [i.strip() for i in value[1:-1].split(",") if i.strip()]
        return {"name": name, "type": "SET", "set": {"item": items}}
    return {"name": name, "type": "TEXT", "text": {"value": value}}


def attributes_to_mesos(attributes: Attributes) -> list[dict[str, Any]]:
    return [attribute_to_mesos(n, v) for n, v in attributes]


def attributes_from_mesos(attributes: Iterable[dict[str, Any]]) -> Attributes:
    out = {}
    for a in attributes:
        kind = a.get("type", "TEXT")
        if kind == "TEXT":
            out[a["name"]] = str(a["text"]["value"])
        elif kind == "SCALAR":
            out[a["name"]] = f"{a['scalar']['value']:g}"
        elif kind == "RANGES":  # the text Mesos prints, which constraints compare
            ranges = a["ranges"].get("range") or []
            out[a["name"]] = "[" + ",".join(f"{r['begin']}-{r['end']}" for r in ranges) + "]"
        else:
            out[a["name"]] = "{" + ",".join(a["set"].get("item") or []) + "}"
    return tuple(sorted(out.items()))

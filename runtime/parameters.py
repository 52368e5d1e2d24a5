"""Typed job parameters: definitions with defaults and validation, and their resolution.

A job declares its parameters (``IntParameter("rate", default=100)``, ...); the values given
at submission arrive as strings (Mantis' job parameters are name/value string pairs) and
``resolve_parameters`` turns them into typed values, or raises ``ParameterError`` naming the
parameter. Names starting with ``mantis.`` are system parameters (Mantis passes its own, e.g.
``mantis.sla.*``); they are let through as strings unless the job declares them.

A ``validator`` returns None (or True) when a value is fine, and False or a message when it is
not; it may also raise ValueError with a message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

SYSTEM_PREFIX = "mantis."
STAGE_CONCURRENCY = "mantis.stageConcurrency"
"""Mantis' system parameter: input pipelines per worker for every stage of the job, over each
stage's ``StageConfig.concurrency``; -1 (the default) keeps the stage's own."""

Validator = Callable[[T], "bool | str | None"]


class ParameterError(ValueError):
    """A parameter value (or definition) is wrong; ``name`` says which parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"parameter {name!r}: {message}")
        self.name = name
        self.message = message


_NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class Parameter(Generic[T]):
    """One job parameter: its name, type, default, whether it must be given, and a check."""

    name: str
    default: T | None = None
    required: bool = False
    description: str = ""
    validator: Validator[T] | None = field(default=None, compare=False)

    type_name = "value"

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ParameterError(str(self.name), "a parameter needs a non-empty name")
        if self.required and self.default is not None:
            raise ParameterError(self.name, "a required parameter cannot have a default")
        if self.default is not None:
            self.check(self.coerce(self.default))

    def parse(self, raw: str) -> T:
        """The typed value of a string; ParameterError if it is not one."""
        raise NotImplementedError

    def coerce(self, value: object) -> T:
        """A given value: strings are parsed, values of the right type are taken as they are."""
        if isinstance(value, str):
            return self.parse(value)
        return self._accept(value)

    def _accept(self, value: object) -> T:
        raise ParameterError(
            self.name, f"expected {self.type_name}, got {type(value).__name__} {value!r}"
        )

    def check(self, value: T) -> T:
        """Run the validator; ParameterError with its message if the value is rejected."""
        if self.validator is None:
            return value
        try:
            verdict = self.validator(value)
        except (ValueError, TypeError) as e:
            raise ParameterError(self.name, f"invalid value {value!r}: {e}") from e
        if verdict is False:
            raise ParameterError(self.name, f"invalid value {value!r}")
        if isinstance(verdict, str):
            raise ParameterError(self.name, f"invalid value {value!r}: {verdict}")
        return value

    def resolve(self, raw: object | None) -> T | None:
        """The value to use given `raw` (None: not given)."""
        if raw is None:
            if self.required:
                raise ParameterError(self.name, "is required but was not given")
            return self.default
        return self.check(self.coerce(raw))

    def _bad(self, raw: str) -> ParameterError:
        return ParameterError(self.name, f"expected {self.type_name}, got {raw!r}")


_N = TypeVar("_N", int, float)


def _within(name: str, v: _N, minimum: _N | None, maximum: _N | None) -> _N:
    if minimum is not None and v < minimum:
        raise ParameterError(name, f"{v} is below the minimum {minimum}")
    if maximum is not None and v > maximum:
        raise ParameterError(name, f"{v} is above the maximum {maximum}")
    return v


@dataclass(frozen=True)
class IntParameter(Parameter[int]):
    """An integer, optionally within [minimum, maximum]."""

    minimum: int | None = None
    maximum: int | None = None
    type_name = "an integer"

    def parse(self, raw: str) -> int:
        try:
            v = int(raw.strip())
        except ValueError:
            raise self._bad(raw) from None
        return self._range(v)

    def _accept(self, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return self._range(value)
        return super()._accept(value)

    def _range(self, v: int) -> int:
        return _within(self.name, v, self.minimum, self.maximum)


@dataclass(frozen=True)
class FloatParameter(Parameter[float]):
    """A finite number, optionally within [minimum, maximum]."""

    minimum: float | None = None
    maximum: float | None = None
    type_name = "a number"

    def parse(self, raw: str) -> float:
        try:
            v = float(raw.strip())
        except ValueError:
            raise self._bad(raw) from None
        return self._range(v)

    def _accept(self, value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._range(float(value))
        return super()._accept(value)

    def _range(self, v: float) -> float:
        if not math.isfinite(v):
            raise ParameterError(self.name, f"expected a finite number, got {v}")
        return _within(self.name, v, self.minimum, self.maximum)


@dataclass(frozen=True)
class StringParameter(Parameter[str]):
    """A string (taken as given)."""

    type_name = "a string"

    def parse(self, raw: str) -> str:
        return raw


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class BoolParameter(Parameter[bool]):
    """true/false (also 1/0, yes/no, on/off; any case)."""

    type_name = "true or false"

    def parse(self, raw: str) -> bool:
        s = raw.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise self._bad(raw)

    def _accept(self, value: object) -> bool:
        if isinstance(value, bool):
            return value
        return super()._accept(value)


@dataclass(frozen=True)
class EnumParameter(Parameter[str]):
    """One of a fixed set of strings."""

    choices: tuple[str, ...] = ()
    type_name = "one of the choices"

    def __post_init__(self) -> None:
        if not self.choices:
            raise ParameterError(self.name, "an EnumParameter needs choices")
        object.__setattr__(self, "choices", tuple(self.choices))
        super().__post_init__()

    def parse(self, raw: str) -> str:
        if raw not in self.choices:
            raise ParameterError(
                self.name, f"expected one of {', '.join(self.choices)}; got {raw!r}"
            )
        return raw


def check_definitions(definitions: Iterable[Parameter[Any]]) -> tuple[Parameter[Any], ...]:
    """The definitions as a tuple; ParameterError on a duplicate name or a non-parameter."""
    seen: set[str] = set()
    out: list[Parameter[Any]] = []
    for d in definitions:
        if not isinstance(d, Parameter):
            raise ParameterError(str(d), f"is a {type(d).__name__}, not a Parameter")
        if d.name in seen:
            raise ParameterError(d.name, "is defined twice")
        seen.add(d.name)
        out.append(d)
    return tuple(out)


def resolve_parameters(
    definitions: Iterable[Parameter[Any]],
    given: Mapping[str, object],
    *,
    allow_unknown: bool = False,
) -> dict[str, object]:
    """Typed values for every defined parameter (defaults filled in), from `given`.

    Raises ParameterError naming the first offending parameter (in definition order): a
    required one missing, a value of the wrong type or rejected by its validator, or a name
    that is not defined (unless `allow_unknown`, or a ``mantis.`` system parameter).
    """
    defs = check_definitions(definitions)
    names = {d.name for d in defs}
    for name in sorted(given):
        if name not in names and not allow_unknown and not name.startswith(SYSTEM_PREFIX):
            known = ", ".join(sorted(names)) or "none"
            raise ParameterError(name, f"is not a parameter of this job (known: {known})")
    out: dict[str, object] = {}
    for d in defs:
        out[d.name] = d.resolve(given.get(d.name))
    for name in sorted(given):
        if name not in names:
            out[name] = given[name]
    return out


def stage_concurrency(values: Mapping[str, object], configured: int) -> int:
    """A stage's concurrency: ``mantis.stageConcurrency`` if given and not -1, else
    `configured`. ParameterError unless it is -1 or an integer >= 1."""
    given = values.get(STAGE_CONCURRENCY)
    if given is None:
        return configured
    try:
        n = int(str(given).strip())
    except ValueError:
        raise ParameterError(STAGE_CONCURRENCY, f"must be an integer, got {given!r}") from None
    if n == -1:
        return configured
    if n < 1:
        raise ParameterError(STAGE_CONCURRENCY, f"must be -1 or >= 1, got {n}")
    return n

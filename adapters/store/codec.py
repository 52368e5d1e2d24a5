"""Events to bytes and back: tagged JSON (`{"type": "JobAccepted", ...}`) through orjson.

The form follows the dataclass fields, read once per type from their type hints: nested frozen
dataclasses become objects, enums their values, tuples arrays. Floats stay JSON numbers except
the non-finite ones (a user can set a worker timeout of "inf"), which JSON cannot hold: they
become the strings "inf", "-inf", "nan"; ints beyond orjson's 64 bits (a runtime limit of
10**30 is valid) become decimal strings, on a slower path taken only when orjson refuses the
fast one. Decoding builds values without running their
`__post_init__`: the log is trusted, and what was validated (and normalised) when the event
was made must come back as it was, even if a later version validates differently. A missing
field takes its default, so fields added with a default keep old logs readable; an unknown
field or type is refused, since dropping it would lose data.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from enum import Enum
from typing import Any

import orjson

from core.events import EVENT_TYPES, Event

PAYLOAD_PREFIX = b'{"type":"'  # how every encoded event starts
Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


class CodecError(ValueError):
    """Bytes that do not decode to an event, or a value the codec cannot encode."""


def encode(event: Event) -> bytes:
    kind = type(event)
    if kind not in _EVENT_ENCODERS:
        raise CodecError(f"not an event type: {kind.__name__}")
    try:
        return orjson.dumps(_EVENT_ENCODERS[kind](event))
    except TypeError:
        pass
    try:
        return orjson.dumps(_WIDE_ENCODERS[kind](event))
    except (TypeError, ValueError) as e:
        raise CodecError(f"{kind.__name__} cannot be encoded: {e}") from None


def decode(payload: bytes | memoryview) -> Event:
    try:
        data = orjson.loads(payload)
        event: Event = _EVENT_DECODERS[data["type"]](data)
    except CodecError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise CodecError(f"not an encoded event: {e!r}") from None
    return event


def _float_out(value: Any) -> Any:
    return repr(value) if type(value) is float and not math.isfinite(value) else value


def _float_in(value: Any) -> Any:
    return float(value) if type(value) is str and value in _NON_FINITE else value


_NON_FINITE = frozenset({"inf", "-inf", "nan"})
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes
_DIGITS = re.compile(r"-?[0-9]+")


def _int_out(value: Any) -> Any:
    return str(value) if type(value) is int and not _INT_MIN <= value <= _INT_MAX else value


def _int_in(value: Any) -> Any:
    return int(value) if type(value) is str and _DIGITS.fullmatch(value) else value


def _same(value: Any) -> Any:
    return value


def _holds(hint: Any, walked: frozenset[type]) -> bool:
    """Whether values of this type can hold a value of a `walked` type."""
    if hint in walked:
        return True
    if dataclasses.is_dataclass(hint):
        return any(_holds(h, walked) for h in typing.get_type_hints(hint).values())
    return any(_holds(a, walked) for a in typing.get_args(hint) if a is not Ellipsis)


def _optional_arg(hint: Any) -> Any:
    """T for `T | None`, else None."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
        raise TypeError(f"unsupported union {hint}: only T | None")
    return None


_FAST = frozenset({float})  # orjson writes the rest itself: str, int, bool, None, enums, ...
_WIDE = frozenset({float, int})
_OUT: dict[type, Encoder] = {float: _float_out, int: _int_out}


def _encoder(hint: Any, walked: frozenset[type]) -> Encoder:
    if not _holds(hint, walked):
        return _same
    if hint in walked:
        return _OUT[hint]
    inner = _optional_arg(hint)
    if inner is not None:
        enc = _encoder(inner, walked)
        return lambda v: None if v is None else enc(v)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported tuple {hint}: only tuple[T, ...]")
        enc = _encoder(args[0], walked)
        return lambda v: [enc(x) for x in v]
    if dataclasses.is_dataclass(hint):
        return _dataclass_encoder(hint, walked)
    raise TypeError(f"unsupported type {hint}")


def _dataclass_encoder(cls: Any, walked: frozenset[type], tag: str | None = None) -> Encoder:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _encoder(hints[f.name], walked)) for f in dataclasses.fields(cls)]
    head = {} if tag is None else {"type": tag}  # the tag first, for people reading the log

    def encode_fields(value: Any) -> dict[str, Any]:
        return {**head, **{name: enc(getattr(value, name)) for name, enc in fields}}

    return encode_fields


def _decoder(hint: Any) -> Decoder:
    """Lenient by design: whatever `encode` wrote must decode, even a value of the wrong type."""
    if hint is float:
        return _float_in
    inner = _optional_arg(hint)
    if inner is not None:
        dec = _decoder(inner)
        return lambda v: None if v is None else dec(v)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported tuple {hint}: only tuple[T, ...]")
        dec = _decoder(args[0])
        if dec is _same:
            return lambda v: tuple(v) if type(v) is list else v
        return lambda v: tuple([dec(x) for x in v]) if type(v) is list else v
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum_decoder(hint)
    if dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint)
    if hint is int:
        return _int_in
    if hint in (str, bool):
        return _same
    raise TypeError(f"unsupported type {hint}")


def _enum_decoder(cls: type[Enum]) -> Decoder:
    members = {m.value: m for m in cls}
    return lambda v: members.get(v, v)


_MISSING = object()


def _dataclass_decoder(cls: Any, tagged: bool = False) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default: Callable[[], Any] | None = (lambda d: lambda: d)(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory
        else:
            default = None
        fields.append((f.name, _decoder(hints[f.name]), default))
    new = object.__new__
    setattr_ = object.__setattr__
    expected = len(fields) + tagged
    as_is = [name for name, dec, _ in fields if dec is _same]
    converted = [(name, dec) for name, dec, _ in fields if dec is not _same]

    def decode_fields(data: Any) -> Any:
        if type(data) is not dict:
            return data  # not written from a dataclass: keep it as it was
        if len(data) == expected:  # the usual case: every field there, nothing else
            value = new(cls)
            try:
                for name in as_is:
                    setattr_(value, name, data[name])
                for name, dec in converted:
                    setattr_(value, name, dec(data[name]))
                return value
            except KeyError:
                pass  # an unknown field instead of a known one: the careful path names it
        return careful(data)

    def careful(data: dict[str, Any]) -> Any:
        value = new(cls)
        found = 0
        for name, dec, default in fields:
            raw = data.get(name, _MISSING)
            if raw is _MISSING:
                if default is None:
                    raise CodecError(f"{cls.__name__}: missing field {name!r}")
                setattr_(value, name, default())
            else:
                found += 1
                setattr_(value, name, dec(raw))
        if found + tagged != len(data):
            unknown = sorted(set(data) - {n for n, _, _ in fields} - {"type"})
            raise CodecError(f"{cls.__name__}: unknown fields {unknown}")
        return value

    return decode_fields


_EVENT_ENCODERS: dict[type, Encoder] = {
    t: _dataclass_encoder(t, _FAST, tag=t.__name__) for t in EVENT_TYPES
}
_WIDE_ENCODERS: dict[type, Encoder] = {
    t: _dataclass_encoder(t, _WIDE, tag=t.__name__) for t in EVENT_TYPES
}
_EVENT_DECODERS: dict[str, Decoder] = {
    t.__name__: _dataclass_decoder(t, tagged=True) for t in EVENT_TYPES
}

"""The digest of a replayed state: sha256 of `ControlPlane.snapshot()` as sorted JSON.

Dataclasses become objects of their fields, enums their values, tuples and lists arrays,
dict keys strings, non-finite floats strings: one stable text for a state, whatever order
Python keeps its dicts in. Shared by scripts/record_golden_logs.py and the golden test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from enum import Enum
from typing import Any

from core.control import ControlPlane
from core.events import Event


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def state_digest(events: list[Event]) -> str:
    """sha256 of the state that `events` replay to."""
    text = json.dumps(plain(ControlPlane.replay(events).snapshot()), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()

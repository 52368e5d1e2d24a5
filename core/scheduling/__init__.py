"""Fenzo-style offer matching: a pure, deterministic matcher of launch requests to offers.

`match(requests, offers, placements, now, config)` is the one-shot function; `Matcher` keeps
hosts between calls for large clusters. See matcher.py for how hosts are chosen.
"""

from core.scheduling.config import MatchConfig
from core.scheduling.constraints import (
    Constraint,
    ExclusiveHost,
    HostAttrValue,
    UniqueHost,
    ZoneBalance,
    resolve,
)
from core.scheduling.fitness import (
    CPU_BIN_PACKER,
    CPU_MEM_BIN_PACKER,
    CPU_MEM_NETWORK_BIN_PACKER,
    MEM_BIN_PACKER,
    NETWORK_BIN_PACKER,
    BinPacking,
    Fitness,
    MantisFitness,
)
from core.scheduling.matcher import DEFAULT_CONFIG, Matcher, match
from core.scheduling.offers import Assignment, MatchResult, Offer, Placement

__all__ = [
    "CPU_BIN_PACKER",
    "CPU_MEM_BIN_PACKER",
    "CPU_MEM_NETWORK_BIN_PACKER",
    "DEFAULT_CONFIG",
    "MEM_BIN_PACKER",
    "NETWORK_BIN_PACKER",
    "Assignment",
    "BinPacking",
    "Constraint",
    "ExclusiveHost",
    "Fitness",
    "HostAttrValue",
    "MantisFitness",
    "MatchConfig",
    "MatchResult",
    "Matcher",
    "Offer",
    "Placement",
    "UniqueHost",
    "ZoneBalance",
    "match",
    "resolve",
]

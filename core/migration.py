"""Moving workers off disabled and draining agents, at the pace of their job cluster.

Mantis' shapes and rules: a job cluster's `migrationConfig` is a WorkerMigrationConfig
(mantis-common io.mantisrx.runtime.WorkerMigrationConfig: `strategy` ONE_WORKER or
PERCENTAGE and a `configString`, by default PERCENTAGE `{"percentToMove":25,
"intervalMs":60000}`), and a job moves the workers it has on disabled agents from its
heartbeat check (JobActor.migrateDisabledVmWorkers), with the strategies of
io.mantisrx.server.master.agentdeploy: PercentageMigrationStrategy moves at most
`ceil(total * percentToMove / 100)` (at least one) per `intervalMs`, counting the job's
workers that are not running yet against that budget, so a job never has more than that
share of its workers away at once. ONE_WORKER here moves one worker and waits for its
replacement (and every other worker of the job) to be Started before the next: a job
loses at most one worker at a time. Mantis' ONE_WORKER moves one per master interval
instead; waiting for Started is the stricter reading of "one at a time".

The decision (`to_move`) is pure: the control plane asks it on every tick, per job with
workers on disabled agents, and carries it out as resubmissions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from core.errors import InvalidRequest

DEFAULT_PERCENT_TO_MOVE = 25
DEFAULT_INTERVAL_MS = 60_000
DEFAULT_CONFIG_STRING = '{"percentToMove":25,"intervalMs":60000}'
MAX_CONFIG_STRING = 1024


class MigrationStrategy(StrEnum):
    """Mantis' WorkerMigrationConfig.MigrationStrategyEnum."""

    ONE_WORKER = "ONE_WORKER"
    PERCENTAGE = "PERCENTAGE"


class AgentMode(StrEnum):
    """What the master does with an agent. ACTIVE: it is offered work. DISABLED (Mantis'
    disabled VM): its offers are declined and its workers moved off at their jobs' pace.
    DRAINING: the same, for maintenance: the agent is listed as DRAINED once no worker is
    left on it (Mesos' DrainState names)."""

    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    DRAINING = "DRAINING"


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast a job's workers move: `percent` None is ONE_WORKER."""

    percent: int | None
    interval_secs: float

    def budget(self, total: int) -> int:
        """How many of a job's `total` workers may be away (not Started) during a move."""
        if self.percent is None:
            return 1
        return max(1, math.ceil(total * self.percent / 100))


@dataclass(frozen=True, slots=True)
class WorkerMigrationConfig:
    """A job cluster's `migrationConfig`, checked when made (a 400 naming the field)."""

    strategy: MigrationStrategy = MigrationStrategy.PERCENTAGE
    config_string: str = DEFAULT_CONFIG_STRING

    def __post_init__(self) -> None:
        self.pace()  # refuses a configString that does not parse

    def pace(self) -> Pace:
        if self.strategy is MigrationStrategy.ONE_WORKER:
            return Pace(None, 0.0)  # Mantis ignores ONE_WORKER's configString
        return _percentage(self.config_string)

    @classmethod
    def from_json(cls, value: object, where: str) -> WorkerMigrationConfig:
        """`{"strategy": "PERCENTAGE", "configString": "{...}"}`; a missing strategy is
        ONE_WORKER, as Mantis' constructor makes it."""
        if not isinstance(value, dict):
            raise InvalidRequest(where, "must be a JSON object")
        raw = value.get("strategy")
        if raw is None:
            strategy = MigrationStrategy.ONE_WORKER
        elif isinstance(raw, str) and raw in MigrationStrategy.__members__:
            strategy = MigrationStrategy(raw)
        else:
            raise InvalidRequest(
                f"{where}.strategy", f"must be ONE_WORKER or PERCENTAGE, got {str(raw)[:100]!r}"
            )
        config = value.get("configString")
        if config is None:
            config = DEFAULT_CONFIG_STRING if strategy is MigrationStrategy.PERCENTAGE else ""
        if not isinstance(config, str):
            raise InvalidRequest(f"{where}.configString", "must be a string of JSON")
        try:
            return cls(strategy, config)
        except InvalidRequest as e:
            message = e.message.removeprefix(f"{e.field}: ")
            raise InvalidRequest(f"{where}.{e.field}", message) from None


def _percentage(config_string: str) -> Pace:
    """PercentageMigrationStrategy's configuration: `percentToMove` (1..100) and
    `intervalMs` (>= 0), Mantis' default 25 and 60000 when left out (Mantis' own examples
    send `"{}"`); numbers may come as strings, as Jackson reads them. Mantis falls back to
    10 % a minute on a string that does not parse: refused here instead."""
    where = "configString"
    if len(config_string) > MAX_CONFIG_STRING:
        raise InvalidRequest(where, f"must be at most {MAX_CONFIG_STRING} characters")
    try:
        parsed = json.loads(config_string)
    except ValueError:
        raise InvalidRequest(where, f"is not JSON: {config_string[:100]!r}") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest(where, 'must be a JSON object like {"percentToMove":25}')
    given = _whole(parsed.get("percentToMove"), f"{where}.percentToMove")
    interval = _whole(parsed.get("intervalMs"), f"{where}.intervalMs")
    percent = DEFAULT_PERCENT_TO_MOVE if given is None else given
    interval_ms = DEFAULT_INTERVAL_MS if interval is None else interval
    if not 1 <= percent <= 100:
        raise InvalidRequest(f"{where}.percentToMove", f"must be in [1, 100], got {percent}")
    if not 0 <= interval_ms <= 86_400_000:
        raise InvalidRequest(f"{where}.intervalMs", f"must be in [0, 86400000], got {interval_ms}")
    return Pace(percent, interval_ms / 1000)


def _whole(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidRequest(where, f"must be a whole number, got {str(value)[:100]!r}")


DEFAULT_MIGRATION = WorkerMigrationConfig()


def to_move(
    pace: Pace,
    on_disabled: Sequence[str],
    total: int,
    away: int,
    last_move_at: float | None,
    now: float,
) -> tuple[str, ...]:
    """Which of a job's workers on disabled agents (`on_disabled`, in the order to move them)
    move now. `total`: the job's workers; `away`: those not Started (moved ones waiting for
    their replacement included); `last_move_at`: the job's last move. After the move at most
    `pace.budget(total)` workers are away, and a PERCENTAGE move waits `interval_secs` since
    the last one."""
    if not on_disabled:
        return ()
    waiting = pace.percent is not None and last_move_at is not None
    if waiting and now < (last_move_at or 0.0) + pace.interval_secs:
        return ()
    room = pace.budget(total) - away
    return tuple(on_disabled[:room]) if room > 0 else ()

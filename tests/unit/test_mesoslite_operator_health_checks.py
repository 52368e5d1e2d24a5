"""mesoslite.health without processes: a HealthCheck's validation (Mesos' messages) and the
checker's reports for a scripted run of results (grace period, recovery, consecutive
failures), as src/checks/health_checker.cpp decides them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mesoslite import health


@pytest.mark.parametrize(
    ("check", "error"),
    [
        ({"type": "TCP", "tcp": {"port": 80}}, None),
        ({"type": "HTTP", "http": {"port": 80, "path": "/ok", "scheme": "https"}}, None),
        ({"type": "COMMAND", "command": {"value": "true"}, "delay_seconds": 0}, None),
        ({"tcp": {"port": 80}}, "HealthCheck must specify 'type'"),
        ({"type": "PING"}, "'PING' is not a valid health check type"),
        ({"type": "COMMAND"}, "Expecting 'command' to be set for COMMAND health check"),
        ({"type": "COMMAND", "command": {}}, "Command health check must contain 'shell command'"),
        ({"type": "HTTP"}, "Expecting 'http' to be set for HTTP health check"),
        (
            {"type": "HTTP", "http": {"port": 80, "scheme": "ftp"}},
            "Unsupported HTTP health check scheme: 'ftp'",
        ),
        (
            {"type": "HTTP", "http": {"port": 80, "path": "ok"}},
            "The path 'ok' of HTTP health check must start with '/'",
        ),
        ({"type": "TCP", "tcp": {}}, "Expecting 'tcp.port' to be a port number"),
        (
            {"type": "TCP", "tcp": {"port": 80}, "interval_seconds": -1},
            "Expecting 'interval_seconds' to be non-negative",
        ),
    ],
)
def test_health_checks_are_validated_with_mesos_messages(
    check: dict[str, Any], error: str | None
) -> None:
    assert health.problem(check) == error


class Exhausted(Exception):
    """The checker probed once more than the script has answers for."""


async def scripted(results: list[bool], **check: Any) -> tuple[list[tuple[bool, bool]], bool]:
    """The reports of a checker whose probes answer `results` in turn, and whether it went on
    probing after them (rather than stopping to have the task killed)."""
    spec = health.parse(
        {"type": "TCP", "tcp": {"port": 1}, "delay_seconds": 0, "interval_seconds": 0, **check}
    )
    answers = iter(results)
    reports: list[tuple[bool, bool]] = []

    async def probe() -> bool:
        try:
            return next(answers)
        except StopIteration:
            raise Exhausted from None

    def report(healthy: bool, kill: bool) -> None:
        reports.append((healthy, kill))

    try:
        await health.run_checks(spec, probe, report, time.monotonic())
    except Exhausted:
        return reports, True
    return reports, False


async def test_failures_in_the_grace_period_are_ignored_until_a_first_success() -> None:
    reports, went_on = await scripted(
        [False, False, True, True, False, True], grace_period_seconds=60
    )
    assert reports == [(True, False), (False, False), (True, False)] and went_on


async def test_consecutive_failures_past_the_grace_period_kill_the_task() -> None:
    reports, went_on = await scripted(
        [True, False, True, False, False, False], grace_period_seconds=0, consecutive_failures=3
    )
    assert not went_on
    assert reports == [
        (True, False),
        (False, False),
        (True, False),
        (False, False),
        (False, False),
        (False, True),
    ]

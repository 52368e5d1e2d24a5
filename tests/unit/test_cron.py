"""Unit tests for core.cron: Quartz cron parsing and next-fire-time computation."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from core.cron import CronError, CronSpec, next_fire_after, parse_cron


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def nxt(expr: str, now: float) -> float | None:
    return next_fire_after(parse_cron(expr), now)


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        # every 5 minutes; strictly after `now`, fractional `now` allowed
        ("0 0/5 * * * ?", ts(2025, 1, 1), ts(2025, 1, 1, 0, 5)),
        ("0 0/5 * * * ?", ts(2025, 1, 1, 0, 4, 59) + 0.5, ts(2025, 1, 1, 0, 5)),
        ("0 0/5 * * * ?", ts(2025, 1, 1, 0, 5), ts(2025, 1, 1, 0, 10)),
        ("0 */5 * * * ?", ts(2025, 12, 31, 23, 57), ts(2026, 1, 1)),
        ("*/15 * * * * ?", ts(2025, 1, 1, 0, 0, 50), ts(2025, 1, 1, 0, 1, 0)),
        ("10-20/5 * * * * ?", ts(2025, 1, 1, 0, 0, 16), ts(2025, 1, 1, 0, 0, 20)),
        ("10-20/5 * * * * ?", ts(2025, 1, 1, 0, 0, 20), ts(2025, 1, 1, 0, 1, 10)),
        # 10:15 on weekdays (2025-01-01 is a Wednesday, 01-04 a Saturday)
        ("0 15 10 ? * MON-FRI", ts(2025, 1, 1, 9), ts(2025, 1, 1, 10, 15)),
        ("0 15 10 ? * MON-FRI", ts(2025, 1, 4), ts(2025, 1, 6, 10, 15)),
        ("0 15 10 ? * MON-FRI", ts(2025, 1, 3, 10, 15), ts(2025, 1, 6, 10, 15)),
        ("0 15 10 ? * 2-6", ts(2025, 1, 4), ts(2025, 1, 6, 10, 15)),
        # last day of the month, leap and common Februaries
        ("0 0 0 L * ?", ts(2028, 2, 1), ts(2028, 2, 29)),
        ("0 0 0 L * ?", ts(2027, 2, 1), ts(2027, 2, 28)),
        ("0 0 0 L * ?", ts(2028, 2, 29), ts(2028, 3, 31)),
        ("0 0 0 L 2 ?", ts(2025, 3, 1), ts(2026, 2, 28)),
        ("0 0 12 L-2 * ?", ts(2028, 2, 1), ts(2028, 2, 27, 12)),
        ("0 0 0 L,1 * ?", ts(2025, 1, 1), ts(2025, 1, 31)),
        ("0 0 0 L-30 * ?", ts(2025, 1, 1), ts(2025, 3, 1)),  # only 31-day months have one
        ("0 0 0 L-30 * ?", ts(2025, 3, 1), ts(2025, 5, 1)),
        # last Friday of the month
        ("0 0 0 ? * 6L", ts(2025, 1, 1), ts(2025, 1, 31)),
        ("0 0 0 ? * FRIL", ts(2025, 2, 1), ts(2025, 2, 28)),
        # first Monday; fifth Thursday (Feb-Apr 2025 have none)
        ("0 0 0 ? * 2#1", ts(2025, 1, 1), ts(2025, 1, 6)),
        ("0 0 0 ? * MON#1", ts(2025, 1, 6), ts(2025, 2, 3)),
        ("0 0 0 ? * 5#5", ts(2025, 1, 1), ts(2025, 1, 30)),
        ("0 0 0 ? * 5#5", ts(2025, 1, 31), ts(2025, 5, 29)),
        # nearest weekday: 2025-03-15 is a Saturday, 2025-06-15 a Sunday
        ("0 0 0 15W * ?", ts(2025, 3, 1), ts(2025, 3, 14)),
        ("0 0 0 15W * ?", ts(2025, 6, 1), ts(2025, 6, 16)),
        ("0 0 0 15W * ?", ts(2025, 1, 1), ts(2025, 1, 15)),
        # W never crosses into another month: Sat the 1st -> Mon the 3rd, Sun the 30th/31st -> Fri
        ("0 0 0 1W * ?", ts(2025, 1, 31), ts(2025, 2, 3)),
        ("0 0 0 1W * ?", ts(2025, 2, 3), ts(2025, 3, 3)),
        ("0 0 0 30W * ?", ts(2025, 11, 1), ts(2025, 11, 28)),
        ("0 0 0 31W * ?", ts(2025, 4, 1), ts(2025, 5, 30)),  # April has no 31st: skipped
        ("0 0 0 LW * ?", ts(2025, 8, 1), ts(2025, 8, 29)),
        ("0 0 0 LW * ?", ts(2025, 1, 1), ts(2025, 1, 31)),
        # year field
        ("0 0 12 1/2 * ? 2027", ts(2025, 6, 1), ts(2027, 1, 1, 12)),
        ("0 0 12 1/2 * ? 2027", ts(2027, 1, 1, 12), ts(2027, 1, 3, 12)),
        ("0 0 0 1 1 ? 2030,2032", ts(2030, 1, 1), ts(2032, 1, 1)),
        ("0 0 0 1 1 ? 2030-2040/5", ts(2031, 1, 1), ts(2035, 1, 1)),
        # month and day names, case-insensitive
        ("0 30 9 ? jan,JUL sun", ts(2025, 2, 1), ts(2025, 7, 6, 9, 30)),
        ("0 0 0 1 Feb-Mar ?", ts(2025, 2, 1), ts(2025, 3, 1)),
        ("0 0 0 ? * L", ts(2025, 1, 1), ts(2025, 1, 4)),  # lone L in day-of-week is SAT
        # '?' or '*' on either day field
        ("0 0 12 ? * *", ts(2025, 1, 1, 12), ts(2025, 1, 2, 12)),
        ("0 0 12 * * ?", ts(2025, 1, 1, 12), ts(2025, 1, 2, 12)),
        ("0 0 12 * * *", ts(2025, 1, 1, 12), ts(2025, 1, 2, 12)),
        ("0 0 12 * * SAT", ts(2025, 1, 1), ts(2025, 1, 4, 12)),
        # ranges that wrap past the end of the field (Quartz allows this)
        ("0 0 22-1 * * ?", ts(2025, 1, 1, 2), ts(2025, 1, 1, 22)),
        ("0 0 0 ? * FRI-MON", ts(2025, 1, 7), ts(2025, 1, 10)),
        ("0 0 0 1 NOV-FEB ?", ts(2025, 3, 1), ts(2025, 11, 1)),
        # epoch boundaries
        ("0 0 0 1 1 ?", -1e12, 0.0),
        ("* * * * * ?", -0.5, 0.0),
        ("* * * * * ?", 10.5, 11.0),
    ],
)
def test_known_next_fire(expr: str, now: float, expected: float) -> None:
    assert nxt(expr, now) == expected


@pytest.mark.parametrize(
    ("expr", "now"),
    [
        ("0 0 0 1 1 ? 2020", ts(2025, 1, 1)),  # year list entirely in the past
        ("0 0 0 1 1 ? 2030", ts(2030, 1, 1)),  # its only fire time is not *after* now
        ("0 0 0 30 2 ?", ts(2025, 1, 1)),  # February never has a 30th
        ("0 0 0 31 4,6,9,11 ?", 0.0),
        ("* * * * * ?", ts(2199, 12, 31, 23, 59, 59)),  # past the last supported year
        ("* * * * * ?", 1e300),
        ("* * * * * ?", float("inf")),
    ],
)
def test_no_next_fire(expr: str, now: float) -> None:
    assert nxt(expr, now) is None


def test_last_supported_second() -> None:
    assert nxt("* * * * * ?", ts(2199, 12, 31, 23, 59, 58)) == ts(2199, 12, 31, 23, 59, 59)


def test_nan_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        nxt("* * * * * ?", float("nan"))


def test_result_is_whole_float_seconds() -> None:
    result = nxt("0 0/5 * * * ?", ts(2025, 1, 1) + 0.25)
    assert isinstance(result, float)
    assert result == int(result)


def test_yearly_spec_is_fast() -> None:
    spec = parse_cron("0 0 0 1 1 ?")
    now = ts(2025, 6, 1)
    t0 = time.perf_counter()
    for _ in range(1000):
        next_fire_after(spec, now)
    assert (time.perf_counter() - t0) / 1000 < 1e-3


# ---------------------------------------------------------------- parsed form


def test_parsed_fields() -> None:
    spec = parse_cron("0 15 10 ? * MON-FRI")
    assert spec.seconds == (0,)
    assert spec.minutes == (15,)
    assert spec.hours == (10,)
    assert spec.days_of_month == tuple(range(1, 32))
    assert spec.months == tuple(range(1, 13))
    assert spec.days_of_week == (2, 3, 4, 5, 6)
    assert spec.years == tuple(range(1970, 2200))


def test_special_day_fields() -> None:
    assert parse_cron("0 0 0 L-3 * ?").last_day_offsets == (3,)
    assert parse_cron("0 0 0 15w * ?").nearest_weekdays == (15,)
    assert parse_cron("0 0 0 lw * ?").last_weekday
    assert parse_cron("0 0 0 ? * 6l").last_dows == (6,)
    assert parse_cron("0 0 0 ? * tue#3").nth_dows == ((3, 3),)
    assert parse_cron("0 0 0 ? * L").days_of_week == (7,)


def test_spec_is_hashable_and_compares_by_meaning() -> None:
    a = parse_cron("0 0/5 * * * ?")
    b = parse_cron("0  0-59/5  *  *  *  ?  *")
    assert a == b
    assert hash(a) == hash(b)
    assert a.expression == "0 0/5 * * * ?"
    assert isinstance(a, CronSpec)


def test_cron_error_is_value_error() -> None:
    assert issubclass(CronError, ValueError)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * * *", "needs 6 or 7 fields"),
        ("0 0 0 * * ? 2025 extra", "got 8"),
        ("", "got 0"),
        ("0 0 25 * * ?", "cron field 'hours': 25 is out of range 0-23"),
        ("60 * * * * ?", "cron field 'seconds': 60 is out of range 0-59"),
        ("0 0 0 32 * ?", "cron field 'day-of-month': 32 is out of range 1-31"),
        ("0 0 0 ? 13 *", "cron field 'month': 13 is out of range 1-12"),
        ("0 0 0 ? * 0", "cron field 'day-of-week': 0 is out of range 1-7"),
        ("0 0 0 * * ? 1969", "cron field 'year': 1969 is out of range 1970-2199"),
        ("0 0 0 * * ? 2200", "cron field 'year': 2200 is out of range 1970-2199"),
        ("0 0/0 * * * ?", "cron field 'minutes': invalid step '0' in '0/0'"),
        ("0 */x * * * ?", "cron field 'minutes': invalid step 'x'"),
        ("0 0/61 * * * ?", "cron field 'minutes': invalid step '61'"),
        ("0 0/ * * * ?", "cron field 'minutes': invalid step ''"),
        ("0 ? * * * ?", "cron field 'minutes': '?' must appear only in day-of-month"),
        ("0 0 0 1,? * ?", "cron field 'day-of-month': '?' must stand alone"),
        ("0 0 0 ? FOO *", "cron field 'month': unknown name 'FOO'"),
        ("0 0 0 ? * FUN", "cron field 'day-of-week': unknown name 'FUN'"),
        ("0 0 0 ? * MON-FUN", "cron field 'day-of-week': unknown name 'FUN'"),
        ("0 a * * * ?", "cron field 'minutes': invalid value 'a'"),
        ("0 -5 * * * ?", "cron field 'minutes': empty value"),
        ("0 1,,2 * * * ?", "cron field 'minutes': empty list item in '1,,2'"),
        ("0 0 0 ? * 2#6", "cron field 'day-of-week': occurrence after '#' 6 is out of range 1-5"),
        ("0 0 0 ? * 8#1", "cron field 'day-of-week': 8 is out of range 1-7"),
        ("0 0 0 L-31 * ?", "cron field 'day-of-month': offset after 'L-' 31 is out of range"),
        ("0 0 0 32W * ?", "cron field 'day-of-month': 32 is out of range 1-31"),
        ("0 0 0 W * ?", "cron field 'day-of-month': empty value"),
        ("0 0 0 ? * 9L", "cron field 'day-of-week': 9 is out of range 1-7"),
        ("0 0 0 * * ? 2030-2020", "cron field 'year': range '2030-2020' is reversed"),
        ("0 0 0 ? * ?", "'?' may be used in only one of day-of-month and day-of-week"),
        ("0 0 0 1 * MON", "cannot both be restricted"),
        ("0 0 0 L * 6L", "cannot both be restricted"),
    ],
)
def test_invalid_specs(expr: str, message: str) -> None:
    with pytest.raises(CronError) as excinfo:
        parse_cron(expr)
    assert message in str(excinfo.value)

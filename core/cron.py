"""Quartz-syntax cron expressions: parsing and next-fire-time search for job-cluster cron SLAs.

Pure: times are float epoch seconds (UTC) passed in by the caller; fire times are whole seconds.
Supported (Quartz semantics): ``sec min hour day-of-month month day-of-week [year]`` with
``*``, ``?``, values, ranges (which may wrap, e.g. ``22-2``, ``FRI-MON``), steps (``a/n``,
``*/n``, ``a-b/n``), lists, JAN-DEC and SUN-SAT names (1=SUN..7=SAT), ``L``, ``L-n``, ``nW``
and ``LW`` in day-of-month, and ``L`` (=SAT), ``nL`` and ``n#k`` in day-of-week.
"""

from __future__ import annotations

import calendar
import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

__all__ = ["MAX_YEAR", "MIN_YEAR", "CronError", "CronSpec", "next_fire_after", "parse_cron"]

MIN_YEAR, MAX_YEAR = 1970, 2199
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Nothing fires from here on; stopping early also keeps datetime clear of huge `now` values.
_END = calendar.timegm((MAX_YEAR + 1, 1, 1, 0, 0, 0))


class CronError(ValueError):
    """A cron expression that cannot be parsed."""


class _Field(NamedTuple):
    name: str
    lo: int
    hi: int
    names: Mapping[str, int] = {}


_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_SEC = _Field("seconds", 0, 59)
_MIN = _Field("minutes", 0, 59)
_HOUR = _Field("hours", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, {n: i for i, n in enumerate(_MONTH_NAMES, 1)})
_DOW = _Field("day-of-week", 1, 7, {n: i for i, n in enumerate(_DAY_NAMES, 1)})
_YEAR = _Field("year", MIN_YEAR, MAX_YEAR)


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression (build it with :func:`parse_cron`).

    A day fires when it satisfies both the day-of-month and the day-of-week parts; whichever
    of the two is ``?`` or ``*`` allows every day, so in practice only one of them restricts.
    """

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]  # plain day numbers 1-31
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]  # plain weekdays, 1=SUN..7=SAT
    years: tuple[int, ...]
    last_day_offsets: tuple[int, ...] = ()  # L is 0, L-3 is 3
    nearest_weekdays: tuple[int, ...] = ()  # 15W is 15
    last_weekday: bool = False  # LW
    last_dows: tuple[int, ...] = ()  # 6L: last Friday of the month
    nth_dows: tuple[tuple[int, int], ...] = ()  # 2#1 is (2, 1): first Monday of the month
    expression: str = field(default="", compare=False)


def _err(f: _Field, msg: str) -> CronError:
    return CronError(f"cron field '{f.name}': {msg}")


def _num(tok: str, f: _Field, what: str = "") -> int:
    t = tok.upper()
    if t in f.names:
        return f.names[t]
    if not (t.isascii() and t.isdigit()):
        if not t:
            raise _err(f, "empty value")
        if f.names and t.isalpha():
            raise _err(f, f"unknown name {tok!r} (expected {'/'.join(f.names)})")
        raise _err(f, f"invalid value {tok!r}")
    v = int(t)
    if not f.lo <= v <= f.hi:
        raise _err(f, f"{what}{v} is out of range {f.lo}-{f.hi}")
    return v


def _items(text: str, f: _Field) -> list[str]:
    if "?" in text:
        where = "stand alone" if f in (_DOM, _DOW) else "appear only in day-of-month/day-of-week"
        raise _err(f, f"'?' must {where}, got {text!r}")
    items = text.split(",")
    if "" in items:
        raise _err(f, f"empty list item in {text!r}")
    return items


def _plain(item: str, f: _Field) -> set[int]:
    """Values of one ``*``/value/range item with an optional ``/step``."""
    base, slash, step_txt = item.partition("/")
    size = f.hi - f.lo + 1
    step = 1
    if slash:
        if not (step_txt.isascii() and step_txt.isdigit() and 1 <= int(step_txt) <= size):
            raise _err(f, f"invalid step {step_txt!r} in {item!r} (must be 1-{size})")
        step = int(step_txt)
    if base == "*":
        a, b = f.lo, f.hi
    elif "-" in base:
        a_txt, _, b_txt = base.partition("-")
        a, b = _num(a_txt, f), _num(b_txt, f)
        if b < a and f is _YEAR:
            raise _err(f, f"range {base!r} is reversed")
    else:
        a = _num(base, f)
        b = f.hi if slash else a  # Quartz: "5/15" means from 5 to the end, every 15
    # Ranges wrap past the end of the field, as Quartz allows ("22-2" hours, "FRI-MON").
    return {f.lo + (a - f.lo + k) % size for k in range(0, (b - a) % size + 1, step)}


def _values(text: str, f: _Field) -> tuple[int, ...]:
    return tuple(sorted(set[int]().union(*(_plain(item, f) for item in _items(text, f)))))


def parse_cron(spec: str) -> CronSpec:
    """Parse a 6- or 7-field Quartz cron expression; raise :class:`CronError` if invalid."""
    parts = spec.split()
    if len(parts) not in (6, 7):
        raise CronError(
            "cron expression needs 6 or 7 fields (seconds minutes hours day-of-month month "
            f"day-of-week [year]), got {len(parts)} in {spec!r}"
        )
    sec, mins, hours, dom, month, dow = parts[:6]
    year = parts[6] if len(parts) == 7 else "*"
    dom_any, dow_any = dom in ("?", "*"), dow in ("?", "*")
    if dom == "?" and dow == "?":
        raise CronError("cron: '?' may be used in only one of day-of-month and day-of-week")
    if not dom_any and not dow_any:
        raise CronError(
            f"cron: day-of-month {dom!r} and day-of-week {dow!r} cannot both be restricted "
            "(Quartz); use '?' in one of them"
        )
    days: set[int] = set(range(1, 32)) if dom_any else set()
    offsets: set[int] = set()
    nearest: set[int] = set()
    last_weekday = False
    for item in [] if dom_any else _items(dom, _DOM):
        u = item.upper()
        if u == "L":
            offsets.add(0)
        elif u == "LW":
            last_weekday = True
        elif u.startswith("L-"):
            offsets.add(_num(u[2:], _Field(_DOM.name, 1, 30), "offset after 'L-' "))
        elif u.endswith("W"):
            nearest.add(_num(u[:-1], _DOM))
        else:
            days |= _plain(item, _DOM)
    wdays: set[int] = set(range(1, 8)) if dow_any else set()
    last_dows: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in [] if dow_any else _items(dow, _DOW):
        u = item.upper()
        if "#" in u:
            d_txt, _, k_txt = u.partition("#")
            k = _num(k_txt, _Field(_DOW.name, 1, 5), "occurrence after '#' ")
            nth.add((_num(d_txt, _DOW), k))
        elif u == "L":  # Quartz: a lone L in day-of-week is the last day of the week, SAT
            wdays.add(7)
        elif u.endswith("L"):
            last_dows.add(_num(u[:-1], _DOW))
        else:
            wdays |= _plain(item, _DOW)
    return CronSpec(
        seconds=_values(sec, _SEC),
        minutes=_values(mins, _MIN),
        hours=_values(hours, _HOUR),
        days_of_month=tuple(sorted(days)),
        months=_values(month, _MONTH),
        days_of_week=tuple(sorted(wdays)),
        years=_values(year, _YEAR),
        last_day_offsets=tuple(sorted(offsets)),
        nearest_weekdays=tuple(sorted(nearest)),
        last_weekday=last_weekday,
        last_dows=tuple(sorted(last_dows)),
        nth_dows=tuple(sorted(nth)),
        expression=" ".join(parts),
    )


def _nearest_weekday(day: int, ndays: int, dow: int) -> int:
    """Quartz ``W``: the weekday nearest ``day`` without leaving the month."""
    if dow == 7:  # Saturday: Friday before, unless that is in the previous month
        return day - 1 if day > 1 else day + 2
    if dow == 1:  # Sunday: Monday after, unless that is in the next month
        return day + 1 if day < ndays else day - 2
    return day


def _days(spec: CronSpec, year: int, month: int) -> list[int]:
    """Days of the given month on which ``spec`` fires, ascending."""
    first, ndays = calendar.monthrange(year, month)

    def dow(d: int) -> int:  # calendar counts 0=MON; Quartz counts 1=SUN..7=SAT
        return (first + d) % 7 + 1

    dom = {d for d in spec.days_of_month if d <= ndays}
    dom.update(ndays - off for off in spec.last_day_offsets if ndays - off >= 1)
    # A W day beyond the month's end (31W in April) does not fire that month.
    targets = [d for d in spec.nearest_weekdays if d <= ndays] + [ndays] * spec.last_weekday
    dom.update(_nearest_weekday(d, ndays, dow(d)) for d in targets)
    wdays = set(spec.days_of_week)
    return [
        d
        for d in sorted(dom)
        if (w := dow(d)) in wdays
        or (w in spec.last_dows and d + 7 > ndays)
        or (w, (d + 6) // 7) in spec.nth_dows
    ]


def next_fire_after(spec: CronSpec, now: float) -> float | None:
    """First fire time strictly after ``now`` (epoch seconds, UTC), or None if there is none."""
    if math.isnan(now):
        raise ValueError("now must be a number, not NaN")
    start = 0 if now < 0 else math.floor(now) + 1 if now < _END else _END
    if start >= _END:
        return None
    dt = _EPOCH + timedelta(seconds=start)
    lower = (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)
    fields = (spec.years, spec.months, (), spec.hours, spec.minutes, spec.seconds)

    # Coarsest field first. While every value chosen so far equals `lower`'s, the next field is
    # bounded below by `lower`; after that its smallest value wins. Only a month's day set can be
    # empty, so backtracking is rare and shallow: never a second-by-second scan.
    def search(i: int, chosen: tuple[int, ...], tight: bool) -> tuple[int, ...] | None:
        if i == len(lower):
            return chosen
        values = _days(spec, chosen[0], chosen[1]) if i == 2 else fields[i]
        for v in values[bisect_left(values, lower[i] if tight else 0) :]:
            found = search(i + 1, (*chosen, v), tight and v == lower[i])
            if found is not None:
                return found
        return None

    found = search(0, (), True)
    return None if found is None else float(calendar.timegm(found))

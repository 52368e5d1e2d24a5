"""Property tests for core.cron against an independent, brute-force model of Quartz cron.

Specs are generated together with a model of what they mean (value sets per field, a day
predicate written directly from the Quartz definitions). The reference scans day by day and
then through the allowed hour/minute/second combinations, so it shares no search logic with
core.cron.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.cron import CronError, CronSpec, next_fire_after, parse_cron

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW_MAX = datetime(2150, 1, 1, tzinfo=UTC).timestamp()
HORIZON_DAYS = 1500  # the reference gives up after this many days

DayPred = Callable[[date], bool]
Item = tuple[str, set[int]]


@dataclass(frozen=True)
class Model:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    day_ok: DayPred  # day-of-month and day-of-week parts combined

    def matches(self, t: float) -> bool:
        dt = datetime.fromtimestamp(t, tz=UTC)
        return (
            dt.second in self.seconds
            and dt.minute in self.minutes
            and dt.hour in self.hours
            and self.date_ok(dt.date())
        )

    def date_ok(self, d: date) -> bool:
        return d.year in self.years and d.month in self.months and self.day_ok(d)


# ------------------------------------------------------------ Quartz day semantics, by definition


def days_in_month(d: date) -> int:
    nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (nxt - timedelta(days=1)).day


def quartz_dow(d: date) -> int:
    return d.isoweekday() % 7 + 1  # 1=SUN..7=SAT


def weekdays_of_month(d: date) -> list[int]:
    return [x for x in range(1, days_in_month(d) + 1) if d.replace(day=x).isoweekday() <= 5]


def nearest_weekday_is(n: int) -> DayPred:
    # A W target beyond the month's end does not fire (documented choice in core.cron).
    return lambda d: (
        n <= days_in_month(d) and d.day == min(weekdays_of_month(d), key=lambda x: abs(x - n))
    )


def last_weekday_is(d: date) -> bool:
    return d.day == max(weekdays_of_month(d))


def last_dow_is(w: int) -> DayPred:
    return lambda d: quartz_dow(d) == w and d.day + 7 > days_in_month(d)


def nth_dow_is(w: int, k: int) -> DayPred:
    return lambda d: quartz_dow(d) == w and (d.day - 1) // 7 + 1 == k


# ------------------------------------------------------------ spec + model generation


@st.composite
def value_token(draw: st.DrawFn, lo: int, hi: int, names: tuple[str, ...]) -> tuple[str, int]:
    v = draw(st.integers(lo, hi))
    as_name = draw(st.booleans())
    if names and as_name:
        name = names[v - lo]
        return draw(st.sampled_from([name, name.lower(), name.title()])), v
    return str(v), v


@st.composite
def plain_item(draw: st.DrawFn, lo: int, hi: int, names: tuple[str, ...] = ()) -> Item:
    kind = draw(st.sampled_from(["*", "value", "range", "start/step", "*/step", "range/step"]))
    step = draw(st.integers(1, hi - lo + 1))
    if kind == "*":
        return "*", set(range(lo, hi + 1))
    if kind == "*/step":
        return f"*/{step}", set(range(lo, hi + 1, step))
    a_txt, a = draw(value_token(lo, hi, names))
    if kind == "value":
        return a_txt, {a}
    if kind == "start/step":
        return f"{a_txt}/{step}", set(range(a, hi + 1, step))
    b_txt, b = draw(value_token(lo, hi, names))
    seq = list(range(a, b + 1)) if a <= b else [*range(a, hi + 1), *range(lo, b + 1)]
    if kind == "range":
        return f"{a_txt}-{b_txt}", set(seq)
    return f"{a_txt}-{b_txt}/{step}", set(seq[::step])


def join(items: list[Item]) -> Item:
    return ",".join(t for t, _ in items), set().union(*(s for _, s in items))


def plain_field(lo: int, hi: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[Item]:
    return st.lists(plain_item(lo, hi, names), min_size=1, max_size=3).map(join)


@st.composite
def dom_item(draw: st.DrawFn) -> tuple[str, DayPred]:
    kind = draw(st.sampled_from(["plain", "L", "L-k", "nW", "LW"]))
    if kind == "plain":
        text, days = draw(plain_item(1, 31))
        return text, lambda d: d.day in days
    if kind == "L":
        return draw(st.sampled_from(["L", "l"])), lambda d: d.day == days_in_month(d)
    if kind == "L-k":
        k = draw(st.one_of(st.integers(1, 30), st.sampled_from([27, 28, 29, 30])))
        return f"L-{k}", lambda d: d.day == days_in_month(d) - k
    if kind == "nW":
        n = draw(st.one_of(st.integers(1, 31), st.sampled_from([1, 2, 29, 30, 31])))
        return f"{n}W", nearest_weekday_is(n)
    return "LW", last_weekday_is


@st.composite
def dow_item(draw: st.DrawFn) -> tuple[str, DayPred]:
    kind = draw(st.sampled_from(["plain", "L", "nL", "n#k"]))
    if kind == "plain":
        text, wdays = draw(plain_item(1, 7, DAYS))
        return text, lambda d: quartz_dow(d) in wdays
    if kind == "L":
        return "L", lambda d: quartz_dow(d) == 7
    w_txt, w = draw(value_token(1, 7, DAYS))
    if kind == "nL":
        return f"{w_txt}L", last_dow_is(w)
    k = draw(st.integers(1, 5))
    return f"{w_txt}#{k}", nth_dow_is(w, k)


def any_of(items: list[tuple[str, DayPred]]) -> tuple[str, DayPred]:
    preds = [p for _, p in items]
    return ",".join(t for t, _ in items), lambda d: any(p(d) for p in preds)


def day_list(
    item: st.SearchStrategy[tuple[str, DayPred]],
) -> st.SearchStrategy[tuple[str, DayPred]]:
    return st.lists(item, min_size=1, max_size=3).map(any_of)


@st.composite
def year_field(draw: st.DrawFn, now_year: int) -> tuple[str | None, set[int]]:
    everything = set(range(1970, 2200))
    kind = draw(st.sampled_from(["absent", "*", "near"]))
    if kind != "near":
        return (None if kind == "absent" else "*"), everything
    lo, hi = max(1970, now_year - 1), min(2199, now_year + 3)
    items: list[Item] = []
    for _ in range(draw(st.integers(1, 2))):
        a = draw(st.integers(lo, hi))
        b = draw(st.integers(a, hi))
        step = draw(st.integers(1, 3))
        items.append(
            draw(
                st.sampled_from(
                    [
                        (str(a), {a}),
                        (f"{a}-{b}", set(range(a, b + 1))),
                        (f"{a}/{step}", set(range(a, 2200, step))),
                    ]
                )
            )
        )
    return join(items)


@st.composite
def cron_cases(draw: st.DrawFn) -> tuple[str, Model, float]:
    now = draw(st.one_of(st.integers(0, int(NOW_MAX)).map(float), st.floats(0, NOW_MAX)))
    sec_txt, secs = draw(plain_field(0, 59))
    min_txt, mins = draw(plain_field(0, 59))
    hour_txt, hours = draw(plain_field(0, 23))
    mon_txt, months = draw(plain_field(1, 12, MONTHS))
    restricted = draw(st.sampled_from(["dom", "dow", "neither"]))
    dom_txt, dom_ok = draw(day_list(dom_item())) if restricted == "dom" else ("?", None)
    dow_txt, dow_ok = draw(day_list(dow_item())) if restricted == "dow" else ("?", None)
    if restricted == "neither":
        dom_txt, dow_txt = draw(st.sampled_from([("?", "*"), ("*", "?"), ("*", "*")]))
    elif draw(st.booleans()):  # '*' instead of '?' on the unrestricted side is accepted too
        dom_txt, dow_txt = (
            ("*" if dom_ok is None else dom_txt),
            ("*" if dow_ok is None else dow_txt),
        )
    year_txt, years = draw(year_field(datetime.fromtimestamp(now, tz=UTC).year))
    fields = [sec_txt, min_txt, hour_txt, dom_txt, mon_txt, dow_txt]
    expr = " ".join(fields if year_txt is None else [*fields, year_txt])
    day_pred = dom_ok or dow_ok or (lambda d: True)
    model = Model(
        seconds=frozenset(secs),
        minutes=frozenset(mins),
        hours=frozenset(hours),
        months=frozenset(months),
        years=frozenset(years),
        day_ok=day_pred,
    )
    return expr, model, now


class NotWithinHorizon:
    pass


def brute_force(model: Model, now: float) -> float | None | NotWithinHorizon:
    """First matching second after `now`, scanning days and then each allowed h:m:s."""
    first = (EPOCH + timedelta(seconds=max(0, int(now)))).date()
    for i in range(HORIZON_DAYS):
        day = first + timedelta(days=i)
        if day.year > 2199:
            return None
        if not model.date_ok(day):
            continue
        base = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        for h in sorted(model.hours):
            if base + h * 3600 + 3599 <= now:
                continue
            for m in sorted(model.minutes):
                if base + h * 3600 + m * 60 + 59 <= now:
                    continue
                for s in sorted(model.seconds):
                    t = base + h * 3600 + m * 60 + s
                    if t > now:
                        return t
    return NotWithinHorizon()


# ------------------------------------------------------------ properties


@given(cron_cases())
def test_parsed_value_sets_match_model(case: tuple[str, Model, float]) -> None:
    expr, model, _ = case
    spec = parse_cron(expr)
    assert set(spec.seconds) == model.seconds
    assert set(spec.minutes) == model.minutes
    assert set(spec.hours) == model.hours
    assert set(spec.months) == model.months
    assert set(spec.years) == model.years


@given(cron_cases())
def test_matches_brute_force_reference(case: tuple[str, Model, float]) -> None:
    expr, model, now = case
    got = next_fire_after(parse_cron(expr), now)
    expected = brute_force(model, now)
    if isinstance(expected, NotWithinHorizon):
        horizon_end = now + (HORIZON_DAYS - 1) * 86400
        assert got is None or got > horizon_end
    else:
        assert got == expected


@given(cron_cases())
def test_result_is_after_now_and_matches_every_field(case: tuple[str, Model, float]) -> None:
    expr, model, now = case
    spec = parse_cron(expr)
    got = next_fire_after(spec, now)
    if got is None:
        return
    assert got > now
    assert got == int(got)
    dt = datetime.fromtimestamp(got, tz=UTC)
    assert dt.second in spec.seconds
    assert dt.minute in spec.minutes
    assert dt.hour in spec.hours
    assert dt.month in spec.months
    assert dt.year in spec.years
    assert model.matches(got)
    # Nothing fires in between: asking from just before the answer gives the answer again.
    assert next_fire_after(spec, got - 1) == got
    assert next_fire_after(spec, got - 0.5) == got


@given(cron_cases(), st.floats(0, 400 * 86400))
def test_monotone_in_now(case: tuple[str, Model, float], delta: float) -> None:
    expr, _, now = case
    spec = parse_cron(expr)
    a = next_fire_after(spec, now)
    b = next_fire_after(spec, now + delta)
    if a is None:
        assert b is None
    elif b is not None:
        assert a <= b


CRON_CHARS = "0123456789*?/-,#LWlw JANFEBMONSUNX"


@given(
    st.one_of(
        st.lists(st.text(CRON_CHARS, min_size=1, max_size=6), min_size=5, max_size=8).map(" ".join),
        st.text(max_size=40),
    )
)
def test_garbage_raises_only_cron_error(text: str) -> None:
    try:
        spec = parse_cron(text)
    except CronError:
        return
    assert isinstance(spec, CronSpec)
    result = next_fire_after(spec, 1.7e9)
    assert result is None or result > 1.7e9

"""MQL (common.mql): each construct on events, and the position a bad query is refused at."""

from __future__ import annotations

import random
from typing import Any

import pytest

from common.mql import MAX_DEPTH, MqlError, compile_query, sink_filter

EVENTS: list[dict[str, Any]] = [
    {"node": "i-1", "latency": 120, "ok": True, "tags": {"nf.cluster": "api", "zone": "a"}},
    {"node": "i-2", "latency": 480.5, "ok": False, "tags": {"nf.cluster": "edge"}},
    {"node": "i-30", "latency": 350, "nf.node": "x", "list": [1, 2, 3]},
    {"node": None, "latency": "slow", "list": []},
]


def nodes(query: str, events: list[Any] = EVENTS) -> list[Any]:
    """The `node` of the events that pass `query`'s where clause (projected with select *)."""
    return [e.get("node") for e in compile_query(query).apply(events)]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("latency > 300", ["i-2", "i-30"]),
        ("latency >= 350", ["i-2", "i-30"]),
        ("latency < 350", ["i-1"]),  # "slow" is not a number: false, not an error
        ("latency <= 120", ["i-1"]),
        ('node == "i-1"', ["i-1"]),
        ("node = 'i-1'", ["i-1"]),
        ('node != "i-1"', ["i-2", "i-30", None]),
        ('node <> "i-1"', ["i-2", "i-30", None]),
        ("node == null", [None]),
        ("missing == null", ["i-1", "i-2", "i-30", None]),
        ("missing > 1", []),  # null compares only by == / !=
        ("ok == true", ["i-1"]),
        ("ok == 1", []),  # a boolean is not a number
        ("latency == 350.0", ["i-30"]),  # numbers by value
        ("node ==~ /i-[0-9]/", ["i-1", "i-2"]),  # the whole text must match
        ("node ==~ /i-.*/", ["i-1", "i-2", "i-30"]),
        ("latency ==~ /4.*/", ["i-2"]),  # a number's text
        ("node ==~ /.*/", ["i-1", "i-2", "i-30"]),  # null never matches
        ('e["tags"]["nf.cluster"] == "api"', ["i-1"]),
        ("e['tags']['zone'] != null", ["i-1"]),
        ('e["list"][0] == 1', ["i-30"]),
        ('e["list"][-1] == 3', ["i-30"]),
        ('e["list"][5] == null', ["i-1", "i-2", "i-30", None]),
        ('nf.node == "x"', ["i-30"]),  # a dotted name is one top-level key, as in Mantis
        ("latency > 100 and latency < 400", ["i-1", "i-30"]),
        ("latency > 400 or node == 'i-1'", ["i-1", "i-2"]),
        ("latency > 400 || node == 'i-1' && ok == true", ["i-1", "i-2"]),  # and binds tighter
        ("(latency > 400 or node == 'i-1') and ok == true", ["i-1"]),
        ("not latency > 300", ["i-1", None]),
        ("!(latency > 300)", ["i-1", None]),
        ("not (latency > 300 or node == null)", ["i-1"]),
        ("true", ["i-1", "i-2", "i-30", None]),
        ("false", []),
        ("1 < 2", ["i-1", "i-2", "i-30", None]),
        ("350 == latency", ["i-30"]),  # a constant on the left
        ("latency > node", []),  # number against string: false
    ],
)
def test_where(where: str, expected: list[Any]) -> None:
    assert nodes(f"select * from servo where {where}") == expected


def test_keywords_are_case_insensitive_and_names_may_look_like_keywords() -> None:
    events = [{"select": 1, "notice": 2, "trueish": 3, "e": 4, "order": 5}]
    q = "SELECT * FROM s WHERE select == 1 AND notice == 2 Or trueish == 0 and e == 4"
    assert compile_query(q).apply(events) == events
    assert compile_query("select * where order == 5 and e == 4").apply(events) == events


def test_select_projects_names_nested_paths_and_literals() -> None:
    q = compile_query(
        "select node, e['tags']['nf.cluster'], e['list'][0], 'const', 45, true from servo"
    )
    assert q.apply(EVENTS) == [
        {"node": "i-1", "tags": {"nf.cluster": "api"}, "const": "const", "45": 45, "true": True},
        {"node": "i-2", "tags": {"nf.cluster": "edge"}, "const": "const", "45": 45, "true": True},
        {"node": "i-30", "list": {"0": 1}, "const": "const", "45": 45, "true": True},
        {"const": "const", "45": 45, "true": True},  # nulls left out
    ]
    # A path under another selected one is dropped, the whole parent is kept.
    assert compile_query("select e['tags']['zone'], tags").apply(EVENTS[:1]) == [
        {"tags": EVENTS[0]["tags"]}
    ]
    assert compile_query("select node, latency").apply([7, "x", {"node": 1}]) == [
        {},
        {},
        {"node": 1},
    ]
    assert EVENTS[0]["tags"] == {"nf.cluster": "api", "zone": "a"}  # never changed in place


def test_select_star_passes_events_as_they_are_and_where_true_filters_nothing() -> None:
    q = compile_query("select * from s where true")
    assert q.passes_everything
    assert q.apply(EVENTS) == EVENTS and q.apply(EVENTS)[0] is EVENTS[0]
    assert sink_filter({"mql": "select *"}) is None
    assert sink_filter({}) is None
    key_and_fn = sink_filter({"mql": "select node where ok == true"})
    assert key_and_fn is not None
    assert key_and_fn[0] == "mql=select node where ok == true"
    assert key_and_fn[1](EVENTS) == [{"node": "i-1"}]
    # Mantis' source-job clients send `criterion`; `mql` wins.
    mantis = sink_filter({"criterion": "select node where ok == true"})
    assert mantis is not None and mantis[0] == key_and_fn[0]
    assert sink_filter({"mql": "select *", "criterion": "select node"}) is None
    with pytest.raises(MqlError) as raised:
        sink_filter({"criterion": "select node where"})
    assert raised.value.field == "criterion" and raised.value.column == 18


def test_regex_dot_matches_newlines_and_slashes_can_be_escaped() -> None:
    events = [{"m": "a\nb"}, {"m": "x/y"}, {"m": "ab"}]
    assert compile_query("select * where m ==~ /a.b/").apply(events) == events[:1]
    assert compile_query(r"select * where m ==~ /x\/y/").apply(events) == events[1:2]


def test_strings_take_escaped_quotes() -> None:
    events = [{"q": 'say "hi"'}, {"q": "it's"}]
    assert compile_query(r'select * where q == "say \"hi\""').apply(events) == events[:1]
    assert compile_query(r"select * where q == 'it\'s'").apply(events) == events[1:]


def test_random_sampling_keeps_threshold_over_factor() -> None:
    events = [{"i": i} for i in range(20_000)]
    q = compile_query(
        "select * where i >= 0 sample {'strategy': 'RANDOM', 'threshold': 2500}",
        rng=random.Random(7),
    )
    kept = len(q.apply(events))
    assert 4_500 < kept < 5_500  # 25 %
    every = compile_query('select * sample {"strategy":"RANDOM","threshold":10,"factor":10}')
    assert every.apply(events) == events


def test_sticky_sampling_keeps_every_event_of_a_kept_key_the_same_in_every_query() -> None:
    events = [{"esn": f"d{i % 100}", "n": i} for i in range(2_000)]
    text = "select * sample {'strategy':'STICKY','threshold':3000,'keys':['esn'],'salt':1}"
    kept = compile_query(text).apply(events)
    again = compile_query(text, rng=random.Random(99)).apply(events)
    assert kept == again
    esns = {e["esn"] for e in kept}
    assert 10 < len(esns) < 50  # ~30 of the 100 devices
    assert len(kept) == 20 * len(esns)  # all of a kept device's events
    assert compile_query(text).apply([{"n": 1}]) == []  # no key value: not sampled


@pytest.mark.parametrize(
    ("query", "line", "column", "words"),
    [
        ("", 1, 1, "expected select"),
        ("select", 1, 7, "end of the query"),
        ("select * form s", 1, 10, "unexpected 'form'"),
        ("select * where", 1, 15, "end of the query"),
        ("select * where a == 1 and", 1, 26, "end of the query"),
        ("select *\nwhere a = = 1", 2, 11, "unexpected '='"),
        ("select * where a ~ 1", 1, 18, "unexpected '~'"),
        ("select * where (a == 1", 1, 23, "expected ')'"),
        (
            "select a, b form s",
            1,
            13,
            "unexpected 'form'; expected ',', from, sample, the end, where",
        ),
        ("select * where a ==~ /(/", 1, 22, "RE2"),
        ("select * where a ==~ 'x'", 1, 22, "/regex/"),
        ("select a,\n  b where\n    c >", 3, 8, "end of the query"),
        ("select * sample {'strategy': 'RANDOM'", 1, 17, "unexpected"),
        ("select * sample {strategy: 1}", 1, 17, "JSON"),
        ("select * sample {'strategy': 'SOME'}", 1, 17, "RANDOM"),
        ("select * sample {'strategy': 'RANDOM', 'threshold': 0.5}", 1, 17, "threshold"),
        ("select * sample {'strategy': 'STICKY', 'keys': []}", 1, 17, "keys"),
        ("select * window 10", 1, 10, "unexpected 'window'"),
        ("select x" + " " * 5000, 1, 1, "at most"),
    ],
)
def test_a_bad_query_names_line_and_column(query: str, line: int, column: int, words: str) -> None:
    with pytest.raises(MqlError) as raised:
        compile_query(query)
    e = raised.value
    assert (e.line, e.column) == (line, column), e.message
    assert words in e.message
    assert e.field == "mql"
    assert e.details == {"line": line, "column": column}
    assert e.message.startswith(f"line {line}, column {column}: ")


def test_conditions_nested_too_deep_are_refused_where_they_get_too_deep() -> None:
    ok = "select * where " + "(" * MAX_DEPTH + "a == 1" + ")" * MAX_DEPTH
    assert compile_query(ok).apply([{"a": 1}, {"a": 2}]) == [{"a": 1}]
    deep = "select * where " + "not " * (MAX_DEPTH + 5) + "a == 1"
    with pytest.raises(MqlError, match="nested deeper") as raised:
        compile_query(deep)
    assert raised.value.column == len("select * where ") + 4 * (MAX_DEPTH + 1) + 1

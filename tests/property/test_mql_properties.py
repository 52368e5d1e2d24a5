"""MQL: the compiled query (common.mql) agrees with a direct evaluator written here.

Hypothesis builds a random query as a tree (conditions, operands, a select list), renders it
as MQL text, and the test checks, on random events, that what `compile_query(text).apply`
lets through and projects is what walking the tree over each event gives. The tree walk is
the semantics stated in common.mql's docstring (mantis-mql's where.cljc and select.cljc),
written again independently; regexes come from a small safe set so that Python's re can be
the reference for RE2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from common.mql import compile_query

KEYS = ["a", "b", "nf.node"]
INNER = ["x", "y"]


# --------------------------------------------------------------------------- the query tree


@dataclass(frozen=True)
class Prop:
    path: tuple[str | int, ...]
    bare: bool  # rendered as a name rather than e[...]

    def render(self) -> str:
        if self.bare:
            return str(self.path[0])
        return "e" + "".join(f'["{k}"]' if isinstance(k, str) else f"[{k}]" for k in self.path)


@dataclass(frozen=True)
class Lit:
    value: Any

    def render(self) -> str:
        v = self.value
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return repr(v)


@dataclass(frozen=True)
class Cmp:
    left: Prop | Lit
    op: str
    right: Prop | Lit


@dataclass(frozen=True)
class Match:
    left: Prop | Lit
    pattern: str


@dataclass(frozen=True)
class Not:
    inner: Any


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" / "or"
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Const:
    value: bool


def render(c: Any) -> str:
    if isinstance(c, Cmp):
        return f"{c.left.render()} {c.op} {c.right.render()}"
    if isinstance(c, Match):
        return f"{c.left.render()} ==~ /{c.pattern}/"
    if isinstance(c, Not):
        return f"not ({render(c.inner)})"
    if isinstance(c, Const):
        return "true" if c.value else "false"
    joiner = {"and": [" and ", " && ", " AND "], "or": [" or ", " || ", " OR "]}[c.op][
        len(c.parts) % 3
    ]
    return joiner.join(f"({render(p)})" for p in c.parts)


# --------------------------------------------------------------------------- the evaluator


def get(event: Any, path: tuple[str | int, ...]) -> Any:
    value = event
    for key in path:
        if isinstance(key, str):
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        else:
            if not isinstance(value, list) or not -len(value) <= key < len(value):
                return None
            value = value[key]
    return value


def operand(o: Prop | Lit, event: Any) -> Any:
    return get(event, o.path) if isinstance(o, Prop) else o.value


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def as_text(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def holds(c: Any, event: Any) -> bool:
    if isinstance(c, Const):
        return c.value
    if isinstance(c, Not):
        return not holds(c.inner, event)
    if isinstance(c, BoolOp):
        results = [holds(p, event) for p in c.parts]
        return all(results) if c.op == "and" else any(results)
    if isinstance(c, Match):
        v = operand(c.left, event)
        return v is not None and re.fullmatch(c.pattern, as_text(v), re.DOTALL) is not None
    a, b = operand(c.left, event), operand(c.right, event)
    if c.op in ("==", "="):
        return equal(a, b)
    if c.op in ("!=", "<>"):
        return not equal(a, b)
    if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[c.op])


def project(fields: list[Prop | Lit], event: Any) -> dict[str, Any]:
    named: list[tuple[tuple[str, ...], Any]] = []
    for f in fields:
        if isinstance(f, Prop):
            named.append((tuple(str(k) for k in f.path), get(event, f.path)))
        else:
            v = f.value
            named.append(((v if isinstance(v, str) else orjson.dumps(v).decode(),), v))
    names = {n for n, _ in named}
    out: dict[str, Any] = {}
    for path, value in named:
        if value is None or any(path[:i] in names for i in range(1, len(path))):
            continue
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return out


# --------------------------------------------------------------------------- strategies

SCALARS: list[Any] = [None, True, False, 0, 1, -1, 2, 0.5, 1.0, -1.0, 1e3]
SCALARS += ["a", "b1", "a\nb", "tr\ne", "-2", "it's", "é1", "", "1", "true"]
VALUES: list[Any] = [
    *SCALARS,
    [1, "a"],
    ["a\nb", True],
    [[1], -1],
    {"x": 1, "y": "a"},
    {"x": {"y": True}},
]
# Values from a pool, where Hypothesis gives every one an equal chance (its own
# generation favours the simplest: None, 0, ""), and some of its own.
scalars = st.one_of(
    st.sampled_from(SCALARS), st.text(alphabet="ab1-'\\ é\n", max_size=4), st.floats(-9, 9)
)
values = st.one_of(
    st.sampled_from(VALUES),
    st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3),
            st.dictionaries(st.sampled_from(INNER), inner, max_size=2),
        ),
        max_leaves=5,
    ),
)
events = st.one_of(
    st.fixed_dictionaries({}, optional={k: values for k in KEYS}),
    st.fixed_dictionaries({k: values for k in KEYS}),
    st.fixed_dictionaries({k: values for k in KEYS}),
    scalars,
)

paths = st.one_of(
    st.builds(lambda k: Prop((k,), True), st.sampled_from(KEYS)),
    st.builds(
        lambda k, rest: Prop((k, *rest), False),
        st.sampled_from(KEYS),
        st.lists(st.one_of(st.sampled_from(INNER), st.integers(-2, 2)), max_size=2),
    ),
)
literals = st.builds(Lit, st.one_of(st.sampled_from(SCALARS), scalars))
operands = st.one_of(paths, paths, literals)
PATTERNS = (
    # literals between optional .* (matched with str methods), then ones RE2 runs
    ["a.*", ".*1", ".*1.*", "b1", ".*", "", r"\-2", "é1.*"]
    + ["[ab]+", "-?[0-9]+", "tr.e", "a|b", "é?1", r"a\.*", r"\d.*", r"a\nb"]
)
patterns = st.sampled_from(PATTERNS)

leaves = st.one_of(
    st.builds(
        Cmp, operands, st.sampled_from(["==", "=", "!=", "<>", "<", "<=", ">", ">="]), operands
    ),
    st.builds(Match, operands, patterns),
    st.builds(Const, st.booleans()),
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(BoolOp, st.sampled_from(["and", "or"]), st.tuples(inner, inner)),
        st.builds(
            BoolOp,
            st.sampled_from(["and", "or"]),
            st.lists(inner, min_size=3, max_size=4).map(tuple),
        ),
    ),
    max_leaves=8,
)
selections = st.one_of(st.none(), st.lists(operands, min_size=1, max_size=4))


@settings(max_examples=300, deadline=None)
@given(conditions, selections, st.lists(events, min_size=1, max_size=12))
def test_the_compiled_query_agrees_with_walking_the_tree(
    condition: Any, fields: list[Prop | Lit] | None, batch: list[Any]
) -> None:
    select = "*" if fields is None else ", ".join(f.render() for f in fields)
    text = f"select {select} from stream where {render(condition)}"
    query = compile_query(text)
    passing = [e for e in batch if holds(condition, e)]
    expected = passing if fields is None else [project(fields, e) for e in passing]
    assert query.apply(batch) == expected, text
    assert [query.matches(e) for e in batch] == [holds(condition, e) for e in batch], text


dense_operands = st.one_of(
    st.just(Prop(("a",), True)),
    st.builds(lambda i: Prop(("a", i), False), st.integers(-3, 2)),
    st.builds(Lit, st.sampled_from(SCALARS)),
)
dense_leaves = st.one_of(
    st.builds(Cmp, dense_operands, st.sampled_from(["==", "!=", "<", ">="]), dense_operands),
    st.builds(Match, dense_operands, patterns),
)


@settings(max_examples=400, deadline=None)
@given(dense_leaves, st.lists(st.sampled_from(VALUES), min_size=len(VALUES)))
def test_each_comparison_agrees_on_every_kind_of_value(condition: Any, values: list[Any]) -> None:
    """Single comparisons and matches on one property, over many of the pool's values: every
    pairing of kinds (booleans and numbers, newlines under ``.``, list indexes) comes up."""
    batch = [{"a": v} for v in values]
    query = compile_query(f"select * where {render(condition)}")
    assert query.apply(batch) == [e for e in batch if holds(condition, e)], render(condition)


def test_every_pattern_and_comparison_on_every_value_of_the_pool() -> None:
    """The pools crossed exhaustively (Hypothesis draws some pairs seldom): each pattern, each
    comparison with each scalar, and each list index, over every value."""
    batch = [{"a": v} for v in VALUES] + VALUES  # and events that are not objects
    a = Prop(("a",), True)
    conditions: list[Any] = [Match(a, p) for p in PATTERNS]
    conditions += [Cmp(a, op, Lit(c)) for op in ("==", "!=", "<", ">=") for c in SCALARS]
    conditions += [Cmp(Lit(c), op, a) for op in ("<>", "<=", ">") for c in SCALARS]
    conditions += [Cmp(Prop(("a", i), False), "==", Lit(1)) for i in range(-3, 3)]
    for condition in conditions:
        query = compile_query(f"select * where {render(condition)}")
        assert query.apply(batch) == [e for e in batch if holds(condition, e)], render(condition)

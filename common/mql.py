"""MQL, Mantis' query language, for filtering and projecting a stream: the subset Mantis uses on
sinks and job sources (https://netflix.github.io/mantis/reference/mql/; the grammar of
Netflix/mantis-mql's ``io.mantisrx.mql.parser``):

    select * | <operand>, ... [from <stream>] [where <condition>] [sample {...}]

- operands: a property (``node``, a top-level key even when dotted as in ``nf.node``, or
  ``e['a']['b']`` / ``e["list"][0]`` for nested keys and list indexes, negative from the end),
  a string (``'x'`` or ``"x"``), a number, ``true``/``false``, ``null``;
- conditions: ``==`` (or ``=``), ``!=`` (or ``<>``), ``<``, ``<=``, ``>``, ``>=``, ``==~ /re/``
  (the whole value's text must match; RE2 syntax, ``.`` matches newlines as Mantis' DOTALL),
  ``and``/``&&``, ``or``/``||``, ``not``/``!``, parentheses, ``true``/``false``;
- ``sample {"strategy": "RANDOM", "threshold": 200}`` keeps threshold/factor of the events
  (``factor`` default 10000); ``"STICKY"`` with ``"keys": [...]`` (and ``"salt"``) keeps all
  the events whose values of those keys hash below the threshold, the same in every process.

Semantics as mantis-mql's where.cljc: a missing property is null; ``==``/``!=`` compare any
values (numbers by value, a boolean equal only to a boolean), the others are false when
either side is null, or when the sides are not both numbers or both strings. ``select`` builds
a new object of the selected properties under their names (``e['a']['b']`` as ``{"a": {"b":
...}}``, a literal under its text), leaving out null values. ``from`` names the stream, which
is always the one the query is applied to (as on Mantis' queryable sources).

A query is parsed once (lark, LALR) and compiled into closures; `Query.apply` then costs one
call per clause per event. A bad query raises `MqlError` with its line and column, which the
sink answers with a 400 naming ``mql``.
"""

from __future__ import annotations

import operator
import random
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints
from lark import Lark, Token, Tree, UnexpectedInput
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from common.sse_sink import InvalidQuery

PARAMETER = "mql"
"""The sink's query parameter that carries a query."""
CRITERION = "criterion"
"""The one Mantis' source-job clients send (``SourceJobParameters``): read when there is no
``mql``."""
MAX_LENGTH = 4096
MAX_DEPTH = 32
"""Conditions nested deeper (parentheses, ``not``) are refused: the compiled closures nest
as deep, and each event walks them."""
DEFAULT_FACTOR = 10000

Event = Any
Predicate = Callable[[Event], bool]
Getter = Callable[[Event], Any]

_NAME_CHARS = r"[\w.\-:$@#]"
_KW = rf"(?!{_NAME_CHARS})"
GRAMMAR = rf"""
start: _SELECT selection [_FROM NAME] [_WHERE cond] [_SAMPLE SAMPLE_CONFIG]

selection: STAR -> select_all
         | operand ("," operand)* -> select_fields

?cond: conj (_OR conj)*
?conj: neg (_AND neg)*
?neg: _NOT neg -> negation
    | "(" cond ")"
    | operand COMPARE operand -> compare
    | operand _MATCH REGEX -> match
    | TRUE -> always
    | FALSE -> never

?operand: NAME -> name
        | _E ("[" key "]")+ -> path
        | STRING -> string
        | NUMBER -> number
        | TRUE -> true
        | FALSE -> false
        | NULL -> null
?key: STRING -> string
    | NUMBER -> number

_SELECT.2: /select{_KW}/i
_FROM.2: /from{_KW}/i
_WHERE.2: /where{_KW}/i
_SAMPLE.2: /sample{_KW}/i
_AND.2: /and{_KW}/i | "&&"
_OR.2: /or{_KW}/i | "||"
_NOT.2: /not{_KW}/i | /!(?!=)/
TRUE.2: /true{_KW}/i
FALSE.2: /false{_KW}/i
NULL.2: /null{_KW}/i
_E.2: /e(?=\[)/
STAR: "*"
NAME: /[A-Za-z_$@]{_NAME_CHARS}*/
NUMBER: /-?\d+(\.\d+)?([eE][-+]?\d+)?/
STRING: /"(?:[^"\\]|\\.)*"/ | /'(?:[^'\\]|\\.)*'/
REGEX: /\/(?:[^\/\\]|\\.)*\//
SAMPLE_CONFIG: /\{{[^{{}}]*\}}/
COMPARE: /==(?!~)|!=|<>|<=|>=|=|<|>/
_MATCH: "==~"

%import common.WS
%ignore WS
"""

_READABLE = {
    "_SELECT": "select",
    "_FROM": "from",
    "_WHERE": "where",
    "_SAMPLE": "sample",
    "_AND": "and",
    "_OR": "or",
    "_NOT": "not",
    "_E": "e[...]",
    "_MATCH": "==~",
    "COMPARE": "a comparison",
    "NAME": "a property",
    "NUMBER": "a number",
    "STRING": "a string",
    "REGEX": "/regex/",
    "SAMPLE_CONFIG": "{sample config}",
    "TRUE": "true",
    "FALSE": "false",
    "NULL": "null",
    "STAR": "'*'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "$END": "the end",
}

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.dot_nl = True  # Mantis compiles with Pattern.DOTALL
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 1 << 20


class MqlError(InvalidQuery):
    """A query that does not parse or compile: where (1-based line and column) and why."""

    def __init__(self, line: int, column: int, reason: str, field: str = PARAMETER) -> None:
        super().__init__(field, f"line {line}, column {column}: {reason}", line=line, column=column)
        self.line = line
        self.column = column
        self.reason = reason


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _describe(error: UnexpectedInput) -> str:
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        found = "the end of the query"
    elif isinstance(error, UnexpectedToken):
        found = repr(str(error.token))
    elif isinstance(error, UnexpectedCharacters):
        found = repr(error.char)
    else:
        found = "the end of the query"
    expected: Iterable[str] = ()
    if isinstance(error, UnexpectedToken) and error.interactive_parser is not None:
        # exact, where LALR's lookahead is not; lark leaves accepts() untyped
        expected = error.interactive_parser.accepts()  # type: ignore[no-untyped-call]
    elif isinstance(error, UnexpectedToken | UnexpectedEOF):
        expected = error.expected
    elif isinstance(error, UnexpectedCharacters):
        expected = error.allowed or ()
    names = sorted({_READABLE.get(name, name) for name in expected})
    return f"unexpected {found}" + (f"; expected {', '.join(names)}" if names else "")


# ---------------------------------------------------------------------------------------------
# values and comparisons


_NUMBERS = (int, float)


def text(value: Any) -> str:
    """A value as ``==~`` and sticky sampling see it: JSON text, a string without quotes."""
    if value.__class__ is str:
        return str(value)
    return orjson.dumps(value).decode()


def equal(a: Any, b: Any) -> bool:
    """``==``: numbers by value, a boolean only to a boolean, anything else by equality."""
    if a.__class__ is bool or b.__class__ is bool:
        return a is b
    return bool(a == b)


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        ca, cb = a.__class__, b.__class__
        if ca is str and cb is str:
            return op(a, b)
        if ca in _NUMBERS and cb in _NUMBERS:
            return op(a, b)
        return False

    return compare


ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": equal,
    "=": equal,
    "!=": lambda a, b: not equal(a, b),
    "<>": lambda a, b: not equal(a, b),
    **{op: _ordered(fn) for op, fn in ORDER.items()},
}


def lookup(event: Any, path: Sequence[str | int | float]) -> Any:
    """The value at `path` (keys of objects, whole-number indexes of lists), or None."""
    value = event
    for key in path:
        if isinstance(key, str):
            value = value.get(key) if value.__class__ is dict else None
        elif value.__class__ is list and key.__class__ is int and -len(value) <= key < len(value):
            value = value[int(key)]
        else:
            return None
        if value is None:
            return None
    return value


# ---------------------------------------------------------------------------------------------
# compiling


@dataclass(frozen=True)
class _Operand:
    """A compiled operand: a getter, or a constant (`getter` None)."""

    name: tuple[str | int | float, ...]
    getter: Getter | None = None
    constant: Any = None
    key: str | None = None
    """A top-level name's key (what `getter` looks up), for closures that inline it."""


def _unquote(token: str) -> str:
    return re.sub(r"\\([\"'\\])", r"\1", token[1:-1])


def _number(token: str) -> int | float:
    return float(token) if any(c in token for c in ".eE") else int(token)


def _literal_name(value: Any) -> str:
    return value if value.__class__ is str else text(value)


def _operand(tree: Tree[Token] | Token) -> _Operand:
    assert isinstance(tree, Tree)
    kind = tree.data
    if kind == "name":
        key = str(tree.children[0])
        return _Operand((key,), lambda e: e.get(key) if e.__class__ is dict else None, key=key)
    if kind == "path":
        path = tuple(_operand(k).constant for k in tree.children)
        return _Operand(path, lambda e: lookup(e, path))
    if kind == "string":
        value: Any = _unquote(str(tree.children[0]))
    elif kind == "number":
        value = _number(str(tree.children[0]))
    else:
        value = {"true": True, "false": False, "null": None}[str(kind)]
    return _Operand((_literal_name(value),), constant=value)


def _name_vs_constant(key: str, op: str, c: Any) -> Predicate:
    """``name <op> constant`` (op as value-then-constant) with the lookup inline: one call
    per event where `_compare`'s closures make two."""
    if op in ("==", "=", "!=", "<>"):
        if c is None or c.__class__ is bool:
            if op in ("==", "="):
                return lambda e: (e.get(key) if e.__class__ is dict else None) is c
            return lambda e: (e.get(key) if e.__class__ is dict else None) is not c
        if c.__class__ is str:
            if op in ("==", "="):
                return lambda e: e.__class__ is dict and e.get(key) == c
            return lambda e: e.__class__ is not dict or e.get(key) != c
        if op in ("==", "="):  # a number: never equal to a boolean
            return lambda e: (
                e.__class__ is dict and (v := e.get(key)) == c and v.__class__ is not bool
            )
        return lambda e: (
            not (e.__class__ is dict and (v := e.get(key)) == c and v.__class__ is not bool)
        )
    cmp = ORDER[op]
    if c.__class__ is str:
        return lambda e: e.__class__ is dict and (v := e.get(key)).__class__ is str and cmp(v, c)
    if c.__class__ in _NUMBERS:
        return lambda e: (
            e.__class__ is dict and (v := e.get(key)).__class__ in _NUMBERS and cmp(v, c)
        )
    return lambda e: False  # null, a boolean: never ordered


def _compare(op: str, left: _Operand, right: _Operand) -> Predicate:
    """A comparison as one closure, specialised when one side is a constant (the usual)."""
    fn = COMPARISONS[op]
    if left.getter is None and right.getter is None:
        result = fn(left.constant, right.constant)
        return lambda e: result
    if left.getter is None or right.getter is None:
        flipped = left.getter is None
        get = right.getter if flipped else left.getter
        assert get is not None
        c = left.constant if flipped else right.constant
        key = right.key if flipped else left.key
        if key is not None:
            return _name_vs_constant(key, _FLIPPED.get(op, op) if flipped else op, c)
        if op in ("==", "=", "!=", "<>"):
            negate = op in ("!=", "<>")
            if c is None or c.__class__ is bool:
                return (lambda e: get(e) is not c) if negate else (lambda e: get(e) is c)
            if c.__class__ is str:
                return (lambda e: get(e) != c) if negate else (lambda e: get(e) == c)
            return (lambda e: not equal(get(e), c)) if negate else (lambda e: equal(get(e), c))
        cmp = ORDER[_FLIPPED[op] if flipped else op]  # as value <op> constant
        if c.__class__ is str:
            return lambda e: (v := get(e)).__class__ is str and cmp(v, c)
        if c.__class__ in _NUMBERS:
            return lambda e: (v := get(e)).__class__ in _NUMBERS and cmp(v, c)
        return lambda e: False  # null, a boolean: never ordered
    lget, rget = left.getter, right.getter
    return lambda e: fn(lget(e), rget(e))


_REGEX_META = frozenset("\\^$.|?*+()[]{}")


def _literal_shape(pattern: str) -> tuple[bool, str, bool] | None:
    """``(any before, literal, any after)`` when `pattern` is a literal between optional
    ``.*`` (as mantis-mql's optimization.cljc rewrites such regexes into startsWith,
    endsWith, contains and equality); None for any other pattern."""
    tokens: list[str] = []  # a literal character, or "." / "*" / another metacharacter
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            escaped = next(chars, "")
            if not escaped or escaped.isalnum():
                return None  # \d, \b, ...: a class or an assertion, not a literal
            tokens.append("\\" + escaped)
        else:
            tokens.append(c)
    before = tokens[:2] == [".", "*"]
    if before:
        tokens = tokens[2:]
    after = tokens[-2:] == [".", "*"]
    if after:
        tokens = tokens[:-2]
    if any(t in _REGEX_META for t in tokens):
        return None
    return before, "".join(t[-1] for t in tokens), after


def _text_test(pattern: str) -> Callable[[str], bool]:
    """Whether a value's whole text matches `pattern` (RE2 syntax, valid): str methods for a
    literal between optional ``.*``, else RE2 on the UTF-8 bytes (google-re2's str path
    costs 3x as much per call)."""
    shape = _literal_shape(pattern)
    if shape is not None:
        before, literal, after = shape
        if before and after:
            return lambda s: literal in s
        if before:
            return lambda s: s.endswith(literal)
        if after:
            return lambda s: s.startswith(literal)
        return lambda s: s == literal
    fullmatch = re2.compile(pattern.encode(), _RE2_OPTIONS).fullmatch
    return lambda s: fullmatch(s.encode()) is not None


def _match(left: _Operand, token: Token) -> Predicate:
    pattern = token[1:-1].replace("\\/", "/")
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args else "invalid"
        raise _error_at(token, f"not a valid RE2 regular expression: {reason}") from None
    test = _text_test(pattern)
    if left.getter is None:
        result = left.constant is not None and test(text(left.constant))
        return lambda e: result
    get = left.getter

    def matches(e: Event) -> bool:
        value = get(e)
        if value is None:
            return False
        return test(value if value.__class__ is str else text(value))

    return matches


def _all(preds: Sequence[Predicate]) -> Predicate:
    """``and`` as nested pairs, halved each level (as deep as log2 of the terms)."""
    if len(preds) == 1:
        return preds[0]
    a, b = _all(preds[: len(preds) // 2]), _all(preds[len(preds) // 2 :])
    return lambda e: a(e) and b(e)


def _any(preds: Sequence[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    a, b = _any(preds[: len(preds) // 2]), _any(preds[len(preds) // 2 :])
    return lambda e: a(e) or b(e)


def _error_at(where: Tree[Token] | Token, reason: str) -> MqlError:
    if isinstance(where, Token):
        return MqlError(where.line or 1, where.column or 1, reason)
    return MqlError(where.meta.line, where.meta.column, reason)


def _condition(tree: Tree[Token], depth: int = 0) -> Predicate:
    if depth > MAX_DEPTH:
        raise _error_at(tree, f"conditions nested deeper than {MAX_DEPTH}")
    kind = tree.data
    if kind == "always":
        return lambda e: True
    if kind == "never":
        return lambda e: False
    if kind == "compare":
        left, op, right = tree.children
        assert isinstance(op, Token)
        return _compare(str(op), _operand(left), _operand(right))
    if kind == "match":
        left, regex = tree.children
        assert isinstance(regex, Token)
        return _match(_operand(left), regex)
    subs = [_condition(c, depth + 1) for c in tree.children if isinstance(c, Tree)]
    if kind == "negation":
        inner = subs[0]
        return lambda e: not inner(e)
    return _all(subs) if kind == "conj" else _any(subs)


def _projection(fields: list[_Operand]) -> Callable[[Event], dict[str, Any]]:
    """Mantis' select-list->fn: a new object of the fields' values under their names (a later
    field over an earlier one of the same name), nulls left out; a field under another selected
    one (``e['a']['b']`` with ``e['a']``) is dropped."""
    paths = [tuple(map(str, f.name)) for f in fields]  # as they appear in the output
    names = set(paths)
    kept = [
        (path, f)
        for path, f in zip(paths, fields, strict=True)
        if not any(path[:n] in names for n in range(1, len(path)))
    ]
    if all(len(path) == 1 and f.getter is not None for path, f in kept):
        keys = [path[0] for path, _ in kept]

        def flat(e: Event) -> dict[str, Any]:
            if e.__class__ is not dict:
                return {}
            return {k: v for k in keys if (v := e.get(k)) is not None}

        return flat
    steps = [(path, f.getter, f.constant) for path, f in kept]

    def nested(e: Event) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path, get, constant in steps:
            value = constant if get is None else get(e)
            if value is None:
                continue
            node = out
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        return out

    return nested


def _sampler(token: Token, rng: random.Random) -> Predicate:
    """Mantis' sample-config->sampler (mantis-mql sampling.cljc); single quotes allowed."""
    try:
        config = orjson.loads(token.replace("'", '"'))
    except orjson.JSONDecodeError as e:
        raise _error_at(token, f"sample: not a JSON object: {e}") from None
    strategy = config.get("strategy")
    threshold, factor = (
        config.get("threshold", DEFAULT_FACTOR),
        config.get("factor", DEFAULT_FACTOR),
    )
    salt, keys = config.get("salt", 0), config.get("keys", [])
    for name, value in (("threshold", threshold), ("factor", factor)):
        if value.__class__ is not int or value < (1 if name == "factor" else 0):
            raise _error_at(token, f"sample: {name} must be a whole number, got {value!r}")
    if strategy == "RANDOM":
        if threshold >= factor:
            return lambda e: True
        below = rng.randrange
        return lambda e: below(factor) < threshold
    if strategy == "STICKY":
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise _error_at(token, "sample: STICKY needs keys, a list of property names")
        suffix = text(salt).encode()

        def sticky(e: Event) -> bool:
            if e.__class__ is not dict:
                return False
            values = "".join(text(v) for k in keys if (v := e.get(k)) is not None)
            return bool(values) and zlib.crc32(values.encode() + suffix) % factor < threshold

        return sticky
    raise _error_at(token, f'sample: strategy must be "RANDOM" or "STICKY", got {strategy!r}')


def _batch_function(
    where: Predicate | None, select: Callable[[Event], Any] | None, sample: Predicate | None
) -> Callable[[Iterable[Event]], list[Any]]:
    """One comprehension for the clauses present (no per-event test of which are)."""
    keep: Predicate | None = where
    if sample is not None:
        keep = sample if where is None else _all([where, sample])
    if keep is None:
        return list if select is None else lambda es: [select(e) for e in es]
    if select is None:
        return lambda es: [e for e in es if keep(e)]
    return lambda es: [select(e) for e in es if keep(e)]


@dataclass(frozen=True)
class Query:
    """A compiled query. ``apply(events)``: the selected values of the events that pass."""

    text: str
    stream: str | None
    where: Predicate | None
    """None: every event (no where clause, or ``where true``)."""
    select: Callable[[Event], Any] | None
    """None: ``select *`` (events as they are)."""
    sample: Predicate | None
    apply: Callable[[Iterable[Event]], list[Any]]

    @property
    def passes_everything(self) -> bool:
        """``select *`` with nothing that drops an event."""
        return self.where is None and self.select is None and self.sample is None

    def matches(self, event: Event) -> bool:
        """Whether `event` passes the where clause and the sampling."""
        return (self.where is None or self.where(event)) and (
            self.sample is None or self.sample(event)
        )


def compile_query(query: str, rng: random.Random | None = None) -> Query:
    """Parse and compile `query`; MqlError (line, column, reason) if it is not valid MQL.
    `rng` draws random sampling (default: a new Random)."""
    if len(query) > MAX_LENGTH:
        raise MqlError(1, 1, f"a query is at most {MAX_LENGTH} characters")
    try:
        tree = _parser().parse(query)
    except UnexpectedInput as e:
        line, column = e.line, e.column
        if line < 1 or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
            line = query.count("\n") + 1  # the end: after the last character
            column = len(query) - (query.rfind("\n") + 1) + 1
        raise MqlError(line, column, _describe(e)) from None
    selection, stream, cond, sample = tree.children
    select: Callable[[Event], Any] | None = None
    if isinstance(selection, Tree) and selection.data == "select_fields":
        select = _projection([_operand(c) for c in selection.children])
    where: Predicate | None = None
    if isinstance(cond, Tree) and cond.data != "always":
        where = _condition(cond)
    sampler = _sampler(sample, rng or random.Random()) if isinstance(sample, Token) else None
    name = str(stream) if stream is not None else None
    return Query(query, name, where, select, sampler, _batch_function(where, select, sampler))


def sink_filter(
    query: Mapping[str, str],
) -> tuple[str, Callable[[Sequence[Event]], list[Any]]] | None:
    """common.sse_sink's connection filter for the ``mql`` parameter (else ``criterion``):
    None without one (or for a query that passes everything), else (``mql=<query>``, its batch
    function); MqlError naming the parameter for a bad query. The sink calls it for each
    connection, as Mantis' ServerSentEventsSink calls its ``Predicate`` with the connection's
    query parameters."""
    field = PARAMETER if query.get(PARAMETER) else CRITERION
    raw = query.get(field)
    if not raw:
        return None
    try:
        compiled = compile_query(raw)
    except MqlError as e:
        raise MqlError(e.line, e.column, e.reason, field) from None
    return None if compiled.passes_everything else (f"{PARAMETER}={raw}", compiled.apply)

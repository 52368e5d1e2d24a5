"""Mantis' list query parameters: paging, `matching` (an RE2 pattern) and the job list's filters.

Each parameter is read with the same 400 as a body field: `InvalidRequest` naming the
parameter. The filters are Mantis' v1 JobsRoute ones (`jobState`, `labels` + `labels.op`,
`stageNumber`/`workerIndex`/`workerNumber`/`workerState`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints
from aiohttp import web

from adapters.http.parsing import to_bool, to_int
from adapters.http.responses import Json
from core.errors import InvalidRequest
from core.job import JobRecord
from core.worker import Worker

MAX_REGEX = 256
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the client's 400, not a line on stderr
_RE2_OPTIONS.max_mem = 1 << 20  # per pattern; past it RE2 refuses the pattern (a 400)
STATE_FILTERS = {"active": False, "terminal": True}  # filter value -> wanted `terminal`
T = TypeVar("T")


class Searcher(Protocol):
    """A compiled pattern as the filters use it (an RE2 `_Regexp`)."""

    def search(self, text: str) -> object: ...


def query_int(request: web.Request, name: str, default: int, minimum: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = to_int(raw, name)
    if value < minimum:
        raise InvalidRequest(name, f"must be >= {minimum}, got {value}")
    return value


def query_opt_int(request: web.Request, name: str, minimum: int = 0) -> int | None:
    return query_int(request, name, -1, minimum) if request.query.get(name) else None


def query_bool(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    return default if raw is None or raw == "" else to_bool(raw, name)


def query_regex(request: web.Request, name: str = "matching") -> Searcher | None:
    """A RE2 pattern (https://github.com/google/re2/wiki/Syntax): searched in linear time,
    so `(.|.|.|.|.)*X` cannot freeze the master as Python's backtracking `re` would."""
    raw = request.query.get(name)
    if not raw:
        return None
    if len(raw) > MAX_REGEX:
        raise InvalidRequest(name, f"at most {MAX_REGEX} characters")
    try:
        pattern: Searcher = re2.compile(raw, _RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args else "invalid"
        raise InvalidRequest(name, f"not a valid RE2 regular expression: {reason}") from None
    except UnicodeError:
        raise InvalidRequest(name, "must be valid Unicode") from None
    return pattern


def page(request: web.Request, items: Sequence[Json]) -> Json:
    """Mantis' paging: `pageSize` (0: all) from `offset`, as `{list, prev, next, total}`."""
    return page_of(request, items, _same)


def _same(item: Json) -> Json:
    return item


def page_of(request: web.Request, items: Sequence[T], render: Callable[[T], Json]) -> Json:
    """`page`, rendering only the items on the page: a page of 20 of 1,000 jobs renders 20."""
    size = query_int(request, "pageSize", 0)
    offset = query_int(request, "offset", 0)
    if size == 0:
        shown = [render(item) for item in items[offset:]]
        return {"list": shown, "prev": None, "next": None, "total": len(items)}

    def link(at: int) -> str:
        return str(request.rel_url.update_query(pageSize=size, offset=at))

    return {
        "list": [render(item) for item in items[offset : offset + size]],
        "prev": link(max(offset - size, 0)) if offset > 0 else None,
        "next": link(offset + size) if offset + size < len(items) else None,
        "total": len(items),
    }


# ---------------------------------------------------------------------- the job list's filters


def state_filter(request: web.Request, name: str) -> bool | None:
    """`Active`/`Terminal` -> the `terminal` value wanted; `Noop` or nothing -> None."""
    raw = request.query.get(name, "")
    if raw.lower() in ("", "noop"):
        return None
    if raw.lower() not in STATE_FILTERS:
        raise InvalidRequest(name, f"must be Active or Terminal, got {raw!r}")
    return STATE_FILTERS[raw.lower()]


def label_filter(request: web.Request) -> Callable[[JobRecord], bool] | None:
    """`labels=a=1,b` (a bare name matches any value) with `labels.op=or` (default) or `and`."""
    raw = request.query.get("labels")
    op = request.query.get("labels.op", "or").lower()
    if op not in ("and", "or"):
        raise InvalidRequest("labels.op", f"must be and or or, got {op!r}")
    if not raw:
        return None
    wanted = [term.partition("=") for term in raw.split(",") if term]
    if any(not name for name, _, _ in wanted):
        raise InvalidRequest("labels", "each label is name=value or name")

    def matches(job: JobRecord) -> bool:
        labels = job.definition.labels
        hits = (
            any(label.name == name and (not eq or label.value == value) for label in labels)
            for name, eq, value in wanted
        )
        return all(hits) if op == "and" else any(hits)

    return matches


def worker_filter(request: web.Request) -> Callable[[Worker], bool] | None:
    """`stageNumber`, `workerIndex`, `workerNumber`, `workerState`: which workers are shown."""
    stage = query_opt_int(request, "stageNumber")
    index = query_opt_int(request, "workerIndex")
    number = query_opt_int(request, "workerNumber")
    terminal = state_filter(request, "workerState")
    if stage is None and index is None and number is None and terminal is None:
        return None
    return lambda w: (
        (stage is None or w.stage == stage)
        and (index is None or w.index == index)
        and (number is None or w.number == number)
        and (terminal is None or w.terminal is terminal)
    )


# ---------------------------------------------------------------------- projection and sorting

PROJECTION_TARGETS = ("jobMetadata", "stageMetadataList", "workerMetadataList")
"""The parts of a job view `fromObj` may name (Mantis' BaseRoute JOBMETADATA_FILTER, ...)."""


def projection(request: web.Request, targets: Sequence[str] = ()) -> Callable[[Json], Json]:
    """Mantis' `fields` and `fromObj` (BaseRoute.parseFilter, Jackson property filters):
    `fields=a,b` keeps only those keys of each item; with `fromObj=jobMetadata` (one of
    `targets`, any case) the item keeps only that part, itself (or each object of that list)
    cut down to `fields`. Unknown field names are left out silently, as Jackson does; an
    unknown `fromObj` is a 400 (Mantis would answer empty objects)."""
    raw = request.query.get("fields", "")
    fields = frozenset(f.strip() for f in raw.split(",") if f.strip())
    target_raw = request.query.get("fromObj", "")
    if not fields:
        return _same
    if not target_raw:
        return lambda item: {k: v for k, v in item.items() if k in fields}
    target = next((t for t in targets if t.lower() == target_raw.lower()), None)
    if target is None:
        allowed = ", ".join(targets) or "none here"
        raise InvalidRequest("fromObj", f"must be one of {allowed}, got {target_raw[:100]!r}")

    def cut(part: object) -> object:
        if isinstance(part, dict):
            return {k: v for k, v in part.items() if k in fields}
        if isinstance(part, list):
            return [cut(p) for p in part]
        return part

    return lambda item: {target: cut(item[target])} if target in item else {}


def sort_items(request: web.Request, items: list[Json], nested: str = "") -> list[Json]:
    """Mantis' `sortBy` (a field of the listed items, ListObject's sorter) and `ascending`
    (default true with sortBy): by that top-level field, or the same field of `nested` (a
    job view's jobMetadata, so `sortBy=submittedAt` works on full and compact views alike);
    missing values first. A field no item has, or one holding objects, is a 400."""
    key = request.query.get("sortBy", "")
    if not key:
        return items
    ascending = query_bool(request, "ascending", True)

    def value(item: Json) -> object:
        if key in item:
            return item[key]
        inner = item.get(nested) if nested else None
        return inner.get(key) if isinstance(inner, dict) else None

    values = [value(item) for item in items]
    present = [v for v in values if v is not None]
    if items and not present and not any(key in item for item in items):
        raise InvalidRequest("sortBy", f"the listed items have no field {key[:100]!r}")
    if any(isinstance(v, dict | list) for v in present):
        raise InvalidRequest("sortBy", f"{key[:100]!r} is not a value that sorts")
    kinds = {type(v) in (int, float, bool) for v in present}
    if len(kinds) > 1:
        raise InvalidRequest("sortBy", f"{key[:100]!r} mixes numbers and text")
    order = sorted(
        range(len(items)),
        key=lambda i: (values[i] is not None, values[i] if values[i] is not None else 0),
        reverse=not ascending,
    )
    return [items[i] for i in order]


def start_after(request: web.Request, ids: Sequence[str]) -> int:
    """Where a listing resumes after Mantis' `startJobIdExclusive` (a job id in `ids`, the
    listing's order): the index after it; 0 without one. A job not listed is a 400."""
    raw = request.query.get("startJobIdExclusive", "")
    if not raw:
        return 0
    try:
        return list(ids).index(raw) + 1
    except ValueError:
        raise InvalidRequest(
            "startJobIdExclusive", f"{raw[:200]!r} is not a job of this listing"
        ) from None

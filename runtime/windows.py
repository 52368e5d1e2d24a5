"""Windows of a group stage: per-key tumbling or sliding windows by count or by time.

The definitions a job writes (``Window``, ``WindowInfo``, the default reducer and output) and
the engine that runs them (``WindowedRunning``), reducing each window incrementally, as
Mantis' group stages do with Rx's ``window``/``buffer`` operators over a GroupedObservable.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.context import Context
from runtime.engines import Emit, RunningStage, StageDefinitionError, hashable


class WindowKind(enum.Enum):
    COUNT = "count"
    TIME = "time"


@dataclass(frozen=True)
class Window:
    """A window per key: ``size`` events or seconds, a new one every ``slide`` (tumbling when
    slide == size). Count windows open at a key's events 0, slide, 2*slide, ... (Rx's
    ``buffer_with_count(size, slide)``); time windows are aligned to multiples of ``slide``
    from time 0, and an event belongs to every window [start, start + size) holding its time.
    """

    kind: WindowKind
    size: float
    slide: float

    def __post_init__(self) -> None:
        for what, v in (("size", self.size), ("slide", self.slide)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise StageDefinitionError(f"window {what} must be > 0, got {v!r}")
            if self.kind is WindowKind.COUNT and int(v) != v:
                raise StageDefinitionError(f"count window {what} must be an integer, got {v!r}")
            if not math.isfinite(v):
                raise StageDefinitionError(f"window {what} must be finite, got {v!r}")

    @classmethod
    def tumbling_count(cls, n: int) -> Window:
        return cls(WindowKind.COUNT, n, n)

    @classmethod
    def sliding_count(cls, n: int, every: int) -> Window:
        return cls(WindowKind.COUNT, n, every)

    @classmethod
    def tumbling_time(cls, seconds: float) -> Window:
        return cls(WindowKind.TIME, seconds, seconds)

    @classmethod
    def sliding_time(cls, seconds: float, every: float) -> Window:
        return cls(WindowKind.TIME, seconds, every)


@dataclass(frozen=True)
class WindowInfo:
    """What an output function learns of a closed window: its bounds (time windows) and how
    many events it held. ``complete`` is False for a window cut short by key expiry or close."""

    start: float | None
    end: float | None
    count: int
    complete: bool = True


def count_reduce(acc: int, event: Any) -> int:
    """The default reducer: how many events."""
    return acc + 1


def zero() -> int:
    """The default initial accumulator."""
    return 0


def default_output(key: Any, acc: Any, info: WindowInfo) -> dict[str, Any]:
    """``{"key", "value", "count", "start", "end"}``."""
    return {"key": key, "value": acc, "count": info.count, "start": info.start, "end": info.end}


class WindowedRunning(RunningStage):
    """Per-key windows over (key, event) pairs, reduced incrementally."""

    def __init__(
        self,
        name: str,
        context: Context,
        emit: Emit,
        window: Window,
        reduce: Callable[[Any, Any], Any],
        initial: Callable[[], Any],
        output: Callable[[Any, Any, WindowInfo], Any],
        key_expiry: float | None,
    ) -> None:
        super().__init__(name, context, emit)
        self._w = window
        self._reduce = reduce
        self._initial = initial
        self._output = output
        self._expiry = key_expiry
        self._last_seen: dict[Hashable, float] = {}
        # count windows: key -> [events seen, [[acc, n], ...] oldest first]
        self._count: dict[Hashable, list[Any]] = {}
        # time windows: window index (start = index * slide) -> key -> [acc, n]
        self._time: dict[int, dict[Hashable, list[Any]]] = {}
        self._keys = context.metrics.gauge(f"stage.{name}.keys")
        self._expired = context.metrics.counter(f"stage.{name}.keys_expired")

    # input --------------------------------------------------------------------------------------

    def _batch(self, events: Sequence[Any]) -> None:
        if self._w.kind is WindowKind.COUNT:
            self._count_batch(events)
        else:
            self._time_batch(events)
        if self._expiry is not None:
            self._keys.set(len(self._last_seen))

    def _count_batch(self, events: Sequence[Any]) -> None:
        size = int(self._w.size)
        slide = int(self._w.slide)
        reduce, initial = self._reduce, self._initial
        state = self._count
        last = self._last_seen if self._expiry is not None else None
        now = self.now
        out: list[Any] = []
        for pair in events:
            key, event = pair
            if type(key) is list:
                key = hashable(key)
            st = state.get(key)
            if st is None:
                st = state[key] = [0, []]
            if last is not None:
                last[key] = now
            windows = st[1]
            if st[0] % slide == 0:
                windows.append([initial(), 0])
            st[0] += 1
            for w in windows:
                w[0] = reduce(w[0], event)
                w[1] += 1
            if windows and windows[0][1] >= size:
                w = windows.pop(0)
                out.append(self._output(key, w[0], WindowInfo(None, None, w[1])))
        self.emit(out)

    def _time_indices(self, t: float) -> list[int]:
        size, slide = self._w.size, self._w.slide
        last = math.floor(t / slide)
        idx = [last]
        i = last - 1
        while i * slide + size > t:
            idx.append(i)
            i -= 1
        idx.reverse()
        return idx

    def _time_batch(self, events: Sequence[Any]) -> None:
        # One time for the whole batch: the windows are looked up once per batch.
        reduce, initial = self._reduce, self._initial
        tables = []
        for i in self._time_indices(self.now):
            table = self._time.get(i)
            if table is None:
                table = self._time[i] = {}
            tables.append(table)
        last = self._last_seen if self._expiry is not None else None
        now = self.now
        for pair in events:
            key, event = pair
            if type(key) is list:
                key = hashable(key)
            if last is not None:
                last[key] = now
            for table in tables:
                cell = table.get(key)
                if cell is None:
                    table[key] = [reduce(initial(), event), 1]
                else:
                    cell[0] = reduce(cell[0], event)
                    cell[1] += 1

    # time ---------------------------------------------------------------------------------------

    @property
    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        if self._time:
            deadlines.append(min(self._time) * self._w.slide + self._w.size)
        if self._expiry is not None and self._last_seen:
            deadlines.append(min(self._last_seen.values()) + self._expiry)
        return min(deadlines) if deadlines else None

    def _tick(self, now: float) -> None:
        if self._time:
            size, slide = self._w.size, self._w.slide
            due = sorted(i for i in self._time if i * slide + size <= now)
            out: list[Any] = []
            for i in due:
                out.extend(self._close_window(i, self._time.pop(i), True))
            self.emit(out)
        if self._expiry is not None:
            expiry = self._expiry
            gone = [k for k, t in self._last_seen.items() if now - t >= expiry]
            if gone:
                self._expire(gone)
            self._keys.set(len(self._last_seen))

    def _close_window(self, i: int, table: dict[Hashable, list[Any]], complete: bool) -> list[Any]:
        start = i * self._w.slide
        end = start + self._w.size
        output = self._output
        return [
            output(k, cell[0], WindowInfo(start, end, cell[1], complete))
            for k, cell in table.items()
        ]

    def _expire(self, keys: list[Hashable]) -> None:
        """Drop the keys' state, emitting their open windows as they are (Rx: group completed)."""
        out: list[Any] = []
        for key in keys:
            del self._last_seen[key]
            st = self._count.pop(key, None)
            if st is not None:
                for w in st[1]:
                    out.append(self._output(key, w[0], WindowInfo(None, None, w[1], False)))
            for i in sorted(self._time):
                cell = self._time[i].pop(key, None)
                if cell is not None:
                    out.extend(self._close_window(i, {key: cell}, False))
            self._expired.inc()
        for i in [i for i, t in self._time.items() if not t]:
            del self._time[i]
        self.emit(out)

    def _close(self) -> None:
        out: list[Any] = []
        for key, st in self._count.items():
            for w in st[1]:
                out.append(self._output(key, w[0], WindowInfo(None, None, w[1], False)))
        self._count.clear()
        for i in sorted(self._time):
            out.extend(self._close_window(i, self._time[i], False))
        self._time.clear()
        self._last_seen.clear()
        self.emit(out)

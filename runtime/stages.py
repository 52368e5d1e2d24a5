"""Stage kinds of the job DSL and the running form the worker drives batch by batch.

Kinds, as in Mantis (reference/mantis.md 4.1):

- ``ScalarStage``: scalar -> scalar.
- ``KeyStage`` (alias ``ToGroupStage``): scalar -> group; a key function marks each output
  event with a key, and the output is keyed: the transport routes every key to one worker of
  the next stage (runtime.transport, consistent hashing).
- ``GroupToScalarStage``: group -> scalar; keyed aggregation over tumbling or sliding windows
  by count or by time (``Window``), or a reactivex pipeline per key, with ``key_expiry``.

User logic is either a reactivex pipeline over an Observable (``rx=lambda obs: obs.pipe(...)``,
or ``lambda obs, ctx: ...`` to get the Context) or a plain function over a batch
(``batch_fn=lambda events: [...]``). reactivex costs about 0.3 us per operator per event
(reference/performance.md); a batch function costs one call per batch, so prefer it on hot
paths.

The worker's side: ``running = stage.start(context, emit, scheduler)``, then
``running.on_batch(events, now)`` for every input batch, ``running.on_tick(now)`` whenever
``running.next_deadline`` (time windows, key expiry) has passed, and ``running.close()`` at
the end (which flushes what is open, as a completing source does in Rx). ``emit`` gets lists
of output events, or of ``(key, event)`` tuples when ``stage.output_keyed``. A group stage's
input is ``(key, event)`` pairs (lists, as they come off the wire, are fine). reactivex
pipelines are subscribed with the scheduler passed in (an ``AsyncIOScheduler`` in the worker,
a ``TestScheduler`` in tests), so time-based operators run in the worker's (or virtual) time.
An error in user code fails the stage: ``on_batch``/``on_tick``/``close`` raise
``StageError`` naming the stage, then and on every later call.
"""

from __future__ import annotations

import enum
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import reactivex
from reactivex import Observable
from reactivex.abc import DisposableBase, ObserverBase, SchedulerBase
from reactivex.disposable import Disposable

from runtime.codec import Codec
from runtime.context import Context
from runtime.transport import Backpressure

Emit = Callable[[list[Any]], None]
"""Receives a stage's output, a list at a time (``(key, event)`` tuples for keyed output)."""


class StageError(Exception):
    """User code of a stage failed; the worker reports this message in the job's status."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage {stage} failed: {type(cause).__name__}: {cause}")
        self.stage = stage
        self.cause = cause


class StageDefinitionError(ValueError):
    """A stage is defined wrongly (e.g. no key function, a window with a size of 0)."""


class StageKind(enum.Enum):
    SCALAR_TO_SCALAR = "ScalarToScalar"
    SCALAR_TO_GROUP = "ScalarToGroup"
    GROUP_TO_SCALAR = "GroupToScalar"


@dataclass(frozen=True)
class StageConfig:
    """How a stage's worker runs it (Mantis' ``StageConfig``).

    ``codec``: how its output goes on the wire (``Codec`` or its name, "json" or "bytes";
    keyed output must be JSON). ``concurrency``: how many input pipelines the worker runs
    (Mantis' ``concurrentInput(n)``; 1 = serial input). ``key_expiry``: seconds after which a
    key not seen is dropped from a group stage's state (Mantis' ``keyExpireTimeSeconds``).
    """

    codec: Codec = Codec.JSON
    concurrency: int = 1
    key_expiry: float | None = None
    backpressure: Backpressure = Backpressure.LOSSY
    """What the stage's output does when a downstream worker cannot keep up: drop and count
    (Mantis' default) or wait."""
    description: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.codec, str):
            try:
                object.__setattr__(self, "codec", Codec(self.codec))
            except ValueError:
                names = ", ".join(c.value for c in Codec)
                raise StageDefinitionError(
                    f"unknown codec {self.codec!r} (known: {names})"
                ) from None
        if not isinstance(self.codec, Codec):
            raise StageDefinitionError(f"codec must be a Codec, got {self.codec!r}")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise StageDefinitionError(f"concurrency must be an int, got {self.concurrency!r}")
        if self.concurrency < 1:
            raise StageDefinitionError(f"concurrency must be >= 1, got {self.concurrency}")
        if isinstance(self.backpressure, str):
            try:
                object.__setattr__(self, "backpressure", Backpressure(self.backpressure))
            except ValueError:
                raise StageDefinitionError(
                    f"backpressure must be 'lossy' or 'blocking', got {self.backpressure!r}"
                ) from None
        if self.key_expiry is not None and not (
            isinstance(self.key_expiry, int | float) and self.key_expiry > 0
        ):
            raise StageDefinitionError(f"key_expiry must be > 0 seconds, got {self.key_expiry!r}")


def _positional_arity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments `fn` takes (None: any number)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    n = 0
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def _check_fn(what: str, fn: object, base: int, context: bool = True) -> bool:
    """Whether `fn` wants the Context as an extra last argument (if `context` allows one);
    raises if it is unusable."""
    if not callable(fn):
        raise StageDefinitionError(f"{what} must be callable, got {type(fn).__name__}")
    arity = _positional_arity(fn)
    if arity is None:
        return False
    if arity == base + 1 and context:
        return True
    if arity == base:
        return False
    also = f" (or {base + 1} with the Context)" if context else ""
    raise StageDefinitionError(f"{what} must take {base} argument(s){also}, takes {arity}")


# ---------------------------------------------------------------------------------------------
# running stages


class RunningStage(ABC):
    """A started stage: the worker feeds it batches and ticks; it calls ``emit``."""

    def __init__(self, name: str, context: Context, emit: Emit) -> None:
        self.name = name
        self.context = context
        self._emit = emit
        self.error: BaseException | None = None
        self.completed = False
        """The user pipeline completed (e.g. ``take(n)``): later input is ignored."""
        self.closed = False
        self.now: float = 0.0
        """The latest time given to ``on_batch``/``on_tick``."""
        metrics = context.metrics
        self._in = metrics.counter(f"stage.{name}.events_in")
        self._out = metrics.counter(f"stage.{name}.events_out")

    def on_batch(self, events: Sequence[Any], now: float | None = None) -> None:
        """Process a batch of input events (arrived at `now`, default: the last tick)."""
        self._check()
        if now is not None and now > self.now:
            self.now = now
        self._in.inc(len(events))
        if self.completed or not events:
            return
        try:
            self._batch(events)
        except StageError as e:
            self.error = e.cause
            raise
        except Exception as e:
            self.error = e
            raise StageError(self.name, e) from e
        self._check()

    def on_tick(self, now: float) -> None:
        """Time has reached `now`: close due windows, expire idle keys."""
        self._check()
        if now > self.now:
            self.now = now
        try:
            self._tick(self.now)
        except StageError as e:
            self.error = e.cause
            raise
        except Exception as e:
            self.error = e
            raise StageError(self.name, e) from e
        self._check()

    @property
    def next_deadline(self) -> float | None:
        """When ``on_tick`` has something to do next (None: nothing pending)."""
        return None

    def close(self) -> None:
        """End of input: flush what is open (windows, buffers), then stop."""
        if self.closed:
            return
        self.closed = True
        if self.error is None:
            try:
                self._close()
            except StageError as e:
                self.error = e.cause
                raise
            except Exception as e:
                self.error = e
                raise StageError(self.name, e) from e
        self._dispose()
        self._check()

    def emit(self, events: list[Any]) -> None:
        if events:
            self._out.inc(len(events))
            self._emit(events)

    def _check(self) -> None:
        if self.error is not None:
            raise StageError(self.name, self.error)

    @abstractmethod
    def _batch(self, events: Sequence[Any]) -> None: ...

    def _tick(self, now: float) -> None:
        return None

    def _close(self) -> None:
        return None

    def _dispose(self) -> None:
        return None


class _BatchFnRunning(RunningStage):
    def __init__(
        self,
        name: str,
        context: Context,
        emit: Emit,
        fn: Callable[..., Iterable[Any]],
        with_ctx: bool,
    ) -> None:
        super().__init__(name, context, emit)
        self._fn = fn
        self._with_ctx = with_ctx

    def _batch(self, events: Sequence[Any]) -> None:
        batch = events if type(events) is list else list(events)
        out = self._fn(batch, self.context) if self._with_ctx else self._fn(batch)
        if out:
            self.emit(out if type(out) is list else list(out))


class _Feed:
    """The input Observable of a user's pipeline, fed by the stage.

    Not a ``Subject``: its ``on_next`` takes a lock and copies the observer list per event
    (measured: 0.3 M events/s through a bare Subject, 3.3 M calling the subscriber directly).
    One thread feeds it (the worker's loop), so no lock is needed.
    """

    def __init__(self) -> None:
        self.observers: list[ObserverBase[Any]] = []
        self.observable: Observable[Any] = reactivex.create(self._subscribe)

    def _subscribe(
        self, observer: ObserverBase[Any], scheduler: SchedulerBase | None = None
    ) -> DisposableBase:
        self.observers.append(observer)

        def remove() -> None:
            if observer in self.observers:
                self.observers.remove(observer)

        return Disposable(remove)

    def on_next_many(self, events: Iterable[Any]) -> None:
        observers = self.observers
        if len(observers) == 1:
            on_next = observers[0].on_next
            for e in events:
                on_next(e)
        else:
            for e in events:
                for o in list(observers):
                    o.on_next(e)

    def on_completed(self) -> None:
        for o in list(self.observers):
            o.on_completed()


class _Collecting(RunningStage):
    """Output of reactivex pipelines: what they emit inside a batch leaves as one list."""

    _pending: list[Any] | None = None

    def _on_next(self, e: Any) -> None:
        pending = self._pending
        if pending is not None:
            pending.append(e)
        else:  # from a timer of the scheduler, between batches
            self.emit([e])

    def _on_error(self, e: Exception) -> None:
        self.error = e

    def _run(self, action: Callable[[], None]) -> None:
        pending: list[Any] = []
        self._pending = pending
        try:
            action()
        finally:
            self._pending = None
        self.emit(pending)


class _RxRunning(_Collecting):
    """A reactivex pipeline fed by a _Feed; output inside a batch is emitted as one list."""

    def __init__(
        self,
        name: str,
        context: Context,
        emit: Emit,
        fn: Callable[..., Observable[Any]],
        with_ctx: bool,
        scheduler: SchedulerBase | None,
    ) -> None:
        super().__init__(name, context, emit)
        self._feed = _Feed()
        source = self._feed.observable
        try:
            out = fn(source, context) if with_ctx else fn(source)
        except Exception as e:
            raise StageError(name, e) from e
        if not isinstance(out, Observable):
            raise StageError(
                name, TypeError(f"rx function returned {type(out).__name__}, not an Observable")
            )
        self._sub: DisposableBase = out.subscribe(
            self._on_next, self._on_error, self._on_completed, scheduler=scheduler
        )

    def _on_completed(self) -> None:
        self.completed = True

    def _batch(self, events: Sequence[Any]) -> None:
        self._run(lambda: self._feed.on_next_many(events))

    def _close(self) -> None:
        self._run(self._feed.on_completed)

    def _dispose(self) -> None:
        self._sub.dispose()


class _Keying(RunningStage):
    """Key every output event of an inner running stage (or of the input, with no inner)."""

    def __init__(
        self,
        name: str,
        context: Context,
        emit: Emit,
        key_fn: Callable[[Any], Any],
        value_fn: Callable[[Any], Any] | None,
    ) -> None:
        super().__init__(name, context, emit)
        self._key_fn = key_fn
        self._value_fn = value_fn
        self.inner: RunningStage | None = None

    def keyed(self, events: list[Any]) -> None:
        kf = self._key_fn
        vf = self._value_fn
        try:
            pairs = [(kf(e), e if vf is None else vf(e)) for e in events]
        except Exception as e:
            self.error = e
            raise StageError(self.name, e) from e
        self.emit(pairs)

    def _batch(self, events: Sequence[Any]) -> None:
        if self.inner is None:
            self.keyed(events if type(events) is list else list(events))
        else:
            self.inner.on_batch(events, self.now)

    def _tick(self, now: float) -> None:
        if self.inner is not None:
            self.inner.on_tick(now)

    def _close(self) -> None:
        if self.inner is not None:
            self.inner.close()

    def _check(self) -> None:
        if self.error is None and self.inner is not None and self.inner.error is not None:
            self.error = self.inner.error
        if self.inner is not None and self.inner.completed:
            self.completed = True
        super()._check()


def _scalar_running(
    name: str,
    context: Context,
    emit: Emit,
    rx: Callable[..., Observable[Any]] | None,
    batch_fn: Callable[..., Iterable[Any]] | None,
    scheduler: SchedulerBase | None,
) -> RunningStage:
    if rx is not None:
        return _RxRunning(name, context, emit, rx, _check_fn("rx", rx, 1), scheduler)
    if batch_fn is not None:
        return _BatchFnRunning(name, context, emit, batch_fn, _check_fn("batch_fn", batch_fn, 1))
    return _BatchFnRunning(name, context, emit, list, False)


# ---------------------------------------------------------------------------------------------
# windows


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

    @property
    def tumbling(self) -> bool:
        return self.size == self.slide


@dataclass(frozen=True)
class WindowInfo:
    """What an output function learns of a closed window: its bounds (time windows) and how
    many events it held. ``complete`` is False for a window cut short by key expiry or close."""

    start: float | None
    end: float | None
    count: int
    complete: bool = True


def count_reduce(acc: int, event: Any) -> int:
    return acc + 1


def zero() -> int:
    return 0


def default_output(key: Any, acc: Any, info: WindowInfo) -> dict[str, Any]:
    """``{"key", "value", "count", "start", "end"}``."""
    return {"key": key, "value": acc, "count": info.count, "start": info.start, "end": info.end}


def _hashable(key: Any) -> Hashable:
    # Keys come off the wire as JSON: a tuple key arrives as a list.
    if type(key) is list:
        return tuple(_hashable(k) for k in key)
    return key  # type: ignore[no-any-return]


class _WindowedRunning(RunningStage):
    """Per-key windows over (key, event) pairs, reduced incrementally."""

    def __init__(self, name: str, context: Context, emit: Emit, stage: GroupToScalarStage) -> None:
        super().__init__(name, context, emit)
        assert stage.window is not None
        self._w = stage.window
        self._reduce = stage.reduce
        self._initial = stage.initial
        self._output = stage.output
        self._expiry = stage.config.key_expiry
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
                key = _hashable(key)
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
                key = _hashable(key)
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


class _PerKeyRxRunning(_Collecting):
    """One reactivex pipeline per key (Mantis' GroupedObservable); expiry completes a key's."""

    def __init__(
        self,
        name: str,
        context: Context,
        emit: Emit,
        fn: Callable[..., Observable[Any]],
        with_ctx: bool,
        scheduler: SchedulerBase | None,
        expiry: float | None,
    ) -> None:
        super().__init__(name, context, emit)
        self._fn = fn
        self._with_ctx = with_ctx
        self._scheduler = scheduler
        self._expiry = expiry
        self._groups: dict[Hashable, tuple[_Feed, DisposableBase]] = {}
        self._last_seen: dict[Hashable, float] = {}
        self._keys = context.metrics.gauge(f"stage.{name}.keys")
        self._expired = context.metrics.counter(f"stage.{name}.keys_expired")

    def _open(self, key: Hashable) -> _Feed:
        feed = _Feed()
        src = feed.observable
        out = self._fn(key, src, self.context) if self._with_ctx else self._fn(key, src)
        if not isinstance(out, Observable):
            raise TypeError(f"per_key_rx returned {type(out).__name__}, not an Observable")
        sub = out.subscribe(self._on_next, self._on_error, scheduler=self._scheduler)
        self._groups[key] = (feed, sub)
        return feed

    def _batch(self, events: Sequence[Any]) -> None:
        groups = self._groups
        last = self._last_seen
        now = self.now

        def feed() -> None:
            for pair in events:
                key, event = pair
                if type(key) is list:
                    key = _hashable(key)
                g = groups.get(key)
                feed = self._open(key) if g is None else g[0]
                last[key] = now
                feed.on_next_many((event,))

        self._run(feed)
        self._keys.set(len(groups))

    @property
    def next_deadline(self) -> float | None:
        if self._expiry is None or not self._last_seen:
            return None
        return min(self._last_seen.values()) + self._expiry

    def _complete(self, keys: list[Hashable]) -> None:
        def run() -> None:
            for key in keys:
                self._groups[key][0].on_completed()

        self._run(run)
        for key in keys:
            self._groups.pop(key)[1].dispose()
            self._last_seen.pop(key, None)

    def _tick(self, now: float) -> None:
        if self._expiry is None:
            return
        expiry = self._expiry
        gone = [k for k, t in self._last_seen.items() if now - t >= expiry]
        if gone:
            self._complete(gone)
            self._expired.inc(len(gone))
        self._keys.set(len(self._groups))

    def _close(self) -> None:
        self._complete(list(self._groups))

    def _dispose(self) -> None:
        for _, sub in self._groups.values():
            sub.dispose()
        self._groups.clear()


# ---------------------------------------------------------------------------------------------
# stage definitions


class Stage(ABC):
    """A stage of a job: what kind it is, its config, and how to start it."""

    kind: StageKind
    config: StageConfig
    name: str

    @property
    def input_keyed(self) -> bool:
        return self.kind is StageKind.GROUP_TO_SCALAR

    @property
    def output_keyed(self) -> bool:
        return self.kind is StageKind.SCALAR_TO_GROUP

    @abstractmethod
    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        """A fresh running instance (state is never shared between two starts)."""

    def _label(self, context: Context) -> str:
        return self.name or str(context.worker.stage)


def _one_of(what: str, **fns: object) -> None:
    given = [k for k, v in fns.items() if v is not None]
    if len(given) > 1:
        raise StageDefinitionError(f"{what} takes one of {', '.join(fns)}; got {', '.join(given)}")


@dataclass(frozen=True)
class ScalarStage(Stage):
    """scalar -> scalar: ``rx`` (Observable -> Observable) or ``batch_fn`` (list -> list);
    neither passes events through."""

    rx: Callable[..., Observable[Any]] | None = None
    batch_fn: Callable[..., Iterable[Any]] | None = None
    config: StageConfig = field(default_factory=StageConfig)
    name: str = ""
    kind = StageKind.SCALAR_TO_SCALAR

    def __post_init__(self) -> None:
        _one_of("ScalarStage", rx=self.rx, batch_fn=self.batch_fn)
        _validate_common(self)
        if self.rx is not None:
            _check_fn("rx", self.rx, 1)
        if self.batch_fn is not None:
            _check_fn("batch_fn", self.batch_fn, 1)
        if self.config.key_expiry is not None:
            raise StageDefinitionError("key_expiry applies to GroupToScalarStage only")

    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        return _scalar_running(
            self._label(context), context, emit, self.rx, self.batch_fn, scheduler
        )


@dataclass(frozen=True)
class KeyStage(Stage):
    """scalar -> group: optional scalar logic (``rx`` or ``batch_fn``), then each output event
    becomes ``(key_fn(event), value_fn(event) or event)``. Keys must be JSON values (they
    travel in keyed frames); the transport sends each key to one worker of the next stage."""

    key_fn: Callable[[Any], Any] | None = None
    rx: Callable[..., Observable[Any]] | None = None
    batch_fn: Callable[..., Iterable[Any]] | None = None
    value_fn: Callable[[Any], Any] | None = None
    config: StageConfig = field(default_factory=StageConfig)
    name: str = ""
    kind = StageKind.SCALAR_TO_GROUP

    def __post_init__(self) -> None:
        if self.key_fn is None:
            raise StageDefinitionError("KeyStage needs a key_fn")
        _check_fn("key_fn", self.key_fn, 1)
        if self.value_fn is not None:
            _check_fn("value_fn", self.value_fn, 1)
        _one_of("KeyStage", rx=self.rx, batch_fn=self.batch_fn)
        _validate_common(self)
        if self.rx is not None:
            _check_fn("rx", self.rx, 1)
        if self.batch_fn is not None:
            _check_fn("batch_fn", self.batch_fn, 1)
        if self.config.codec is not Codec.JSON:
            raise StageDefinitionError("keyed output needs the JSON codec")
        if self.config.key_expiry is not None:
            raise StageDefinitionError("key_expiry applies to GroupToScalarStage only")

    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        assert self.key_fn is not None
        name = self._label(context)
        keying = _Keying(name, context, emit, self.key_fn, self.value_fn)
        if self.rx is not None or self.batch_fn is not None:
            keying.inner = _scalar_running(
                name + ".fn", context, keying.keyed, self.rx, self.batch_fn, scheduler
            )
        return keying


ToGroupStage = KeyStage


@dataclass(frozen=True)
class GroupToScalarStage(Stage):
    """group -> scalar over ``(key, event)`` pairs, one of:

    - ``window``: per key, ``reduce(acc, event)`` from ``initial()`` (default: count), and at
      the end of each window ``output(key, acc, WindowInfo)`` (default: ``default_output``);
    - ``per_key_rx``: ``(key, Observable) -> Observable``, one pipeline per key;
    - ``rx``: ``Observable[(key, event)] -> Observable`` over all pairs;
    - ``batch_fn``: ``list[(key, event)] -> list`` over whole batches.

    ``config.key_expiry`` (seconds, with ``window`` or ``per_key_rx``): a key not seen for that
    long is dropped; its open windows are emitted as they are (``complete=False``), its
    per-key pipeline is completed (so its Rx buffers flush), as Mantis expires a group.
    """

    window: Window | None = None
    reduce: Callable[[Any, Any], Any] = count_reduce
    initial: Callable[[], Any] = zero
    output: Callable[[Any, Any, WindowInfo], Any] = default_output
    per_key_rx: Callable[..., Observable[Any]] | None = None
    rx: Callable[..., Observable[Any]] | None = None
    batch_fn: Callable[..., Iterable[Any]] | None = None
    config: StageConfig = field(default_factory=StageConfig)
    name: str = ""
    kind = StageKind.GROUP_TO_SCALAR

    def __post_init__(self) -> None:
        modes = dict(
            window=self.window, per_key_rx=self.per_key_rx, rx=self.rx, batch_fn=self.batch_fn
        )
        _one_of("GroupToScalarStage", **modes)
        if all(v is None for v in modes.values()):
            raise StageDefinitionError(
                "GroupToScalarStage needs one of window, per_key_rx, rx, batch_fn"
            )
        _validate_common(self)
        if self.window is not None and not isinstance(self.window, Window):
            raise StageDefinitionError(f"window must be a Window, got {type(self.window).__name__}")
        _check_fn("reduce", self.reduce, 2, context=False)
        _check_fn("output", self.output, 3, context=False)
        if not callable(self.initial):
            raise StageDefinitionError("initial must be a function returning a fresh accumulator")
        if self.per_key_rx is not None:
            _check_fn("per_key_rx", self.per_key_rx, 2)
        if self.rx is not None:
            _check_fn("rx", self.rx, 1)
        if self.batch_fn is not None:
            _check_fn("batch_fn", self.batch_fn, 1)
        if self.config.key_expiry is not None and self.window is None and self.per_key_rx is None:
            raise StageDefinitionError("key_expiry needs window or per_key_rx")

    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        name = self._label(context)
        if self.window is not None:
            return _WindowedRunning(name, context, emit, self)
        if self.per_key_rx is not None:
            return _PerKeyRxRunning(
                name,
                context,
                emit,
                self.per_key_rx,
                _check_fn("per_key_rx", self.per_key_rx, 2),
                scheduler,
                self.config.key_expiry,
            )
        return _scalar_running(name, context, emit, self.rx, self.batch_fn, scheduler)


def _validate_common(stage: Stage) -> None:
    if not isinstance(stage.config, StageConfig):
        raise StageDefinitionError(
            f"config must be a StageConfig, got {type(stage.config).__name__}"
        )
    if not isinstance(stage.name, str):
        raise StageDefinitionError(f"name must be a string, got {type(stage.name).__name__}")

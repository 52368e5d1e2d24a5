"""Stage kinds of the job DSL: what a job writes to define its stages.

Kinds, as in Mantis' io.mantisrx.runtime ScalarToScalar, ScalarToGroup, GroupToScalar,
GroupToGroup, ScalarToKey, KeyToKey and KeyToScalar:

- ``ScalarStage``: scalar -> scalar.
- ``KeyStage`` (alias ``ToGroupStage``): scalar -> group; a key function marks each output
  event with a key, and the output is keyed: the transport routes every key to one worker of
  the next stage (runtime.transport, consistent hashing). ``ScalarToKeyStage`` is the same
  for Mantis' older keyed API.
- ``GroupToScalarStage``: group -> scalar; keyed aggregation over tumbling or sliding windows
  by count or by time (``Window``, runtime.windows), or a reactivex pipeline per key, with
  ``key_expiry``; or any function of the (key, event) pairs.
- ``GroupToGroupStage``: group -> group: the same logic, its output keyed again (``key_fn``
  of each output event, or the logic's own ``(key, event)`` pairs): re-keying between two
  keyed stages.
- ``KeyToScalarStage`` / ``KeyToKeyStage``: per key only (``window`` or ``per_key_rx``, Mantis'
  GroupedObservable); KeyToKey keeps each output under its input key unless ``key_fn``
  re-keys it.

Mantis' Group kinds carry (key, event) pairs (MantisGroup), its Key kinds a stream per key
(GroupedObservable); here both travel as keyed frames, and per-key logic gets a stream per key.

User logic is either a reactivex pipeline over an Observable (``rx=lambda obs: obs.pipe(...)``,
or ``lambda obs, ctx: ...`` to get the Context) or a plain function over a batch
(``batch_fn=lambda events: [...]``). reactivex costs about 0.3 us per operator per event
(map->filter->map measured at 3.3 M events/s against 12 M for a plain loop over the same
lambdas); a batch function costs one call per batch, so prefer it on hot paths. A definition is
checked when it is made (``StageDefinitionError``); ``stage.start`` gives the running form the
worker drives (runtime.engines).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from reactivex import Observable
from reactivex import operators as ops
from reactivex.abc import SchedulerBase

from runtime.codec import Codec
from runtime.context import Context
from runtime.engines import (
    Emit,
    Keying,
    PerKeyRxRunning,
    RunningStage,
    StageDefinitionError,
    check_fn,
    scalar_running,
)
from runtime.transport import Backpressure
from runtime.windows import (
    Window,
    WindowedRunning,
    WindowInfo,
    WindowKind,
    count_reduce,
    default_output,
    zero,
)

__all__ = [
    "GroupToGroupStage",
    "GroupToScalarStage",
    "KeyStage",
    "KeyToKeyStage",
    "KeyToScalarStage",
    "ScalarStage",
    "ScalarToKeyStage",
    "Stage",
    "StageConfig",
    "StageDefinitionError",
    "StageKind",
    "ToGroupStage",
    "Window",
    "WindowInfo",
    "WindowKind",
    "count_reduce",
    "default_output",
    "zero",
]


class StageKind(enum.Enum):
    SCALAR_TO_SCALAR = "ScalarToScalar"
    SCALAR_TO_GROUP = "ScalarToGroup"
    GROUP_TO_SCALAR = "GroupToScalar"
    GROUP_TO_GROUP = "GroupToGroup"
    SCALAR_TO_KEY = "ScalarToKey"
    KEY_TO_KEY = "KeyToKey"
    KEY_TO_SCALAR = "KeyToScalar"


KEYED_INPUT = frozenset(
    {
        StageKind.GROUP_TO_SCALAR,
        StageKind.GROUP_TO_GROUP,
        StageKind.KEY_TO_KEY,
        StageKind.KEY_TO_SCALAR,
    }
)
KEYED_OUTPUT = frozenset(
    {
        StageKind.SCALAR_TO_GROUP,
        StageKind.GROUP_TO_GROUP,
        StageKind.SCALAR_TO_KEY,
        StageKind.KEY_TO_KEY,
    }
)


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


class Stage(ABC):
    """A stage of a job: what kind it is, its config, and how to start it."""

    kind: StageKind
    config: StageConfig
    name: str

    @property
    def input_keyed(self) -> bool:
        return self.kind in KEYED_INPUT

    @property
    def output_keyed(self) -> bool:
        return self.kind in KEYED_OUTPUT

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
            check_fn("rx", self.rx, 1)
        if self.batch_fn is not None:
            check_fn("batch_fn", self.batch_fn, 1)
        if self.config.key_expiry is not None:
            raise StageDefinitionError("key_expiry applies to GroupToScalarStage only")

    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        return scalar_running(
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
        check_fn("key_fn", self.key_fn, 1)
        if self.value_fn is not None:
            check_fn("value_fn", self.value_fn, 1)
        _one_of("KeyStage", rx=self.rx, batch_fn=self.batch_fn)
        _validate_common(self)
        if self.rx is not None:
            check_fn("rx", self.rx, 1)
        if self.batch_fn is not None:
            check_fn("batch_fn", self.batch_fn, 1)
        if self.config.codec is not Codec.JSON:
            raise StageDefinitionError("keyed output needs the JSON codec")
        if self.config.key_expiry is not None:
            raise StageDefinitionError("key_expiry applies to GroupToScalarStage only")

    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        assert self.key_fn is not None
        name = self._label(context)
        keying = Keying(name, context, emit, self.key_fn, self.value_fn)
        if self.rx is not None or self.batch_fn is not None:
            keying.inner = scalar_running(
                name + ".fn", context, keying.keyed, self.rx, self.batch_fn, scheduler
            )
        return keying


ToGroupStage = KeyStage


@dataclass(frozen=True)
class ScalarToKeyStage(KeyStage):
    """scalar -> key (Mantis' ScalarToKey): a ``KeyStage`` whose next stage is a Key kind."""

    kind = StageKind.SCALAR_TO_KEY


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
        what = type(self).__name__
        modes = dict(
            window=self.window, per_key_rx=self.per_key_rx, rx=self.rx, batch_fn=self.batch_fn
        )
        _one_of(what, **modes)
        if all(v is None for v in modes.values()):
            raise StageDefinitionError(f"{what} needs one of window, per_key_rx, rx, batch_fn")
        _validate_common(self)
        if self.window is not None and not isinstance(self.window, Window):
            raise StageDefinitionError(f"window must be a Window, got {type(self.window).__name__}")
        check_fn("reduce", self.reduce, 2, context=False)
        check_fn("output", self.output, 3, context=False)
        if not callable(self.initial):
            raise StageDefinitionError("initial must be a function returning a fresh accumulator")
        if self.per_key_rx is not None:
            check_fn("per_key_rx", self.per_key_rx, 2)
        if self.rx is not None:
            check_fn("rx", self.rx, 1)
        if self.batch_fn is not None:
            check_fn("batch_fn", self.batch_fn, 1)
        if self.config.key_expiry is not None and self.window is None and self.per_key_rx is None:
            raise StageDefinitionError("key_expiry needs window or per_key_rx")

    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        return self._running(self._label(context), context, emit, scheduler)

    def _running(
        self,
        name: str,
        context: Context,
        emit: Emit,
        scheduler: SchedulerBase | None,
        output: Callable[[Any, Any, WindowInfo], Any] | None = None,
        per_key_rx: Callable[..., Observable[Any]] | None = None,
    ) -> RunningStage:
        if self.window is not None:
            return WindowedRunning(
                name,
                context,
                emit,
                self.window,
                self.reduce,
                self.initial,
                output or self.output,
                self.config.key_expiry,
            )
        if self.per_key_rx is not None:
            fn = per_key_rx or self.per_key_rx
            return PerKeyRxRunning(
                name,
                context,
                emit,
                fn,
                check_fn("per_key_rx", fn, 2),
                scheduler,
                self.config.key_expiry,
            )
        return scalar_running(name, context, emit, self.rx, self.batch_fn, scheduler)


@dataclass(frozen=True)
class GroupToGroupStage(GroupToScalarStage):
    """group -> group (Mantis' GroupToGroup): the logic of a ``GroupToScalarStage``, its output
    keyed again for the next keyed stage: by ``key_fn(event)``, or, without ``key_fn``, the
    logic emits ``(key, event)`` pairs itself. Keys are JSON values, as for ``KeyStage``."""

    key_fn: Callable[[Any], Any] | None = None
    kind = StageKind.GROUP_TO_GROUP

    def __post_init__(self) -> None:
        super().__post_init__()
        _keyed_output(self, self.key_fn)

    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        name = self._label(context)
        keying = Keying(name, context, emit, self.key_fn, None)
        keying.inner = self._running(name + ".fn", context, keying.keyed, scheduler)
        return keying


@dataclass(frozen=True)
class KeyToScalarStage(GroupToScalarStage):
    """key -> scalar (Mantis' KeyToScalar): per key only, ``window`` or ``per_key_rx``."""

    kind = StageKind.KEY_TO_SCALAR

    def __post_init__(self) -> None:
        super().__post_init__()
        _per_key(self)


@dataclass(frozen=True)
class KeyToKeyStage(GroupToScalarStage):
    """key -> key (Mantis' KeyToKey): per key (``window`` or ``per_key_rx``), each output
    event keyed by its input key, or re-keyed by ``key_fn(event)``."""

    key_fn: Callable[[Any], Any] | None = None
    kind = StageKind.KEY_TO_KEY

    def __post_init__(self) -> None:
        super().__post_init__()
        _per_key(self)
        _keyed_output(self, self.key_fn)

    def start(
        self, context: Context, emit: Emit, scheduler: SchedulerBase | None = None
    ) -> RunningStage:
        name = self._label(context)
        keying = Keying(name, context, emit, self.key_fn, None)
        if self.key_fn is not None:
            keying.inner = self._running(name + ".fn", context, keying.keyed, scheduler)
            return keying
        output, per_key_rx = self.output, self.per_key_rx

        def keep_key(key: Any, acc: Any, info: WindowInfo) -> tuple[Any, Any]:
            return (key, output(key, acc, info))

        def keep_key_rx(key: Any, events: Observable[Any], context: Context) -> Observable[Any]:
            assert per_key_rx is not None
            with_ctx = check_fn("per_key_rx", per_key_rx, 2)
            out = per_key_rx(key, events, context) if with_ctx else per_key_rx(key, events)
            if not isinstance(out, Observable):
                raise TypeError(f"per_key_rx returned {type(out).__name__}, not an Observable")
            return out.pipe(ops.map(lambda e: (key, e)))

        keying.inner = self._running(
            name + ".fn",
            context,
            keying.keyed,
            scheduler,
            output=keep_key,
            per_key_rx=keep_key_rx if per_key_rx is not None else None,
        )
        return keying


def _per_key(stage: GroupToScalarStage) -> None:
    if stage.window is None and stage.per_key_rx is None:
        raise StageDefinitionError(f"{type(stage).__name__} needs window or per_key_rx (per key)")


def _keyed_output(stage: Stage, key_fn: Callable[[Any], Any] | None) -> None:
    if key_fn is not None:
        check_fn("key_fn", key_fn, 1)
    if stage.config.codec is not Codec.JSON:
        raise StageDefinitionError("keyed output needs the JSON codec")


def _validate_common(stage: Stage) -> None:
    if not isinstance(stage.config, StageConfig):
        raise StageDefinitionError(
            f"config must be a StageConfig, got {type(stage.config).__name__}"
        )
    if not isinstance(stage.name, str):
        raise StageDefinitionError(f"name must be a string, got {type(stage.name).__name__}")

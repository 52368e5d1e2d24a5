"""A job: a source, one or more stages and a sink, and the loading of a job artifact.

A job artifact is a Python module or package exposing ``job() -> Job`` (Mantis'
``MantisJobProvider.getJobInstance()``). Build the Job directly::

    Job(source=IterableSource(range(10)), stages=[ScalarStage(batch_fn=f)],
        sink=ServerSentEventsSink(), parameters=[IntParameter("n", default=1)], name="demo")

or fluently (Mantis' ``MantisJob.source(..).stage(..).sink(..)``)::

    Job.from_source(src, name="demo").parameter(p).stage(s1).stage(s2).sink(sink)

Stage n of the job (1-based) runs in the workers of stage n; the first stage's workers also run
the source, the last stage's the sink (as Mantis' WorkerExecutionOperationsNetworkStage lays
them out). ``load_job`` imports an artifact and calls ``job()``; whatever is wrong comes back as
one ``ArtifactError`` whose message the worker puts in the job's status. ``LocalPipeline`` /
``run_local`` run all of a job's stages in one process (tests, examples, local runs).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import orjson
from reactivex.abc import SchedulerBase

from runtime.context import Context, Metrics, WorkerInfo
from runtime.engines import RunningStage
from runtime.parameters import Parameter, ParameterError, check_definitions, resolve_parameters
from runtime.stages import KeyStage, Stage, StageKind
from runtime.transport import Backpressure


class JobDefinitionError(ValueError):
    """A Job is put together wrongly (no stages, a stage of the wrong type or order, ...)."""


class ArtifactError(Exception):
    """A job artifact cannot be loaded; the message says what is wrong, for the job's status."""

    def __init__(self, artifact: str, message: str) -> None:
        super().__init__(f"job artifact {artifact!r}: {message}")
        self.artifact = artifact
        self.message = message


# ---------------------------------------------------------------------------------------------
# sources and sinks


@runtime_checkable
class Source(Protocol):
    """Where a job's events come from: batches of events, asynchronously, until it ends."""

    def batches(self, context: Context) -> AsyncIterator[list[Any]]: ...


@dataclass(frozen=True)
class FunctionSource:
    """A source from a function ``(Context) -> async iterator of batches``."""

    fn: Callable[[Context], AsyncIterator[list[Any]]]

    def batches(self, context: Context) -> AsyncIterator[list[Any]]:
        return self.fn(context)


@dataclass(frozen=True)
class IterableSource:
    """The items of an iterable, in batches of ``batch_size`` (for tests and examples)."""

    items: Iterable[Any]
    batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise JobDefinitionError(f"batch_size must be >= 1, got {self.batch_size}")

    async def batches(self, context: Context) -> AsyncIterator[list[Any]]:
        batch: list[Any] = []
        for item in self.items:
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


@dataclass(frozen=True)
class ServerSentEventsSink:
    """The last stage's output served as SSE on the worker's sink port (common.sse_sink.SseSink,
    Mantis' ``Sinks.sse``); the worker builds the SseSink with these settings.

    Lazy by default, as Mantis' sinks are: the job does no work (its source is not read) until
    the first client connects, and pauses when the last one leaves. ``eager=True`` keeps it
    running without clients (Mantis' ``Sinks.eagerSubscribe``)."""

    backpressure: Backpressure = Backpressure.LOSSY
    buffer_events: int = 65536
    eager: bool = False

    def __post_init__(self) -> None:
        if self.buffer_events < 1:
            raise JobDefinitionError(f"buffer_events must be >= 1, got {self.buffer_events}")


@dataclass(frozen=True)
class FunctionSink:
    """A sink from a function ``(Context, batch) -> None`` (or an awaitable the worker
    awaits): logs, files, tests."""

    fn: Callable[[Context, list[Any]], Awaitable[None] | None]


@dataclass(frozen=True)
class StdoutSink:
    """Each event as one JSON line on the worker's standard output (Mantis' ``Sinks.sysout``),
    which the agent keeps in the task's ``stdout`` file. Always on: it has no subscribers."""

    def write(self, events: list[Any]) -> None:
        out = sys.stdout.buffer
        out.write(b"".join(orjson.dumps(e, default=str) + b"\n" for e in events))
        out.flush()


@dataclass(frozen=True)
class ManySink:
    """Several sinks fed the same output (Mantis' ``Sinks.toMany``); build with ``to_many``.
    At most one ``ServerSentEventsSink`` (a worker has one sink port); the job is lazy only
    if every sink is (a function or stdout sink is always on)."""

    sinks: tuple[ServerSentEventsSink | FunctionSink | StdoutSink, ...]

    def __post_init__(self) -> None:
        if not self.sinks:
            raise JobDefinitionError("to_many needs at least one sink")
        for sink in self.sinks:
            if not isinstance(sink, ServerSentEventsSink | FunctionSink | StdoutSink):
                raise JobDefinitionError(f"to_many takes sinks, got a {_describe(sink)}")
        if sum(isinstance(s, ServerSentEventsSink) for s in self.sinks) > 1:
            raise JobDefinitionError("to_many takes at most one ServerSentEventsSink")


def to_many(*sinks: Sink) -> ManySink:
    """One sink that feeds all of `sinks` (Mantis' ``Sinks.toMany``); nested ones are flattened."""
    flat: list[ServerSentEventsSink | FunctionSink | StdoutSink] = []
    for sink in sinks:
        flat.extend(sink.sinks if isinstance(sink, ManySink) else (sink,))
    return ManySink(tuple(flat))


Sink = ServerSentEventsSink | FunctionSink | StdoutSink | ManySink


# ---------------------------------------------------------------------------------------------
# the job


def _describe(x: object) -> str:
    return type(x).__name__


@dataclass(frozen=True)
class Job:
    """A source, stages (at least one) and a sink, with the job's parameter definitions.

    Checked when built: every stage is a Stage, a stage with keyed output (KeyStage,
    GroupToGroupStage, ...) is followed by one with keyed input (GroupToScalarStage,
    GroupToGroupStage, KeyToKeyStage, KeyToScalarStage) and only such a one is, stage 1 does
    not take keyed input, the last stage does not output keys.
    """

    source: Source
    stages: Sequence[Stage]
    """Stored as a tuple; stage n (1-based) is ``stages[n - 1]``, or ``job.stage(n)``."""
    sink: Sink
    parameters: Sequence[Parameter[Any]] = ()
    name: str = ""

    def __post_init__(self) -> None:
        source: object = self.source  # anything may come from user code
        if callable(source) and not isinstance(source, Source):
            object.__setattr__(self, "source", FunctionSource(source))
        elif not isinstance(source, Source):
            raise JobDefinitionError(
                f"source is a {_describe(self.source)}: expected an object with "
                "batches(context), or a function (Context) -> async iterator of batches"
            )
        if isinstance(self.stages, Stage) or not isinstance(self.stages, Iterable):
            raise JobDefinitionError(
                f"stages must be a list of stages, got {_describe(self.stages)}"
            )
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise JobDefinitionError("a job needs at least one stage")
        for n, stage in enumerate(stages, 1):
            if not isinstance(stage, Stage):
                raise JobDefinitionError(
                    f"stage {n} is a {_describe(stage)}, expected a stage of runtime.stages "
                    "(ScalarStage, KeyStage, GroupToScalarStage, GroupToGroupStage, ...)"
                )
        for n, (a, b) in enumerate(zip(stages, stages[1:], strict=False), 1):
            if a.output_keyed and not b.input_keyed:
                raise JobDefinitionError(
                    f"stage {n} outputs keys ({_describe(a)}), so stage {n + 1} must take "
                    f"keys (GroupToScalarStage, GroupToGroupStage, ...), not a {_describe(b)}"
                )
            if b.input_keyed and not a.output_keyed:
                raise JobDefinitionError(
                    f"stage {n + 1} takes keys ({_describe(b)}), so stage {n} must output "
                    f"keys (KeyStage, GroupToGroupStage, ...), not a {_describe(a)}"
                )
        if stages[0].input_keyed:
            raise JobDefinitionError(
                f"stage 1 reads the source, so it cannot take keys ({_describe(stages[0])})"
            )
        if stages[-1].output_keyed:
            raise JobDefinitionError(
                f"the last stage (stage {len(stages)}) outputs keys; end with a "
                "GroupToScalarStage or KeyToScalarStage before the sink"
            )
        sink: object = self.sink
        if not isinstance(sink, ServerSentEventsSink | FunctionSink | StdoutSink | ManySink):
            raise JobDefinitionError(
                f"sink is a {_describe(self.sink)}, expected a ServerSentEventsSink, "
                "FunctionSink, StdoutSink or to_many(...)"
            )
        try:
            object.__setattr__(self, "parameters", check_definitions(self.parameters))
        except ParameterError as e:
            raise JobDefinitionError(str(e)) from e
        name: object = self.name
        if not isinstance(name, str):
            raise JobDefinitionError(f"name must be a string, got {_describe(name)}")

    @staticmethod
    def from_source(
        source: Source | Callable[[Context], AsyncIterator[list[Any]]], name: str = ""
    ) -> JobBuilder:
        """Start a fluent definition: ``Job.from_source(src).stage(s).sink(sink)``."""
        return JobBuilder(source=source, name=name)

    @property
    def stage_count(self) -> int:
        return len(self.stages)

    def stage(self, number: int) -> Stage:
        """Stage `number`, 1-based as in Mantis."""
        if not 1 <= number <= len(self.stages):
            raise IndexError(f"stage {number}: the job has stages 1..{len(self.stages)}")
        return self.stages[number - 1]

    def kinds(self) -> list[StageKind]:
        return [s.kind for s in self.stages]

    def resolve_parameters(self, given: Mapping[str, object]) -> dict[str, object]:
        """This job's parameters resolved from the given values (runtime.parameters)."""
        return resolve_parameters(self.parameters, given)


@dataclass
class JobBuilder:
    """Fluent construction of a Job; ``sink(...)`` finishes it."""

    source: Source | Callable[[Context], AsyncIterator[list[Any]]]
    name: str = ""
    stages: list[Stage] = field(default_factory=list)
    parameters: list[Parameter[Any]] = field(default_factory=list)

    def stage(self, stage: Stage) -> JobBuilder:
        self.stages.append(stage)
        return self

    def key_by(self, key_fn: Callable[[Any], Any], **kwargs: Any) -> JobBuilder:
        """Shorthand for ``.stage(KeyStage(key_fn=key_fn, **kwargs))``."""
        return self.stage(KeyStage(key_fn=key_fn, **kwargs))

    def parameter(self, *parameters: Parameter[Any]) -> JobBuilder:
        self.parameters.extend(parameters)
        return self

    def sink(self, sink: Sink) -> Job:
        return Job(
            source=self.source,  # type: ignore[arg-type]  # Job wraps a function source
            stages=tuple(self.stages),
            sink=sink,
            parameters=tuple(self.parameters),
            name=self.name,
        )


# ---------------------------------------------------------------------------------------------
# loading an artifact


def _summary(e: BaseException, limit: int = 3) -> str:
    """``Type: message`` and the last frames outside importlib, e.g. ``(at job.py:3 in <module>)``."""
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if "importlib" not in f.filename
        and not f.filename.startswith("<frozen")
        and f.filename != __file__
    ]
    where = ", ".join(
        f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in frames[-limit:]
    )
    if isinstance(e, SyntaxError) and e.filename:
        where = f"{os.path.basename(e.filename)}:{e.lineno}"
    head = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()
    text = head[-1] if not isinstance(e, SyntaxError) else f"SyntaxError: {e.msg}"
    return f"{text} (at {where})" if where else text


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec or os.path.isdir(spec)


def _import_path(spec: str) -> ModuleType:
    path = Path(spec).resolve()
    if path.is_dir():
        init = path / "__init__.py"
        if not init.is_file():
            raise FileNotFoundError(f"{path} is a directory without __init__.py")
        location, search = init, [str(path)]
    elif path.is_file():
        location, search = path, None
    else:
        raise FileNotFoundError(f"no such file or directory: {path}")
    # A name of its own per path, so that loading never picks up (or clobbers) another module.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"_mantis_artifact_{path.stem.replace('-', '_')}_{digest}"
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]
    module_spec = importlib.util.spec_from_file_location(
        name, location, submodule_search_locations=search
    )
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_job(artifact: str | os.PathLike[str]) -> Job:
    """Import a job artifact (a module name, a ``.py`` file or a package directory) and
    return its ``job()``; ArtifactError with a clear message if anything is wrong."""
    spec = os.fspath(artifact)
    try:
        module = _import_path(spec) if _is_path(spec) else importlib.import_module(spec)
    except Exception as e:
        raise ArtifactError(spec, f"cannot import: {_summary(e)}") from e
    fn = getattr(module, "job", None)
    if fn is None:
        raise ArtifactError(spec, "defines no job() function")
    if not callable(fn):
        raise ArtifactError(spec, f"job is a {_describe(fn)}, not a function")
    try:
        result = fn()
    except JobDefinitionError as e:
        raise ArtifactError(spec, f"invalid job: {e}") from e
    except Exception as e:
        raise ArtifactError(spec, f"job() raised {_summary(e)}") from e
    if not isinstance(result, Job):
        raise ArtifactError(
            spec, f"job() returned a {_describe(result)}, expected a runtime.job.Job"
        )
    return result


# ---------------------------------------------------------------------------------------------
# in one process


class LocalPipeline:
    """All of a job's stages in one process, one instance per stage, wired output to input.

    For tests, examples and local runs; the worker runs one stage per process instead. The
    output of the last stage is collected in ``output`` (the sink is not used). Time is given,
    as to a running stage: ``on_batch(events, now)``, ``on_tick(now)``, ``close()``.
    """

    def __init__(
        self,
        job: Job,
        given: Mapping[str, object] | None = None,
        scheduler: SchedulerBase | None = None,
    ) -> None:
        self.job = job
        parameters = job.resolve_parameters(given or {})
        self.metrics = Metrics()
        self.contexts = [
            Context(
                parameters=parameters,
                worker=WorkerInfo(job.name or "local", "local-1", n, 0, 1, 1, job.stage_count),
                metrics=self.metrics,
            )
            for n in range(1, job.stage_count + 1)
        ]
        self.context = self.contexts[0]
        """Stage 1's context, which the source gets."""
        self.output: list[Any] = []
        self.now = 0.0
        self.running: list[RunningStage] = []
        emit: Callable[[list[Any]], None] = self.output.extend
        for n in range(job.stage_count, 0, -1):
            running = job.stage(n).start(self.contexts[n - 1], emit, scheduler)
            self.running.insert(0, running)
            emit = self._forward(running)

    def _forward(self, downstream: RunningStage) -> Callable[[list[Any]], None]:
        return lambda events: downstream.on_batch(events, self.now)

    def on_batch(self, events: Sequence[Any], now: float | None = None) -> None:
        if now is not None and now > self.now:
            self.now = now
        self.running[0].on_batch(events, self.now)

    def on_tick(self, now: float) -> None:
        """Tick every stage, upstream first (what it emits reaches downstream first)."""
        if now > self.now:
            self.now = now
        for r in self.running:
            r.on_tick(self.now)

    @property
    def next_deadline(self) -> float | None:
        deadlines = [d for r in self.running if (d := r.next_deadline) is not None]
        return min(deadlines) if deadlines else None

    def close(self) -> list[Any]:
        """Close every stage, upstream first; returns the output."""
        for r in self.running:
            r.close()
        return self.output


async def run_local(job: Job, given: Mapping[str, object] | None = None) -> list[Any]:
    """Run a job's source through all its stages in this process, ticking time windows with
    the loop's clock; returns what reached the sink."""
    loop = asyncio.get_running_loop()
    pipeline = LocalPipeline(job, given)
    async for batch in job.source.batches(pipeline.context):
        now = loop.time()
        deadline = pipeline.next_deadline
        if deadline is not None and deadline <= now:
            pipeline.on_tick(now)
        pipeline.on_batch(batch, now)
    return pipeline.close()

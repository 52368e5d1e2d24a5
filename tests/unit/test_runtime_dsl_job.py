"""The job DSL's Job, parameters, Context, and loading job artifacts."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runtime.context import (
    Context,
    Metrics,
    WorkerHost,
    WorkerInfo,
    worker_map_from_scheduling_info,
)
from runtime.job import (
    ArtifactError,
    FunctionSink,
    FunctionSource,
    IterableSource,
    Job,
    JobDefinitionError,
    LocalPipeline,
    ServerSentEventsSink,
    load_job,
    run_local,
)
from runtime.parameters import (
    BoolParameter,
    EnumParameter,
    FloatParameter,
    IntParameter,
    ParameterError,
    StringParameter,
    resolve_parameters,
)
from runtime.stages import GroupToScalarStage, KeyStage, ScalarStage, StageKind, Window

# parameters ----------------------------------------------------------------------------------------

DEFS = [
    IntParameter("rate", default=100, minimum=1, description="events per second"),
    FloatParameter("ratio", default=0.5, minimum=0, maximum=1),
    StringParameter("prefix", default="ev"),
    BoolParameter("debug", default=False),
    EnumParameter("mode", choices=("fast", "safe"), default="fast"),
    StringParameter("target", required=True),
]


def test_defaults_fill_in_and_strings_are_parsed() -> None:
    got = resolve_parameters(DEFS, {"target": "t", "rate": " 7 ", "debug": "TRUE", "ratio": "1"})
    assert got == {
        "rate": 7,
        "ratio": 1.0,
        "prefix": "ev",
        "debug": True,
        "mode": "fast",
        "target": "t",
    }


def test_typed_values_are_accepted_as_they_are() -> None:
    got = resolve_parameters(DEFS, {"target": "t", "rate": 3, "ratio": 0, "debug": True})
    assert (got["rate"], got["ratio"], got["debug"]) == (3, 0.0, True)


@pytest.mark.parametrize(
    ("given", "name", "message"),
    [
        ({}, "target", "is required but was not given"),
        ({"target": "t", "rate": "fast"}, "rate", "expected an integer, got 'fast'"),
        ({"target": "t", "rate": "0"}, "rate", "0 is below the minimum 1"),
        ({"target": "t", "rate": 2.5}, "rate", "expected an integer, got float 2.5"),
        ({"target": "t", "rate": True}, "rate", "expected an integer, got bool"),
        ({"target": "t", "ratio": "2"}, "ratio", "above the maximum 1"),
        ({"target": "t", "ratio": "nan"}, "ratio", "finite"),
        ({"target": "t", "debug": "maybe"}, "debug", "expected true or false, got 'maybe'"),
        ({"target": "t", "mode": "slow"}, "mode", "expected one of fast, safe; got 'slow'"),
        ({"target": "t", "speed": "1"}, "speed", "is not a parameter of this job"),
        ({"target": 5}, "target", "expected a string, got int 5"),
    ],
)
def test_bad_values_name_the_parameter(given: dict[str, Any], name: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message) as e:
        resolve_parameters(DEFS, given)
    assert e.value.name == name
    assert str(e.value).startswith(f"parameter {name!r}: ")


def test_validators_say_why() -> None:
    even = IntParameter("n", default=2, validator=lambda v: None if v % 2 == 0 else "must be even")
    assert resolve_parameters([even], {"n": "4"}) == {"n": 4}
    with pytest.raises(ParameterError, match=r"parameter 'n': invalid value 3: must be even"):
        resolve_parameters([even], {"n": "3"})
    falsy = StringParameter("s", validator=lambda v: v.isalpha())
    with pytest.raises(ParameterError, match=r"parameter 's': invalid value 'a1'"):
        resolve_parameters([falsy], {"s": "a1"})


def test_system_parameters_pass_and_unknown_ones_can_be_allowed() -> None:
    got = resolve_parameters([IntParameter("n", default=1)], {"mantis.sla.min": "1"})
    assert got == {"n": 1, "mantis.sla.min": "1"}
    got = resolve_parameters([], {"other": "x"}, allow_unknown=True)
    assert got == {"other": "x"}


def test_bad_definitions_are_rejected() -> None:
    with pytest.raises(ParameterError, match="cannot have a default"):
        IntParameter("n", default=1, required=True)
    with pytest.raises(ParameterError, match=r"parameter 'n': 0 is below the minimum 1"):
        IntParameter("n", default=0, minimum=1)
    with pytest.raises(ParameterError, match="needs choices"):
        EnumParameter("e")
    with pytest.raises(ParameterError, match="defined twice"):
        resolve_parameters([IntParameter("n"), IntParameter("n")], {})


def test_an_optional_parameter_without_default_resolves_to_none() -> None:
    assert resolve_parameters([IntParameter("n")], {}) == {"n": None}


# context --------------------------------------------------------------------------------------------


def test_context_parameters_and_worker_info() -> None:
    info = WorkerInfo(
        "demo", "demo-3", stage=2, worker_index=1, worker_number=7, total_workers=4, total_stages=2
    )
    ctx = Context(parameters={"n": 3}, worker=info)
    assert ctx.param("n", int) == 3
    with pytest.raises(TypeError, match="parameter 'n' is a int, not str"):
        ctx.param("n", str)
    assert info.slot == "stage_2_index_1" and info.is_last_stage and not info.is_first_stage


def test_metrics_snapshot_for_heartbeats() -> None:
    m = Metrics()
    sent = m.counter("sent")
    sent.inc()
    sent.inc(4)
    assert m.counter("sent") is sent
    m.gauge("keys").set(3)
    m.gauge("lag").inc(2.5)
    m.gauge("lag").dec()
    assert m.snapshot() == {"keys": 3, "lag": 1.5, "sent": 5}
    with pytest.raises(ValueError, match="is a counter"):
        m.gauge("sent")


SCHED_INFO = {
    "jobId": "demo-3",
    "workerAssignments": {
        "1": {
            "stage": 1,
            "numWorkers": 2,
            "hosts": {
                "12": {
                    "host": "h2",
                    "port": [7002],
                    "workerIndex": 1,
                    "state": "Started",
                    "workerNumber": 12,
                },
                "11": {
                    "host": "h1",
                    "port": [7001],
                    "workerIndex": 0,
                    "state": "Started",
                    "workerNumber": 11,
                    "metricsPort": 9001,
                },
                "13": {
                    "host": "h3",
                    "port": [7003],
                    "workerIndex": 2,
                    "state": "Launched",
                    "workerNumber": 13,
                },
            },
        },
        "2": {"stage": 2, "numWorkers": 1, "hosts": {}},
    },
}


def test_worker_map_from_scheduling_info_keeps_started_workers() -> None:
    wm = worker_map_from_scheduling_info(SCHED_INFO)
    assert wm == {
        1: (WorkerHost("h1", 7001, 0, 11, metrics_port=9001), WorkerHost("h2", 7002, 1, 12)),
        2: (),
    }
    with pytest.raises(ValueError, match="malformed scheduling info"):
        worker_map_from_scheduling_info(
            {"workerAssignments": {"1": {"hosts": {"1": {"port": [1]}}}}}
        )


def test_worker_map_subscription() -> None:
    ctx = Context()
    seen: list[Any] = []
    unsubscribe = ctx.subscribe_worker_map(seen.append)
    assert seen == [{}]  # replayed at once
    wm = worker_map_from_scheduling_info(SCHED_INFO)
    assert ctx.update_worker_map(wm)
    assert not ctx.update_worker_map(dict(wm))  # no change, no call
    assert seen == [{}, wm] and ctx.workers_of(1)[0].host == "h1" and ctx.workers_of(9) == ()
    unsubscribe()
    ctx.update_worker_map({})
    assert len(seen) == 2


def test_a_failing_listener_does_not_stop_the_others() -> None:
    ctx = Context()
    seen: list[Any] = []

    def boom(_: Any) -> None:
        raise RuntimeError("boom")

    ctx.subscribe_worker_map(boom, replay=False)
    ctx.subscribe_worker_map(seen.append, replay=False)
    ctx.update_worker_map({1: ()})
    assert seen == [{1: ()}]


def test_complete_and_exit_tells_the_worker() -> None:
    calls: list[bool] = []
    ctx = Context(on_complete=lambda: calls.append(True))
    ctx.complete_and_exit()
    assert ctx.completed and calls == [True]


# jobs ------------------------------------------------------------------------------------------------


def three_stages() -> list[Any]:
    return [
        ScalarStage(batch_fn=lambda es: [e for e in es if e % 2]),
        KeyStage(key_fn=lambda e: e % 3),
        GroupToScalarStage(window=Window.tumbling_count(2)),
    ]


def test_job_built_directly_and_fluently_are_equal() -> None:
    src = IterableSource([1, 2, 3])
    stages = three_stages()
    sink = ServerSentEventsSink()
    p = IntParameter("n", default=1)
    direct = Job(source=src, stages=tuple(stages), sink=sink, parameters=(p,), name="demo")
    fluent = Job.from_source(src, name="demo").parameter(p)
    for s in stages:
        fluent = fluent.stage(s)
    built = fluent.sink(sink)
    assert built == direct
    assert built.stage_count == 3 and built.stage(2) is stages[1]
    assert built.kinds() == [
        StageKind.SCALAR_TO_SCALAR,
        StageKind.SCALAR_TO_GROUP,
        StageKind.GROUP_TO_SCALAR,
    ]
    assert built.resolve_parameters({"n": "2"}) == {"n": 2}
    with pytest.raises(IndexError):
        built.stage(0)


async def test_key_by_shorthand_and_function_source() -> None:
    async def gen(ctx: Context) -> AsyncIterator[list[Any]]:
        yield [ctx.param("n", int)]

    job = (
        Job.from_source(gen)
        .key_by(lambda e: e)
        .stage(GroupToScalarStage(batch_fn=lambda ps: ps))
        .sink(FunctionSink(lambda ctx, batch: None))
    )
    assert isinstance(job.source, FunctionSource)
    assert isinstance(job.stage(1), KeyStage)

    async def collect() -> list[list[Any]]:
        return [b async for b in job.source.batches(Context(parameters={"n": 5}))]

    assert await collect() == [[5]]


async def test_iterable_source_batches() -> None:
    async def collect() -> list[list[int]]:
        return [b async for b in IterableSource(range(5), batch_size=2).batches(Context())]

    assert await collect() == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stages": []}, "at least one stage"),
        (
            {"stages": ["map"]},
            "stage 1 is a str, expected a stage of runtime.stages",
        ),
        ({"stages": [KeyStage(key_fn=str)]}, r"the last stage \(stage 1\) outputs keys"),
        (
            {"stages": [KeyStage(key_fn=str), ScalarStage()]},
            r"stage 2 must take keys \(GroupToScalarStage, GroupToGroupStage, ...\), not a ScalarStage",
        ),
        (
            {"stages": [ScalarStage(), GroupToScalarStage(batch_fn=list)]},
            r"stage 1 must output keys \(KeyStage, GroupToGroupStage, ...\), not a ScalarStage",
        ),
        ({"stages": [GroupToScalarStage(batch_fn=list)]}, "stage 1 reads the source"),
        ({"source": 42}, "source is a int"),
        (
            {"sink": "stdout"},
            "sink is a str, expected a ServerSentEventsSink, FunctionSink, StdoutSink or to_many",
        ),
        ({"parameters": [IntParameter("n"), IntParameter("n")]}, "defined twice"),
        ({"parameters": ["n"]}, "not a Parameter"),
        ({"stages": ScalarStage()}, "stages must be a list"),
    ],
)
def test_bad_jobs_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "source": IterableSource([]),
        "stages": [ScalarStage()],
        "sink": ServerSentEventsSink(),
    }
    with pytest.raises(JobDefinitionError, match=message):
        Job(**{**base, **kwargs})


# loading artifacts -----------------------------------------------------------------------------------

GOOD = """
from runtime.job import IterableSource, Job, ServerSentEventsSink
from runtime.parameters import IntParameter
from runtime.stages import ScalarStage

from {rel}helper import double

def job():
    return (
        Job.from_source(IterableSource(range(3)), name="good")
        .parameter(IntParameter("n", default=1))
        .stage(ScalarStage(batch_fn=double))
        .sink(ServerSentEventsSink())
    )
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_load_a_module_file(tmp_path: Path) -> None:
    write(tmp_path / "helper.py", "def double(es):\n    return [e * 2 for e in es]\n")
    f = write(
        tmp_path / "solo.py",
        GOOD.replace("from {rel}helper import double", "double = lambda es: [e * 2 for e in es]"),
    )
    job = load_job(f)
    assert job.name == "good" and job.stage_count == 1
    out: list[Any] = []
    job.stage(1).start(Context(), out.extend).on_batch([1, 2])
    assert out == [2, 4]


def test_load_a_package_directory_with_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "my-job"
    write(pkg / "helper.py", "def double(es):\n    return [e * 2 for e in es]\n")
    write(pkg / "__init__.py", GOOD.replace("{rel}", "."))
    job = load_job(str(pkg))
    assert job.name == "good"
    again = load_job(pkg)  # imported afresh: a new artifact version at the same path is seen
    assert again.name == "good" and again.stage(1) is not job.stage(1)


def test_load_by_module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "named_job_artifact" / "__init__.py",
        GOOD.replace("from {rel}helper import double", "double = list"),
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_job("named_job_artifact").name == "good"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import not_a_module_anywhere\n",
            r"cannot import: ModuleNotFoundError: No module named 'not_a_module_anywhere' \(at bad\.py:1 in <module>\)",
        ),
        ("def job(:\n", r"cannot import: SyntaxError: .* \(at bad\.py:1\)"),
        (
            "x = 1\n\ndef f():\n    raise ValueError('no config')\n\nf()\n",
            r"cannot import: ValueError: no config \(at bad\.py:6 in <module>, bad\.py:4 in f\)",
        ),
        ("x = 1\n", r"defines no job\(\) function"),
        ("job = 3\n", "job is a int, not a function"),
        (
            "def job():\n    return {'source': 1}\n",
            r"job\(\) returned a dict, expected a runtime\.job\.Job",
        ),
        (
            "def job():\n    raise RuntimeError('boom')\n",
            r"job\(\) raised RuntimeError: boom \(at bad\.py:2 in job\)",
        ),
        (
            "from runtime.job import Job, IterableSource, ServerSentEventsSink\n"
            "def job():\n    return Job(source=IterableSource([]), stages=[lambda e: e], sink=ServerSentEventsSink())\n",
            r"invalid job: stage 1 is a function, expected a stage of runtime.stages",
        ),
    ],
)
def test_bad_artifacts_give_a_clear_message(tmp_path: Path, source: str, message: str) -> None:
    f = write(tmp_path / "bad.py", source)
    with pytest.raises(ArtifactError, match=message) as e:
        load_job(f)
    assert str(e.value).startswith(f"job artifact {str(f)!r}: ")


def test_missing_artifacts(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file or directory"):
        load_job(tmp_path / "nope.py")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="directory without __init__.py"):
        load_job(tmp_path / "empty")
    with pytest.raises(ArtifactError, match="No module named 'no_such_job_module'"):
        load_job("no_such_job_module")


# in one process --------------------------------------------------------------------------------------


def keyed_count_job() -> Job:
    return (
        Job.from_source(IterableSource(range(10), batch_size=4), name="count")
        .parameter(IntParameter("mod", default=3))
        .stage(ScalarStage(batch_fn=lambda es, ctx: [e % ctx.param("mod", int) for e in es]))
        .key_by(lambda e: f"k{e}")
        .stage(
            GroupToScalarStage(window=Window.tumbling_time(1.0), output=lambda k, acc, i: (k, acc))
        )
        .sink(ServerSentEventsSink())
    )


def test_local_pipeline_wires_stages_in_virtual_time() -> None:
    pipe = LocalPipeline(keyed_count_job(), {"mod": "2"})
    pipe.on_batch([0, 1, 2], now=0.1)
    pipe.on_batch([3], now=0.5)
    assert pipe.next_deadline == 1.0 and pipe.output == []
    pipe.on_tick(1.0)
    assert pipe.output == [("k0", 2), ("k1", 2)]
    pipe.on_batch([5], now=1.2)
    assert pipe.close()[2:] == [("k1", 1)]  # close flushes the open window
    snap = pipe.metrics.snapshot()
    assert snap["stage.1.events_in"] == 5 and snap["stage.2.events_out"] == 5
    assert snap["stage.3.events_out"] == 3


async def test_run_local_runs_the_source_through_every_stage() -> None:
    out = await run_local(keyed_count_job())
    assert sorted(out) == [("k0", 4), ("k1", 3), ("k2", 3)]
    with pytest.raises(ParameterError, match="parameter 'mod': expected an integer"):
        await run_local(keyed_count_job(), {"mod": "x"})

"""The keyed -> keyed stage kinds in one process (LocalPipeline): what each emits, how it keys
its output, and the definitions they refuse."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex.operators as ops

from runtime.codec import Codec
from runtime.job import IterableSource, Job, JobDefinitionError, LocalPipeline, ServerSentEventsSink
from runtime.parameters import ParameterError, stage_concurrency
from runtime.stages import (
    GroupToGroupStage,
    GroupToScalarStage,
    KeyStage,
    KeyToKeyStage,
    KeyToScalarStage,
    ScalarStage,
    ScalarToKeyStage,
    StageConfig,
    StageDefinitionError,
    StageKind,
    Window,
)


def pipeline(*stages: Any) -> LocalPipeline:
    return LocalPipeline(Job(IterableSource([]), stages, ServerSentEventsSink()))


def test_group_to_group_re_keys_by_key_fn_or_by_the_pairs_its_logic_emits() -> None:
    by_fn = pipeline(
        KeyStage(key_fn=lambda e: e["user"]),
        GroupToGroupStage(batch_fn=lambda pairs: [e for _, e in pairs], key_fn=lambda e: e["r"]),
        GroupToScalarStage(batch_fn=lambda pairs: [(k, e["user"]) for k, e in pairs]),
    )
    by_fn.on_batch([{"user": "a", "r": "east"}, {"user": "b", "r": "west"}])
    assert by_fn.output == [("east", "a"), ("west", "b")]

    by_pairs = pipeline(
        KeyStage(key_fn=lambda e: e),
        GroupToGroupStage(batch_fn=lambda pairs: [(f"{k}!", 1) for k, _ in pairs]),
        GroupToScalarStage(batch_fn=lambda pairs: [list(p) for p in pairs]),
    )
    by_pairs.on_batch(["x", "y"])
    assert by_pairs.output == [["x!", 1], ["y!", 1]]


def test_group_to_group_with_time_windows_is_ticked() -> None:
    p = pipeline(
        KeyStage(key_fn=lambda e: e),
        GroupToGroupStage(window=Window.tumbling_time(1.0), key_fn=lambda w: w["value"]),
        GroupToScalarStage(batch_fn=lambda pairs: [list(p) for p in pairs]),
    )
    p.on_batch(["a", "a", "b"], now=0.5)
    assert p.next_deadline == 1.0
    p.on_tick(1.0)
    assert sorted((k, w["key"]) for k, w in p.output) == [(1, "b"), (2, "a")]


def test_key_to_key_keeps_each_output_under_its_key_and_key_to_scalar_ends_it() -> None:
    p = pipeline(
        ScalarToKeyStage(key_fn=lambda e: e % 3),
        KeyToKeyStage(per_key_rx=lambda key, events: events.pipe(ops.map(lambda e: e * 10))),
        KeyToScalarStage(window=Window.tumbling_count(2), output=lambda k, n, info: (k, n)),
    )
    p.on_batch(list(range(9)))
    assert sorted(p.output) == [(0, 2), (1, 2), (2, 2)]
    assert sorted(p.close()) == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]

    windows = pipeline(
        KeyStage(key_fn=lambda e: e["k"]),
        KeyToKeyStage(window=Window.tumbling_count(2), output=lambda k, n, info: {"n": n}),
        GroupToScalarStage(batch_fn=lambda pairs: [list(p) for p in pairs]),
    )
    windows.on_batch([{"k": "a"}, {"k": "b"}, {"k": "a"}])
    assert windows.output == [["a", {"n": 2}]]


def test_kinds_and_what_they_refuse() -> None:
    assert ScalarToKeyStage(key_fn=str).kind is StageKind.SCALAR_TO_KEY
    g2g = GroupToGroupStage(batch_fn=list)
    assert (g2g.kind, g2g.input_keyed, g2g.output_keyed) == (StageKind.GROUP_TO_GROUP, True, True)
    k2s = KeyToScalarStage(window=Window.tumbling_count(2))
    assert (k2s.input_keyed, k2s.output_keyed) == (True, False)
    with pytest.raises(StageDefinitionError, match="KeyToScalarStage needs window or per_key_rx"):
        KeyToScalarStage(batch_fn=list)
    with pytest.raises(StageDefinitionError, match="KeyToKeyStage needs window or per_key_rx"):
        KeyToKeyStage(rx=lambda obs: obs)
    with pytest.raises(StageDefinitionError, match="keyed output needs the JSON codec"):
        GroupToGroupStage(batch_fn=list, config=StageConfig(codec=Codec.BYTES))
    with pytest.raises(JobDefinitionError, match="stage 3 takes keys"):
        pipeline(KeyStage(key_fn=str), GroupToScalarStage(batch_fn=list), g2g)
    with pytest.raises(JobDefinitionError, match=r"the last stage \(stage 2\) outputs keys"):
        pipeline(KeyStage(key_fn=str), g2g)
    pipeline(
        ScalarStage(),
        KeyStage(key_fn=str),
        g2g,
        KeyToKeyStage(window=Window.tumbling_count(1)),
        k2s,
    )


@pytest.mark.parametrize(
    ("given", "configured", "expected"),
    [
        ({}, 3, 3),
        ({"mantis.stageConcurrency": "-1"}, 3, 3),
        ({"mantis.stageConcurrency": "4"}, 1, 4),
    ],
)
def test_stage_concurrency_overrides_the_stage_config(
    given: dict[str, object], configured: int, expected: int
) -> None:
    assert stage_concurrency(given, configured) == expected


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_stage_concurrency_must_be_minus_one_or_positive(bad: str) -> None:
    with pytest.raises(ParameterError, match="mantis.stageConcurrency"):
        stage_concurrency({"mantis.stageConcurrency": bad}, 1)

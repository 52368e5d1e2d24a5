"""The job DSL's stage kinds, driven as the worker drives them: batches, ticks, close."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
import reactivex.operators as ops
from hypothesis import given
from hypothesis import strategies as st
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler

from runtime.context import Context
from runtime.engines import RunningStage, StageError
from runtime.stages import (
    GroupToScalarStage,
    KeyStage,
    ScalarStage,
    StageConfig,
    StageDefinitionError,
    ToGroupStage,
    Window,
    WindowInfo,
)

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed


def run(
    stage: Any, *batches: list[Any], ctx: Context | None = None
) -> tuple[RunningStage, list[Any]]:
    out: list[Any] = []
    running = stage.start(ctx or Context(), out.extend)
    for b in batches:
        running.on_batch(b)
    return running, out


# scalar -> scalar ---------------------------------------------------------------------------------


def test_scalar_batch_fn_maps_whole_batches() -> None:
    calls: list[list[int]] = []

    def double_evens(events: list[int]) -> list[int]:
        calls.append(events)
        return [e * 2 for e in events if e % 2 == 0]

    _, out = run(ScalarStage(batch_fn=double_evens), [1, 2, 3, 4], [6])
    assert out == [4, 8, 12]
    assert calls == [[1, 2, 3, 4], [6]]  # one call per batch


def test_scalar_rx_pipeline_emits_one_list_per_batch() -> None:
    emitted: list[list[int]] = []
    stage = ScalarStage(
        rx=lambda obs: obs.pipe(ops.map(lambda x: x + 1), ops.filter(lambda x: x > 2))
    )
    running = stage.start(Context(), emitted.append)
    running.on_batch([1, 2, 3])
    running.on_batch([0])  # nothing passes: nothing emitted
    assert emitted == [[3, 4]]


def test_stage_functions_may_take_the_context() -> None:
    ctx = Context(parameters={"factor": 10})
    stage = ScalarStage(batch_fn=lambda events, c: [e * c.param("factor", int) for e in events])
    _, out = run(stage, [1, 2], ctx=ctx)
    assert out == [10, 20]
    rx_stage = ScalarStage(
        rx=lambda obs, c: obs.pipe(ops.map(lambda e: e + c.param("factor", int)))
    )
    _, out = run(rx_stage, [1], ctx=ctx)
    assert out == [11]


def test_a_stage_with_no_function_passes_events_through() -> None:
    _, out = run(ScalarStage(), [1, 2], [3])
    assert out == [1, 2, 3]


def test_metrics_count_events_in_and_out() -> None:
    ctx = Context()
    run(ScalarStage(batch_fn=lambda es: es[:1], name="s"), [1, 2, 3], [4], ctx=ctx)
    assert ctx.metrics.snapshot() == {"stage.s.events_in": 4, "stage.s.events_out": 2}


def test_rx_time_operators_run_in_virtual_time() -> None:
    # buffer_with_time(100) uses the scheduler passed to start(): ticks, not wall-clock time.
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, 1), on_next(220, 2), on_next(320, 3), on_next(420, 4), on_completed(450)
    )
    stage = ScalarStage(rx=lambda obs: obs.pipe(ops.buffer_with_time(100.0)))

    def create() -> Observable[Any]:
        def subscribe(observer: Any, _scheduler: Any = None) -> Any:
            running = stage.start(
                Context(), lambda batch: [observer.on_next(e) for e in batch], scheduler
            )
            return source.subscribe(
                lambda e: running.on_batch([e]),
                observer.on_error,
                lambda: (running.close(), observer.on_completed()),
            )

        return Observable(subscribe)

    results = scheduler.start(create)  # subscribed at 200
    assert results.messages == [
        on_next(300, [1, 2]),
        on_next(400, [3]),
        on_next(450, [4]),  # close(): the open buffer is flushed, as Rx does on completion
        on_completed(450),
    ]


def test_rx_output_from_timers_between_batches_is_emitted_at_once() -> None:
    scheduler = TestScheduler()
    seen: list[tuple[float, list[Any]]] = []
    stage = ScalarStage(rx=lambda obs: obs.pipe(ops.delay(5.0)))
    running = stage.start(Context(), lambda b: seen.append((scheduler.clock, b)), scheduler)
    scheduler.schedule_absolute(10, lambda *_: running.on_batch(["a", "b"]))
    scheduler.advance_to(20)
    assert seen == [(15, ["a"]), (15, ["b"])]


def test_user_errors_fail_the_stage_with_its_name() -> None:
    running, _ = run(ScalarStage(batch_fn=lambda es: [1 / e for e in es], name="divide"))
    with pytest.raises(StageError, match=r"stage divide failed: ZeroDivisionError"):
        running.on_batch([1, 0])
    with pytest.raises(StageError):  # and stays failed
        running.on_batch([1])
    rx_running, _ = run(ScalarStage(rx=lambda obs: obs.pipe(ops.map(lambda e: 1 / e))))
    with pytest.raises(StageError, match="ZeroDivisionError"):
        rx_running.on_batch([0])
    assert isinstance(rx_running.error, ZeroDivisionError)


def test_a_completed_rx_pipeline_ignores_later_input() -> None:
    running, out = run(ScalarStage(rx=lambda obs: obs.pipe(ops.take(2))), [1, 2, 3], [4])
    assert out == [1, 2] and running.completed


def test_two_starts_share_no_state() -> None:
    stage = GroupToScalarStage(window=Window.tumbling_count(2))
    a, out_a = run(stage, [("k", 1)])
    b, out_b = run(stage, [("k", 2)])
    assert out_a == out_b == []
    a.on_batch([("k", 3)])
    assert [o["count"] for o in out_a] == [2] and out_b == []


# scalar -> group ----------------------------------------------------------------------------------


def test_key_stage_emits_key_event_pairs() -> None:
    stage = KeyStage(key_fn=lambda e: e["user"])
    assert stage.output_keyed and not stage.input_keyed and ToGroupStage is KeyStage
    _, out = run(stage, [{"user": "a", "n": 1}, {"user": "b", "n": 2}])
    assert out == [("a", {"user": "a", "n": 1}), ("b", {"user": "b", "n": 2})]


def test_key_stage_runs_its_logic_first_and_maps_values() -> None:
    stage = KeyStage(
        key_fn=lambda e: e % 3,
        value_fn=lambda e: {"v": e},
        rx=lambda obs: obs.pipe(ops.filter(lambda e: e > 1)),
    )
    _, out = run(stage, [1, 2, 3, 4])
    assert out == [(2, {"v": 2}), (0, {"v": 3}), (1, {"v": 4})]
    _, out = run(KeyStage(key_fn=str, batch_fn=lambda es: es[::-1]), [1, 2])
    assert out == [("2", 2), ("1", 1)]


def test_key_function_errors_fail_the_stage() -> None:
    running, _ = run(KeyStage(key_fn=lambda e: e["k"], name="key"))
    with pytest.raises(StageError, match="stage key failed: KeyError"):
        running.on_batch([{}])


# group -> scalar: count windows -------------------------------------------------------------------


def pairs(*items: str) -> list[list[Any]]:
    """``"a1"`` -> the wire form of (key "a", event 1)."""
    return [[s[0], int(s[1:])] for s in items]


def test_tumbling_count_window_per_key() -> None:
    stage = GroupToScalarStage(
        window=Window.tumbling_count(2),
        reduce=lambda acc, e: acc + e,
        output=lambda k, acc, info: (k, acc, info.count),
    )
    running, out = run(stage, pairs("a1", "b10", "a2", "a3"), pairs("b20", "a4"))
    assert out == [("a", 3, 2), ("b", 30, 2), ("a", 7, 2)]
    running.close()  # nothing left open
    assert out == [("a", 3, 2), ("b", 30, 2), ("a", 7, 2)]


def test_sliding_count_window_like_buffer_with_count() -> None:
    # size 3, a new window every 2 events: [1,2,3], [3,4,5], then [5,6] is open at close.
    stage = GroupToScalarStage(
        window=Window.sliding_count(3, 2),
        initial=list,
        reduce=lambda acc, e: [*acc, e],
        output=lambda k, acc, info: (k, acc, info.complete),
    )
    running, out = run(stage, pairs("a1", "a2", "a3", "a4"), pairs("a5", "a6"))
    assert out == [("a", [1, 2, 3], True), ("a", [3, 4, 5], True)]
    running.close()
    assert out[2:] == [("a", [5, 6], False)]


def test_count_window_with_gaps_when_slide_exceeds_size() -> None:
    stage = GroupToScalarStage(
        window=Window.sliding_count(1, 2),
        initial=list,
        reduce=lambda acc, e: [*acc, e],
        output=lambda k, acc, info: acc,
    )
    _, out = run(stage, pairs("a1", "a2", "a3", "a4", "a5"))
    assert out == [[1], [3], [5]]


def test_tuple_keys_survive_the_wire() -> None:
    stage = GroupToScalarStage(window=Window.tumbling_count(2), output=lambda k, acc, i: (k, acc))
    _, out = run(stage, [[["x", 1], "e"], [["x", 1], "f"]])
    assert out == [(("x", 1), 2)]


# group -> scalar: time windows --------------------------------------------------------------------


def test_tumbling_time_window_closes_on_tick() -> None:
    stage = GroupToScalarStage(window=Window.tumbling_time(1.0))
    out: list[Any] = []
    running = stage.start(Context(), out.extend)
    running.on_batch(pairs("a1", "b1", "a1"), now=0.2)
    running.on_batch(pairs("a1"), now=0.9)
    assert running.next_deadline == 1.0
    running.on_tick(0.99)
    assert out == []
    running.on_batch(pairs("b1"), now=1.5)  # next window
    running.on_tick(1.0)  # a late tick never moves time back
    assert out == [
        {"key": "a", "value": 3, "count": 3, "start": 0.0, "end": 1.0},
        {"key": "b", "value": 1, "count": 1, "start": 0.0, "end": 1.0},
    ]
    running.on_tick(2.0)
    assert out[2:] == [{"key": "b", "value": 1, "count": 1, "start": 1.0, "end": 2.0}]
    assert running.next_deadline is None


def test_sliding_time_window_counts_each_event_in_every_window_holding_it() -> None:
    # 2 s windows every 1 s: [0,2) [1,3) [2,4) ...
    stage = GroupToScalarStage(
        window=Window.sliding_time(2.0, 1.0), output=lambda k, acc, i: (i.start, i.end, k, acc)
    )
    out: list[Any] = []
    running = stage.start(Context(), out.extend)
    running.on_batch(pairs("a1"), now=0.5)  # in [-1,1) and [0,2)
    running.on_batch(pairs("a1", "a1"), now=1.5)  # in [0,2) and [1,3)
    running.on_tick(1.0)
    assert out == [(-1.0, 1.0, "a", 1)]
    running.on_tick(2.0)
    assert out[1:] == [(0.0, 2.0, "a", 3)]
    running.on_batch(pairs("a1"), now=2.5)  # in [1,3) and [2,4)
    running.on_tick(4.0)
    assert out[2:] == [(1.0, 3.0, "a", 3), (2.0, 4.0, "a", 1)]


def test_time_windows_in_virtual_time_from_a_test_scheduler() -> None:
    # What the worker does with its loop's clock, with TestScheduler's ticks as seconds.
    scheduler = TestScheduler()
    stage = GroupToScalarStage(window=Window.tumbling_time(100), output=lambda k, acc, i: (k, acc))
    observer = scheduler.create_observer()
    running = stage.start(Context(), lambda b: [observer.on_next(e) for e in b])
    for t, batch in [(210, pairs("a1", "b1")), (250, pairs("a1")), (310, pairs("a1"))]:
        scheduler.schedule_absolute(t, lambda *_, b=batch: running.on_batch(b, now=scheduler.clock))
    for t in range(100, 501, 100):
        scheduler.schedule_absolute(t, lambda *_: running.on_tick(scheduler.clock))
    scheduler.start()
    assert observer.messages == [
        on_next(300, ("a", 2)),
        on_next(300, ("b", 1)),
        on_next(400, ("a", 1)),
    ]


# group -> scalar: key expiry ----------------------------------------------------------------------


def test_key_expiry_flushes_and_forgets_an_idle_key() -> None:
    stage = GroupToScalarStage(
        window=Window.tumbling_count(3),
        output=lambda k, acc, i: (k, acc, i.complete),
        config=StageConfig(key_expiry=10),
    )
    ctx = Context()
    out: list[Any] = []
    running = stage.start(ctx, out.extend)
    running.on_batch(pairs("a1", "a1", "b1"), now=0)
    running.on_batch(pairs("b1"), now=5)
    assert running.next_deadline == 10
    running.on_tick(9.9)
    assert out == []
    running.on_tick(10)  # a idle for 10 s: its open window goes out, as is
    assert out == [("a", 2, False)]
    running.on_batch(pairs("a1"), now=11)  # a starts afresh
    running.on_tick(15)
    assert out[1:] == [("b", 2, False)]
    running.on_batch(pairs("a1", "a1"), now=16)
    assert out[2:] == [("a", 3, True)]
    snap = ctx.metrics.snapshot()
    assert snap["stage.1.keys_expired"] == 2 and snap["stage.1.keys"] == 1


def test_key_expiry_with_time_windows_emits_the_partial_window() -> None:
    stage = GroupToScalarStage(
        window=Window.tumbling_time(10),
        output=lambda k, acc, i: (k, acc, i.complete),
        config=StageConfig(key_expiry=3),
    )
    out: list[Any] = []
    running = stage.start(Context(), out.extend)
    running.on_batch(pairs("a1"), now=1)
    running.on_batch(pairs("b1"), now=2)
    running.on_tick(4)
    assert out == [("a", 1, False)]
    running.on_tick(10)
    assert out[1:] == [("b", 1, True)]


def test_per_key_rx_with_expiry_completes_the_group() -> None:
    # Mantis' GroupedObservable: a pipeline per key; expiry completes it, so its buffer flushes.
    scheduler = TestScheduler()
    stage = GroupToScalarStage(
        per_key_rx=lambda key, obs: obs.pipe(ops.buffer_with_count(3), ops.map(lambda b: (key, b))),
        config=StageConfig(key_expiry=50),
    )
    observer = scheduler.create_observer()
    running = stage.start(Context(), lambda b: [observer.on_next(e) for e in b], scheduler)
    feed = [(210, pairs("a1", "b1", "a2")), (220, pairs("a3")), (300, pairs("a4"))]
    for t, batch in feed:
        scheduler.schedule_absolute(t, lambda *_, b=batch: running.on_batch(b, now=scheduler.clock))
    for t in range(200, 401, 10):
        scheduler.schedule_absolute(t, lambda *_: running.on_tick(scheduler.clock))
    scheduler.start()
    assert observer.messages == [
        on_next(220, ("a", [1, 2, 3])),
        on_next(260, ("b", [1])),  # b idle since 210
        on_next(350, ("a", [4])),  # a idle since 300
    ]


def test_group_batch_fn_and_rx_over_pairs() -> None:
    _, out = run(GroupToScalarStage(batch_fn=lambda ps: [f"{k}={v}" for k, v in ps]), pairs("a1"))
    assert out == ["a=1"]
    _, out = run(GroupToScalarStage(rx=lambda obs: obs.pipe(ops.map(lambda p: p[0]))), pairs("b2"))
    assert out == ["b"]


def test_window_info_defaults() -> None:
    assert WindowInfo(None, None, 3).complete


# definitions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ScalarStage(rx=lambda o: o, batch_fn=lambda b: b), "one of rx, batch_fn"),
        (lambda: ScalarStage(batch_fn=lambda a, b, c: a), "batch_fn must take 1 argument"),
        (lambda: ScalarStage(batch_fn=3), "batch_fn must be callable"),
        (lambda: KeyStage(), "needs a key_fn"),
        (lambda: KeyStage(key_fn=str, config=StageConfig(codec="bytes")), "JSON codec"),
        (lambda: GroupToScalarStage(), "needs one of window"),
        (lambda: Window.tumbling_count(0), "size must be > 0"),
        (lambda: Window.sliding_count(3, 1.5), "must be an integer"),
        (lambda: Window.tumbling_time(float("inf")), "finite"),
        (lambda: StageConfig(codec="avro"), "unknown codec 'avro'"),
        (lambda: StageConfig(concurrency=0), "concurrency must be >= 1"),
        (lambda: StageConfig(key_expiry=-1), "key_expiry must be > 0"),
        (lambda: ScalarStage(config=StageConfig(key_expiry=5)), "GroupToScalarStage only"),
        (
            lambda: GroupToScalarStage(batch_fn=list, config=StageConfig(key_expiry=5)),
            "key_expiry needs window or per_key_rx",
        ),
        (
            lambda: GroupToScalarStage(window=Window.tumbling_count(1), reduce=lambda a: a),
            r"reduce must take 2 argument\(s\), takes 1",
        ),
    ],
)
def test_bad_stage_definitions_are_rejected(make: Any, message: str) -> None:
    with pytest.raises(StageDefinitionError, match=message):
        make()


def test_stage_config_takes_codec_names() -> None:
    from runtime.codec import Codec

    assert StageConfig(codec="bytes").codec is Codec.BYTES
    assert ScalarStage(config=StageConfig(concurrency=4)).config.concurrency == 4


def test_rx_function_must_return_an_observable() -> None:
    with pytest.raises(StageError, match="not an Observable"):
        run(ScalarStage(rx=lambda obs: [1]))


def test_a_pipeline_may_use_its_input_twice() -> None:
    def both(obs: Observable[int]) -> Observable[Any]:
        return reactivex.merge(
            obs.pipe(ops.map(lambda e: ("a", e))), obs.pipe(ops.map(lambda e: ("b", e)))
        )

    _, out = run(ScalarStage(rx=both), [1, 2])
    assert out == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]


@given(
    events=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 9)), max_size=60),
    size=st.integers(1, 4),
    slide=st.integers(1, 4),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_count_windows_match_a_brute_force_model(
    events: list[tuple[str, int]], size: int, slide: int, cuts: list[int]
) -> None:
    # However the input is cut into batches, each key's windows are Rx's buffer_with_count.
    stage = GroupToScalarStage(
        window=Window.sliding_count(size, slide),
        initial=list,
        reduce=lambda acc, e: [*acc, e],
        output=lambda k, acc, info: (k, acc),
    )
    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    batches = [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    running, out = run(stage, *batches)
    running.close()
    for key in "abc":
        values = [v for k, v in events if k == key]
        starts = range(0, len(values), slide)
        expected = [values[s : s + size] for s in starts]
        assert [acc for k, acc in out if k == key] == [w for w in expected if w]

"""Sources without the network: synthetic (virtual clock), files, SSE decoding, targets."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runtime.context import Context, Metrics, WorkerInfo
from runtime.job import IterableSource
from runtime.sources import (
    MASTER_URL_ENV,
    FileSource,
    JobSource,
    MergedSource,
    SourceError,
    SyntheticSource,
    Target,
    TargetSource,
    default_event,
    job_sources,
    parse_target,
    unique_client_ids,
)
from runtime.sources.jobs import last_stage_workers, master_url_from_env, sink_url
from runtime.sources.merge import Merger
from runtime.sources.sse import EventDecoder


async def take(stream: AsyncIterator[list[Any]], n: int) -> list[list[Any]]:
    """The first `n` batches of `stream`, then close it."""
    out = []
    try:
        async for batch in stream:
            out.append(batch)
            if len(out) == n:
                break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return out


async def drain(stream: AsyncIterator[list[Any]]) -> list[list[Any]]:
    return [batch async for batch in stream]


# ------------------------------------------------------------------------ synthetic


class VirtualClock:
    """A clock that only moves when the source sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_synthetic_is_deterministic_for_a_seed_whatever_the_batching() -> None:
    async def events(seed: int, batch_size: int) -> list[Any]:
        src = SyntheticSource(batch_size=batch_size, total=1000, seed=seed)
        return [e for b in await drain(src.batches(Context())) for e in b]

    a = await events(7, 100)
    assert len(a) == 1000 and [e["id"] for e in a] == list(range(1000))
    assert a == await events(7, 33) == await events(7, 1000)
    assert a != await events(8, 100)
    assert {e["key"] for e in a} == {f"k{n}" for n in range(16)}
    assert all(0 <= e["value"] < 100 for e in a)
    rng = random.Random(7)
    assert a[:3] == [default_event(i, rng) for i in range(3)]


async def test_synthetic_custom_factory_total_batches_and_metric() -> None:
    ctx = Context()
    src = SyntheticSource(batch_size=4, total=10, make=lambda i, rng: i * i)
    batches = await drain(src.batches(ctx))
    assert batches == [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]
    assert ctx.metrics.snapshot()["events_emitted"] == 10
    assert await drain(SyntheticSource(total=0).batches(Context())) == []


async def test_synthetic_keeps_the_rate_by_the_clock_without_spinning() -> None:
    clock = VirtualClock()
    src = SyntheticSource(
        events_per_s=1000, batch_size=50, total=2000, clock=clock, sleep=clock.sleep
    )
    start = clock.now
    emitted_at: list[tuple[float, int, int]] = []  # (time, first id, last id)

    async def main() -> None:
        async for batch in src.batches(Context()):
            emitted_at.append((clock.now, batch[0]["id"], batch[-1]["id"]))

    await main()
    assert emitted_at[-1][2] == 1999
    for t, first, last in emitted_at:
        elapsed = t - start
        assert last < elapsed * 1000 + 1e-6  # never ahead of schedule: event i at i/rate
        assert first / 1000 >= elapsed - 0.0011 - 1e-9  # never later than one min_sleep
        assert last - first < 50
    # 2 s of virtual time, each sleep at least 1 ms: no spinning, few wake-ups.
    assert 1.99 <= clock.now - start <= 2.01
    assert len(clock.sleeps) <= 2001 and min(clock.sleeps) >= 0.001


async def test_synthetic_catches_up_after_a_stall_in_full_batches() -> None:
    clock = VirtualClock()
    src = SyntheticSource(events_per_s=1000, batch_size=100, clock=clock, sleep=clock.sleep)

    async def main() -> list[int]:
        sizes = []
        stream = src.batches(Context())
        first = await anext(stream)  # one event is due after 1 ms
        sizes.append(len(first))
        clock.now += 0.5  # the consumer stalls for 500 ms: 500 events fall due
        sleeps = len(clock.sleeps)
        for _ in range(5):
            sizes.append(len(await anext(stream)))
        assert len(clock.sleeps) == sleeps  # the backlog goes out without sleeping
        sizes.append(len(await anext(stream)))
        await stream.aclose()  # type: ignore[attr-defined]
        return sizes

    sizes = await main()
    assert sizes[1:6] == [100, 100, 100, 100, 100]
    assert sum(sizes[:6]) == 501 and sizes[6] <= 2  # caught up: back to what a sleep brings


async def test_synthetic_real_rate_is_close_and_never_ahead() -> None:
    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        ctx = Context()
        src = SyntheticSource(events_per_s=4000, batch_size=200)
        stream = src.batches(ctx)
        start = loop.time()
        count = 0
        async for batch in stream:
            count += len(batch)
            if loop.time() - start >= 0.3:
                break
        elapsed = loop.time() - start
        await stream.aclose()  # type: ignore[attr-defined]
        assert ctx.metrics.counter("events_emitted").value == count
        return count, elapsed

    count, elapsed = await main()
    assert count <= 4000 * elapsed + 1  # never ahead of the clock
    assert count >= 0.5 * 4000 * 0.3  # generous: a busy machine may lag, but catches up


def test_synthetic_rejects_bad_settings() -> None:
    for kwargs in ({"batch_size": 0}, {"events_per_s": -1}, {"total": -1}, {"min_sleep": 0}):
        with pytest.raises(ValueError):
            SyntheticSource(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ files


async def test_file_lines_in_batches_with_the_last_line_unterminated(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"one\ntwo\r\n\nthr\xffee\nlast")
    ctx = Context()
    batches = await drain(FileSource(path, batch_size=2).batches(ctx))
    assert batches == [["one", "two"], ["", "thr\ufffdee"], ["last"]]
    assert ctx.metrics.snapshot()["events_emitted"] == 5


async def test_file_json_lines_skip_blank_and_count_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n\n[2, 3]\nnot json\n"s"\n')
    ctx = Context()
    events = [e for b in await drain(FileSource(str(path), json=True).batches(ctx)) for e in b]
    assert events == [{"a": 1}, [2, 3], "s"]
    assert ctx.metrics.snapshot()["decode_errors"] == 1


async def test_a_big_file_arrives_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("".join(f"line {i}\n" for i in range(50_000)))
    batches = await drain(FileSource(path, batch_size=1000).batches(Context()))
    assert [e for b in batches for e in b] == [f"line {i}" for i in range(50_000)]
    assert max(map(len, batches)) == 1000


async def test_a_missing_file_or_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        await drain(FileSource(missing).batches(Context()))
    with pytest.raises(ValueError, match="is a directory"):
        await drain(FileSource(tmp_path, follow=True).batches(Context()))
    with pytest.raises(ValueError):
        FileSource(missing, batch_size=0)


async def test_follow_tails_appends_waits_for_a_newline_and_handles_truncation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.txt"
    path.write_text("a\nb\n")
    ctx = Context()

    def append(text: str) -> None:
        with open(path, "a") as f:
            f.write(text)

    async def main() -> None:
        stream = FileSource(path, follow=True, poll_interval=0.005).batches(ctx)

        async def nxt() -> list[Any]:
            return await asyncio.wait_for(anext(stream), 5)

        assert await nxt() == ["a", "b"]
        append("c\npart")
        assert await nxt() == ["c"]  # "part" waits for its newline
        append("ial\n")
        assert await nxt() == ["partial"]
        path.write_text("x\n")  # truncated and rewritten shorter
        assert await nxt() == ["x"]
        assert ctx.metrics.snapshot()["file_truncations"] == 1
        os.rename(path, tmp_path / "log.1")  # rotated: a new file at the path
        path.write_text("new 1\nnew 2\n")
        assert await nxt() == ["new 1", "new 2"]
        await stream.aclose()  # type: ignore[attr-defined]

    await main()


# ------------------------------------------------------------------------ SSE decoding


def test_decoder_json_or_text_skips_heartbeats_and_counts_errors() -> None:
    metrics = Metrics()
    decoder = EventDecoder.for_query({}, metrics)
    payloads = [b'{"a":1}', b"ping", b"hello", b"3.5", b"12abc", b'{"jobId":"HB_JobId"}', b"\xff"]
    assert decoder.decode(payloads) == [{"a": 1}, "hello", 3.5, "12abc"]
    assert metrics.snapshot()["decode_errors"] == 1


def test_decoder_unpacks_the_binary_format() -> None:
    metrics = Metrics()
    decoder = EventDecoder.for_query({"format": "binary"}, metrics)
    packed = base64.b64encode(zlib.compress(b'{"i":1}$$$plain$$${"i":2}'))
    assert decoder.decode([packed, b"ping", b"!!not base64"]) == [{"i": 1}, "plain", {"i": 2}]
    assert metrics.snapshot()["decode_errors"] == 1
    custom = EventDecoder.for_query(
        {"mantis.EnableCompressedBinary": "true", "mantis.CompressionDelimiter": "|"}, metrics
    )
    assert custom.decode([base64.b64encode(zlib.compress(b"1|2"))]) == [1, 2]


# ------------------------------------------------------------------------ merging


async def test_merged_source_ends_when_every_source_ends() -> None:
    src = MergedSource([IterableSource(range(5), batch_size=2), IterableSource("ab")])
    batches = await drain(src.batches(Context()))
    assert sorted(e for b in batches for e in b if isinstance(e, int)) == [0, 1, 2, 3, 4]
    assert [b for b in batches if b and isinstance(b[0], str)] == [["a", "b"]]


async def test_a_failing_producer_fails_the_consumer_and_close_cancels_the_rest() -> None:
    async def main() -> None:
        merger = Merger()
        forever = asyncio.Event()

        async def stuck() -> None:
            await forever.wait()

        async def fails() -> None:
            await merger.put([1])
            raise RuntimeError("boom")

        blocked = merger.spawn(stuck())
        merger.spawn(fails())
        assert await merger.get() == [1]
        with pytest.raises(RuntimeError, match="boom"):
            await merger.get()
        await merger.close()
        assert blocked.cancelled()

    await main()


# ------------------------------------------------------------------------ job source settings


WORKER = WorkerInfo("consumer", "consumer-7", 1, 3, 9, 4, 1)


def test_job_source_query_parameters() -> None:
    assert JobSource("up").query(WORKER) == {"clientId": "consumer-7"}
    assert JobSource("up", broadcast=True).query(WORKER) == {"clientId": "consumer-7_3"}
    src = JobSource(
        "up", client_id="c", sample=2, enable_meta_messages=True, extra_params={"x": "1"}
    )
    assert src.query(WORKER) == {
        "x": "1",
        "clientId": "c",
        "sample": "2",
        "enableMetaMessages": "true",
    }
    assert JobSource("up", sample=2, sample_msec=250).query(WORKER)["sampleMSec"] == "250"
    with pytest.raises(ValueError):
        JobSource("")


def test_master_url_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_URL_ENV, raising=False)
    with pytest.raises(SourceError, match=MASTER_URL_ENV):
        master_url_from_env()
    assert master_url_from_env("http://m:1/") == "http://m:1"
    monkeypatch.setenv(MASTER_URL_ENV, "http://127.0.0.1:8100")
    assert master_url_from_env() == "http://127.0.0.1:8100"
    assert sink_url("::1", 5) == "http://[::1]:5/" and sink_url("h", 5) == "http://h:5/"


def test_last_stage_workers_from_scheduling_info() -> None:
    info = {
        "jobId": "up-1",
        "workerAssignments": {
            "1": {
                "stage": 1,
                "numWorkers": 1,
                "hosts": {
                    "1": {
                        "host": "a",
                        "port": [1],
                        "workerIndex": 0,
                        "workerNumber": 1,
                        "state": "Started",
                    }
                },
            },
            "2": {
                "stage": 2,
                "numWorkers": 2,
                "hosts": {
                    "3": {
                        "host": "b",
                        "port": [3, 9],
                        "workerIndex": 1,
                        "workerNumber": 3,
                        "state": "Started",
                    },
                    "2": {
                        "host": "c",
                        "port": [2],
                        "workerIndex": 0,
                        "workerNumber": 2,
                        "state": "Started",
                    },
                },
            },
        },
    }
    assert [(w.host, w.port) for w in last_stage_workers(info)] == [("c", 2), ("b", 3)]
    assert last_stage_workers({"jobId": "x", "workerAssignments": {}}) == ()


# ------------------------------------------------------------------------ the target parameter


def test_parse_target_reads_mantis_fields() -> None:
    targets = parse_target(
        '{"targets": [{"sourceJobName": "up", "clientId": "c", "isBroadcastMode": true,'
        ' "sample": 2, "enableMetaMessages": "true", "criterion": "select * where true",'
        ' "subscriptionId": "s", "mantis.EnableCompressedBinary": true,'
        ' "additionalParams": {"k": 1}},'
        ' {"sourceJobName": "other", "sample": -1}]}'
    )
    assert targets == (
        Target("up", "c", True, 2.0, True, {"k": "1", "mantis.EnableCompressedBinary": "true"}),
        Target("other"),
    )
    assert parse_target({"targets": [{"sourceJobName": "x"}]}) == (Target("x"),)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{nope", "not valid JSON"),
        ('{"targets": []}', "at least one target"),
        ("[1]", "at least one target"),
        ('{"targets": [1]}', r"targets\[0\]: expected an object"),
        ('{"targets": [{"clientId": "c"}]}', r"targets\[0\].sourceJobName"),
        ('{"targets": [{"sourceJobName": "a", "clientId": 5}]}', "clientId"),
        ('{"targets": [{"sourceJobName": "a", "isBroadcastMode": "yes"}]}', "isBroadcastMode"),
        ('{"targets": [{"sourceJobName": "a", "sample": "soon"}]}', "sample"),
        ('{"targets": [{"sourceJobName": "a", "additionalParams": [1]}]}', "additionalParams"),
        (
            '{"targets": [{"sourceJobName": "a", "criterion": "select a where b =="}]}',
            r"targets\[0\].criterion: line 1, column 20",
        ),
    ],
)
def test_parse_target_errors_name_the_field(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_target(value)


def test_duplicate_source_and_client_id_pairs_get_suffixes_as_in_mantis() -> None:
    targets = [
        Target("a"),
        Target("a"),
        Target("b"),
        Target("a", "x"),
        Target("a", "x"),
        Target("a"),
        Target("a", "job-1"),
    ]
    assert unique_client_ids(targets, "job-1") == [
        "job-1",
        "job-1_1",
        "job-1",
        "x",
        "x_1",
        "job-1_2",
        "job-1_3",
    ]
    sources = job_sources(targets[:2], "job-1", master_url="http://m")
    assert [(s.cluster, s.client_id, s.master_url) for s in sources] == [
        ("a", "job-1", "http://m"),
        ("a", "job-1_1", "http://m"),
    ]


async def test_target_source_checks_a_given_target_at_once_and_a_parameter_when_started() -> None:
    with pytest.raises(ValueError, match="sourceJobName"):
        TargetSource('{"targets": [{}]}')
    with pytest.raises(SourceError, match="no job parameter 'target'"):
        await drain(TargetSource().batches(Context()))
    with pytest.raises(ValueError, match="criterion"):
        ctx = Context(
            parameters={"target": {"targets": [{"sourceJobName": "a", "criterion": "select x y"}]}}
        )
        await drain(TargetSource().batches(ctx))

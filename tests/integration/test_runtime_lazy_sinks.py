"""Lazy sinks, as in Mantis: a job whose sink has no client reads nothing (its file source is
not even opened), runs while a client is connected and pauses when the last one leaves; an
eager job (``to_many`` of an eager SSE sink and a stdout sink) reads all along.

What the sources read is seen from outside, in the worker process' file position
(/proc/<pid>/fdinfo), and compared with the eager job's over the same time.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.integration.workers import local_master, read_sse

pytestmark = pytest.mark.timeout(90)

ARTIFACT = """
from runtime.job import Job, ServerSentEventsSink, StdoutSink, to_many
from runtime.parameters import StringParameter
from runtime.sources import FileSource
from runtime.stages import ScalarStage


def job():
    return Job(
        source=lambda c: FileSource(c.param("path", str), follow=True, json=True).batches(c),
        stages=[ScalarStage(batch_fn=lambda events: events)],
        sink={sink},
        parameters=[StringParameter("path", default="")],
    )
"""


def position(pid: int, path: Path) -> int | None:
    """Where process `pid` is in the file at `path`; None if it does not have it open."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                info = (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text()
                return int(info.split("pos:")[1].split()[0])
        except OSError:
            continue
    return None


def append(path: Path, start: int, n: int) -> int:
    """Append events start..start+n-1 as JSON lines; the file's size after."""
    with path.open("ab") as f:
        f.write(b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(start, start + n)))
    return path.stat().st_size


async def test_a_lazy_sink_reads_nothing_until_a_client_and_pauses_when_it_leaves(
    tmp_path: Path,
) -> None:
    files = {name: tmp_path / f"{name}.jsonl" for name in ("lazy", "eager")}
    sinks = {
        "lazy": "ServerSentEventsSink()",
        "eager": "to_many(ServerSentEventsSink(eager=True), StdoutSink())",
    }
    for name, sink in sinks.items():
        (tmp_path / f"{name}.py").write_text(ARTIFACT.format(sink=sink))
    size = {name: append(path, 0, 100) for name, path in files.items()}

    async with local_master(tmp_path) as m, aiohttp.ClientSession() as http:
        jobs = {
            name: m.submit(name, tmp_path / f"{name}.py", [1], {"path": str(files[name])})
            for name in files
        }
        await m.until(lambda: all(m.started(j) for j in jobs.values()), "both jobs Started")
        pid = {name: m.process(jid, 1, 0).popen.pid for name, jid in jobs.items()}
        eager_log = m.process(jobs["eager"], 1, 0).log

        # The eager job reads its file and prints it meanwhile; the lazy one has not opened it.
        await m.until(lambda: position(pid["eager"], files["eager"]) == size["eager"], "read")
        await m.until(lambda: '{"n":99}' in eager_log.read_text(), "the stdout sink's lines")
        assert position(pid["lazy"], files["lazy"]) is None, "the lazy job read its source"

        got: list[Any] = []
        reader = asyncio.create_task(read_sse(http, f"{m.url}/jobconnectbyid/{jobs['lazy']}", got))
        await m.until(lambda: len(got) == 100, "the lazy job's events, once subscribed")
        assert [e["n"] for e in got] == list(range(100))
        assert position(pid["lazy"], files["lazy"]) == size["lazy"]
        reader.cancel()

        # The last client left: the lazy job pauses. The batch its source was waiting for
        # when the pause came is read and held; nothing after it is read.
        lazy_log = m.process(jobs["lazy"], 1, 0).log
        await m.until(lambda: "stage_paused" in lazy_log.read_text(), "the lazy job paused")
        held = append(files["lazy"], 100, 50)
        await m.until(lambda: position(pid["lazy"], files["lazy"]) == held, "the held batch")
        append(files["lazy"], 150, 50)
        grown = append(files["eager"], 100, 100)
        await m.until(lambda: position(pid["eager"], files["eager"]) == grown, "more read")
        assert position(pid["lazy"], files["lazy"]) == held, "read while paused"

        got.clear()
        reader = asyncio.create_task(read_sse(http, f"{m.url}/jobconnectbyid/{jobs['lazy']}", got))
        await m.until(lambda: len(got) == 100, "the rest, once subscribed again")
        assert [e["n"] for e in got] == list(range(100, 200)), "the held batch went out first"
        reader.cancel()

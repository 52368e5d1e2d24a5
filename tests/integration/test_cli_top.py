"""`mantis top --once` against a master running real workers: one row per stage, with the
events its workers count, read from their metrics ports."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.eventually import wait_until
from tests.integration.cli_fixtures import Loop
from tests.integration.workers import HOST, LocalMaster, read_sse

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("quiet_logs")]


def rows(out: str) -> dict[tuple[str, str], dict[str, str]]:
    """The stage table of a frame, by (job, stage), as {column: cell}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("JOB"))
    header = lines[start].split()
    header[header.index("RSS")] = "RSS MB"
    header.remove("MB")
    table = {}
    for line in lines[start + 1 :]:
        cells = dict(zip(header, line.split(), strict=True))
        table[(cells["JOB"], cells["STAGE"])] = cells
    return table


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_top_once_shows_each_stage_of_a_running_job(
    cli_loop: Loop, workers: LocalMaster, mantis: Any
) -> None:
    jid = cli_loop.run(workers.counter_job("top"))
    (sink,) = workers.started(jid, stage=3)
    reader = cli_loop.run(_subscribe(f"http://{HOST}:{sink.ports[0]}/"))  # sinks are lazy
    frames: list[str] = []

    def flowing() -> bool:
        run = mantis("top", "--once", "--url", workers.url, "--job", jid)
        assert run.status == 0, run.err
        frames.append(run.out)
        table = rows(run.out)
        moving = len(table) == 3 and all(number(table[(jid, s)]["IN/S"]) > 0 for s in "123")
        return moving and number(table[(jid, "1")]["IN/S"]) > 1_000  # a whole second of it

    wait_until(flowing, "events flowing through the 3 stages in mantis top", 30)
    out = frames[-1]
    assert f"mantis top  {workers.url}" in out
    assert "workers: Started 3" in out  # the master's own metrics
    table = rows(out)
    for stage in "123":
        row = table[(jid, stage)]
        assert row["WORKERS"] == "1/1" and row["UNSCRAPED"] == "0"
        assert number(row["OUT/S"]) > 0 and number(row["RSS MB"]) > 1
    assert number(table[(jid, "1")]["IN/S"]) < 100_000  # the counter job makes ~10,000/s
    cli_loop.run(_stop(workers, jid, reader))


async def _subscribe(url: str) -> asyncio.Task[None]:
    async def read() -> None:
        async with aiohttp.ClientSession() as http:
            await read_sse(http, url, [])

    return asyncio.create_task(read())


async def _stop(master: LocalMaster, jid: str, reader: asyncio.Task[None]) -> None:
    reader.cancel()
    master.kill(jid)


def test_top_rejects_a_bad_interval(mantis: Any) -> None:
    run = mantis("top", "--interval", "0")
    assert run.status == 2 and "must be > 0" in run.err

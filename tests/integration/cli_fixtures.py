"""Fixtures of the `mantis` CLI tests: a master for the CLI to talk to, and `mantis(*argv)`.

The CLI is synchronous, so the masters run on their own asyncio loop in a background thread
(`Loop`): `api` is a plain API with an artifact folder, `workers` a `LocalMaster` that also
runs real worker processes. conftest.py makes them fixtures of every integration test; a
module of CLI tests also asks for `quiet_logs`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import structlog
from aiohttp import web

from adapters.cli.main import main
from adapters.http.app import create_app, serve
from adapters.http.artifacts import ArtifactStore
from common.logs import configure as configure_logging
from tests.fakes import memory_master
from tests.integration.workers import HOST, LocalMaster

T = TypeVar("T")
TOKEN = "cli-s3cret"

# One stage: a slow counter, so that a running job costs almost no CPU.
TICKS_JOB = """
import asyncio
import itertools

from runtime.job import Job, ServerSentEventsSink
from runtime.parameters import IntParameter
from runtime.stages import ScalarStage


async def ticks(context):
    every = context.param("every_ms", int) / 1000
    for i in itertools.count():
        yield [{"i": i}]
        await asyncio.sleep(every)


def job():
    return Job(source=ticks, stages=[ScalarStage(batch_fn=lambda events, context: events)],
               sink=ServerSentEventsSink(), name="ticks",
               parameters=[IntParameter("every_ms", default=20, minimum=1)])
"""


class Loop:
    """An asyncio loop on a thread: servers live there while the test thread runs the CLI."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Only errors from the background master, also before a test's first command (which
    configures logging again, as `mantis` does); structlog's defaults again afterwards."""
    configure_logging(level="error")
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="module")
def cli_loop() -> Iterator[Loop]:
    background = Loop()
    yield background
    background.close()


async def _plain(folder: Path, api_token: str | None) -> tuple[web.AppRunner, str]:
    app = create_app(memory_master(), artifacts=ArtifactStore(folder), api_token=api_token)
    runner, port = await serve(app, HOST)
    return runner, f"http://{HOST}:{port}"


def plain_master(loop: Loop, folder: Path, api_token: str | None = None) -> Iterator[str]:
    runner, url = loop.run(_plain(folder, api_token))
    yield url
    loop.run(runner.cleanup())


@pytest.fixture
def api(cli_loop: Loop, tmp_path: Path) -> Iterator[str]:
    """The URL of a master API without workers (nothing gets placed)."""
    yield from plain_master(cli_loop, tmp_path / "artifacts")


@pytest.fixture(scope="module")
def workers(cli_loop: Loop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMaster]:
    """A master that runs workers as processes; `ticks.py` in its folder is a job artifact."""
    tmp = tmp_path_factory.mktemp("workers")
    (tmp / "ticks.py").write_text(TICKS_JOB)
    master = LocalMaster(tmp, api_token=TOKEN)
    cli_loop.run(master.start())
    yield master
    cli_loop.run(master.close())


class Run:
    """What one command did: exit status, stdout, stderr."""

    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err

    def json(self) -> Any:
        assert self.status == 0, self.err
        return orjson.loads(self.out)


@pytest.fixture
def mantis(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> Run:
        status = main(["--log-level", "error", *argv])
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return run

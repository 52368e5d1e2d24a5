"""The `mantis` command: version, usage errors, and the logging setup."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest
import structlog

from adapters.cli import main
from adapters.store.log import EventLog
from common.logs import configure as configure_logging
from core.errors import NotFound
from tests.contracts.store import events


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_version_prints_the_installed_version(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "version", lambda dist: "1.2.3" if dist == "mantis-py" else "?")
    assert main.main(["version"]) == 0
    assert capsys.readouterr().out == "mantis-py 1.2.3\n"


def test_version_falls_back_when_not_installed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(dist: str) -> str:
        raise PackageNotFoundError(dist)

    monkeypatch.setattr(main, "version", missing)
    assert main.main(["version"]) == 0
    assert capsys.readouterr().out == "mantis-py 0.1.0+local\n"


def test_help_lists_the_subcommands_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mantis")
    assert re.search(r"^\s+version\s", out, re.M)
    assert re.search(r"^\s+up\s", out, re.M)
    assert "--log-json" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "mantis: error: argument COMMAND: invalid choice: 'bogus'"),
        ([], "mantis: error: the following arguments are required: COMMAND"),
        (
            ["master", "--port", "x"],
            "mantis master: error: argument --port: invalid int value: 'x'",
        ),
        (["--log-level", "loud", "version"], "mantis: error: argument --log-level: invalid choice"),
    ],
)
def test_usage_errors_are_one_line_on_stderr_with_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(message)


def test_a_rejected_command_is_one_line_on_stderr_with_status_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def rejected(*args: object, **kwargs: object) -> int:
        raise NotFound("job cluster", "nope")

    monkeypatch.setattr(main, "_run_version", rejected)
    assert main.main(["version"]) == 1
    assert capsys.readouterr().err == "mantis version: error: job cluster 'nope' not found\n"


def test_logs_are_key_value_on_stderr_event_first_iso_utc(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging()
    structlog.get_logger().info("worker_started", worker="w-1", note="two words")
    structlog.get_logger().debug("hidden_at_info")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(
        r"event=worker_started timestamp=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z level=info "
        r'worker=w-1 note="two words"\n',
        captured.err,
    )


def test_logs_are_json_lines_with_json_true(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True, level="debug")
    structlog.get_logger().debug("offer_declined", offer="o-1")
    record = json.loads(capsys.readouterr().err)
    assert record["event"] == "offer_declined"
    assert record["level"] == "debug"
    assert record["offer"] == "o-1"
    assert record["timestamp"].endswith("Z")


@pytest.fixture
def sigint_handler_kept() -> Iterator[None]:
    """`mantis master` stops on SIGINT through its loop, whose removal of the handler leaves
    Python's default one: put back the handler from before (pymesos' in a full run)."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.mark.usefixtures("sigint_handler_kept")
def test_master_refuses_a_damaged_store_in_one_line_naming_the_way_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EventLog(tmp_path / "store")
    for name in "abc":
        store.append(events(2, name))
    store.close()
    (segment,) = sorted((tmp_path / "store").glob("segment-*.log"))
    data = bytearray(segment.read_bytes())
    data[12] ^= 0x40  # inside the first record's payload, valid records after it
    segment.write_bytes(bytes(data))

    status = main.main(
        ["master", "--data-dir", str(tmp_path), "--port", "0", "--mesos", "127.0.0.1:9"]
    )
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert str(segment) in err and "mantis master --recover-from-snapshot" in err

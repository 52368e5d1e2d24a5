"""The `mantis` command: version, demo, usage errors, and the logging setup."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest
import structlog

from adapters.cli import demo, main
from adapters.store.log import EventLog
from common.logs import configure as configure_logging
from core.errors import NotFound
from core.events import WorkerStateChanged
from core.model import CompletedReason
from core.worker import WorkerState
from tests.contracts.store import events


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def run_demo(capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main.main(["demo"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out.splitlines()


def line_after(lines: list[str], pattern: str) -> tuple[str, str]:
    """The first line matching `pattern`, and the line after it."""
    i = next(i for i, line in enumerate(lines) if re.search(pattern, line))
    return lines[i], lines[i + 1]


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
    assert re.search(r"^\s+demo\s", out, re.M)
    assert "--log-json" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"], "mantis: error: argument COMMAND: invalid choice: 'bogus'"),
        ([], "mantis: error: the following arguments are required: COMMAND"),
        (
            ["demo", "--steps-delay", "-1"],
            "mantis demo: error: argument --steps-delay: must be >= 0",
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

    monkeypatch.setattr(demo, "run", rejected)
    assert main.main(["demo"]) == 1
    assert capsys.readouterr().err == "mantis demo: error: job cluster 'nope' not found\n"


def test_demo_shows_the_job_launched_once_every_worker_started(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = run_demo(capsys)
    started = [
        line for line in lines if re.search(r"heartbeat \S+ +-> WorkerStateChanged Started", line)
    ]
    assert len(started) == 7  # 3 at submit, 2 after scaling, 2 replacements
    assert sum("JobStateChanged Launched" in line for line in lines) == 1
    assert "JobStateChanged Launched" in started[2]
    _, stage_1 = line_after(lines, r"JobSchedulingInfo of demo-1")
    assert re.search(r"stage 1, 2 workers: 0-1@host-1:31000  1-2@host-2:31000$", stage_1)


def test_demo_scales_stage_2_to_three_workers(capsys: pytest.CaptureFixture[str]) -> None:
    lines = run_demo(capsys)
    scaled, effects = line_after(lines, r"scale stage 2 of demo-1 to 3")
    assert "StageScaled stage 2 to 3; WorkerAccepted x2" in scaled
    assert "LaunchRequest x2" in effects
    assert any(re.search(r"stage 2, 3 workers: (\S+@host-\d:\d+  ){2}\S+$", line) for line in lines)


def test_demo_shows_a_silent_worker_lost_and_replaced_with_back_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = run_demo(capsys)
    tick, accepted = line_after(lines, r"^t=\+100\.0s +tick")
    assert tick.endswith("-> WorkerStateChanged demo-1-worker-1-2 Failed (Lost);")
    assert accepted.strip() == "WorkerAccepted demo-1-worker-1-6 ready_at=+100.0s (back-off 0s)"
    crash, again = line_after(lines, r"status demo-1-worker-1-6 Failed")
    assert crash.endswith("WorkerStateChanged Failed (Error);")
    assert again.strip() == "WorkerAccepted demo-1-worker-1-7 ready_at=+110.0s (back-off 5s)"
    assert any(re.match(r"t=\+110\.0s +launch demo-1-worker-1-7 ", line) for line in lines)


def test_demo_kills_the_job_and_replays_to_an_identical_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = run_demo(capsys)
    kill, workers = line_after(lines, r"kill demo-1")
    assert kill.endswith("-> JobStateChanged Completed (Killed);")
    assert workers.strip() == "WorkerStateChanged Completed (Killed) x5"
    replay = next(line for line in lines if line.startswith("replayed"))
    events = re.fullmatch(r"replayed (\d+) events into a new ControlPlane: state identical", replay)
    assert events
    assert lines[-1].startswith("summary: 22 steps, ")
    assert f", {events[1]} events, " in lines[-1]
    assert lines[-1].endswith("7 workers (1 Error, 5 Killed, 1 Lost)")
    assert len(lines) <= 60


def test_demo_output_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(capsys) == run_demo(capsys)


def test_steps_delay_sleeps_between_steps(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    assert main.main(["demo", "--steps-delay", "0.25"]) == 0
    summary = re.search(r"summary: (\d+) steps", capsys.readouterr().out)
    assert summary
    assert slept == [0.25] * (int(summary[1]) - 1)


def test_summarise_counts_runs_that_differ_only_by_worker() -> None:
    killed = [
        WorkerStateChanged(
            f"j-1-worker-{i}-{i + 1}", WorkerState.Completed, 5.0, CompletedReason.Killed
        )
        for i in range(3)
    ]
    assert demo.summarise(killed) == ["WorkerStateChanged Completed (Killed) x3"]
    assert demo.summarise(killed[:1]) == ["WorkerStateChanged j-1-worker-0-1 Completed (Killed)"]
    assert demo.summarise(killed[:1], subject="j-1-worker-0-1") == [
        "WorkerStateChanged Completed (Killed)"
    ]


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

    status = main.main(["master", "--data-dir", str(tmp_path), "--port", "0", "--mesos", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert str(segment) in err and "mantis master --recover-from-snapshot" in err

"""The CLI shows failures safely: why a worker is pending or failed, with control characters
escaped so that a name or message cannot drive the terminal."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from adapters.cli.commands import escape, json_line, table, wait_until_started
from core.errors import CommandRejected

NASTY = "job\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil\nnext\tcol\x7f"


def test_escape_shows_every_control_character_and_keeps_other_text() -> None:
    shown = escape(NASTY)
    assert shown == "job\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202eevil\\nnext\\tcol\\x7f"
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)
    assert escape("héllo ✓ 数据 -> ok") == "héllo ✓ 数据 -> ok"


def test_json_output_is_valid_json_with_no_control_character_left_raw() -> None:
    value = {"name": NASTY, "n": [1, 2.5, None]}
    text = json_line(value, orjson.OPT_INDENT_2)
    assert orjson.loads(text) == value  # the same value, escapes decoded
    assert all(c == "\n" or not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) for c in text)
    assert "\u202e" not in text


def test_tables_escape_their_cells() -> None:
    out = table(["NAME", "STATE"], [[NASTY, "Failed"]])
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert out.count("\n") == 2  # a newline in a cell does not break the row


class Jobs:
    """A client whose job views follow a script, one per poll (the last one repeats)."""

    def __init__(self, views: list[dict[str, Any]]) -> None:
        self.views: Iterator[dict[str, Any]] = iter(views)
        self.last: dict[str, Any] = {}

    def get_job(self, jid: str) -> dict[str, Any]:
        self.last = next(self.views, self.last)
        return self.last


def view(*workers: dict[str, Any], state: str = "Accepted") -> dict[str, Any]:
    return {
        "jobMetadata": {"jobId": "demo-1", "state": state, "message": ""},
        "stageMetadataList": [{"stageNum": 1, "numWorkers": len(workers)}],
        "workerMetadataList": list(workers),
    }


def worker(state: str = "Accepted", number: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "workerIndex": 0,
        "workerNumber": number,
        "stageNum": 1,
        "state": state,
        "reason": "Normal",
        "message": "",
        "pendingReason": "",
        "resubmitOf": 0,
        "resubmitReason": None,
        "resubmitMessage": "",
        **extra,
    }


def wait(views: list[dict[str, Any]], timeout: float = 60.0) -> tuple[str, Any]:
    out = io.StringIO()
    ticks = iter(range(1000))
    try:
        result: Any = wait_until_started(
            Jobs(views),
            "demo-1",
            timeout,
            out,  # type: ignore[arg-type]
            clock=lambda: float(next(ticks)),
            sleep=lambda s: None,
        )
    except (CommandRejected, TimeoutError) as e:
        result = e
    return out.getvalue(), result


def test_wait_shows_why_a_worker_is_not_placed_once_then_its_progress() -> None:
    reason = "no agent offers 28000 MB memory (largest offer: 15000 MB memory)"
    out, job = wait(
        [
            view(worker(pendingReason=reason)),
            view(worker(pendingReason=reason)),
            view(worker("Launched")),
            view(worker("Started"), state="Launched"),
        ]
    )
    assert out.splitlines() == [
        "demo-1: 0/1 workers placed, 0/1 started",
        f"demo-1: worker 0 of stage 1 not placed: {reason}",
        "demo-1: 1/1 workers placed, 0/1 started",
        "demo-1: 1/1 workers placed, 1/1 started",
        "demo-1: all 1 worker Started",
    ]
    assert job["jobMetadata"]["state"] == "Launched"


def test_wait_stops_at_a_failed_worker_with_its_message() -> None:
    message = "ArtifactError: cannot import job module: No module named 'missing_dep'"
    out, error = wait(
        [
            view(worker("Launched")),
            view(worker(number=2, resubmitOf=1, resubmitReason="Error", resubmitMessage=message)),
        ]
    )
    assert isinstance(error, CommandRejected)
    assert str(error) == f"job demo-1: worker 0 of stage 1 (number 1) failed (Error): {message}"
    # A worker replaced on request (Relaunched) is no failure: waiting goes on, to its timeout.
    out, error = wait([view(worker(number=2, resubmitOf=1, resubmitReason="Relaunched"))], 3)
    assert isinstance(error, TimeoutError)


def test_wait_escapes_what_it_prints() -> None:
    out, _ = wait([view(worker(pendingReason=NASTY))], timeout=2)
    assert "\x1b" not in out and "\\x1b[2J" in out


@pytest.mark.parametrize("ended", ["Failed", "Completed"])
def test_wait_on_a_job_that_ended_names_how_its_workers_ended(ended: str) -> None:
    failed = worker("Failed", reason="Error", message="ValueError: boom")
    _, error = wait([view(failed, state=ended)])
    assert isinstance(error, CommandRejected)
    assert str(error) == (
        f"job demo-1 ended {ended}; worker 0 of stage 1 (number 1) Failed (Error): ValueError: boom"
    )

"""Golden logs: the stores recorded in tests/golden/ must load and replay to their recorded
state with this build, so a change that stops old stores from loading fails here.

The stores are real `EventLog` folders (segments, snapshots, archive) recorded by
scripts/record_golden_logs.py from simulated runs and the example jobs' lifecycle; each is
copied, opened, loaded and replayed, and the state's digest (tests/golden/digest.py), event
count and archive are compared with tests/golden/digests.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapters.store.log import EventLog
from tests.golden.digest import state_digest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
STORES = GOLDEN / "stores"
RECORDED: dict[str, dict[str, Any]] = json.loads((GOLDEN / "digests.json").read_text())
HOW = (
    "Stores written by earlier builds would load differently, or not at all. Make the change "
    "keep them readable (a new event field needs a default; a renamed one, a decoder for the "
    "old name). Only if breaking old stores is intended, re-record with "
    "`.venv/bin/python -m scripts.record_golden_logs` and say so in the commit."
)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_recorded_store_replays_to_its_recorded_state(name: str, tmp_path: Path) -> None:
    recorded = RECORDED[name]
    folder = tmp_path / name
    shutil.copytree(STORES / name, folder)
    before = files(folder)
    with EventLog(folder, snapshot_every=None) as store:
        events = store.load()
        archived = {jid: len(store.archived_job_events(jid)) for jid in store.archived_job_ids()}
    assert files(folder) == before, f"{name}: opening the recorded store changed it. {HOW}"
    assert (len(events), archived) == (recorded["events"], recorded["archived"]), (
        f"{name}: the recorded store loads {len(events)} events and archived jobs {archived}, "
        f"recorded: {recorded['events']} and {recorded['archived']}. {HOW}"
    )
    assert state_digest(events) == recorded["digest"], (
        f"{name}: the recorded store no longer replays to its recorded state. {HOW}"
    )


def test_the_golden_set_is_whole_and_small() -> None:
    assert sorted(p.name for p in STORES.iterdir()) == sorted(RECORDED)
    assert any(name.startswith("sim-") for name in RECORDED) and "examples" in RECORDED
    assert any(recorded["archived"] for recorded in RECORDED.values())
    size = sum(p.stat().st_size for p in GOLDEN.rglob("*") if p.is_file())
    assert size < 300 << 10, f"the golden files take {size} bytes; keep them under 300 KB"

"""The file store on a real full disk: a 1 MiB tmpfs, filled to the last page.

A write that does not fit fails with `StoreWriteFailed` (ENOSPC) and leaves the log exactly
as acknowledged; once space returns the same store object writes again, no restart. A
snapshot that does not fit leaves the old one in use and nothing of itself. Mounting needs
root (CI runs as root); elsewhere these tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from adapters.store.log import EventLog, StoreWriteFailed
from core.control import ControlPlane
from core.events import CronFired, Event
from tests.contracts.store import control_plane_batches, events, without
from tests.integration.disk import fill


def big(name: str, n: int = 40) -> list[Event]:
    """A batch of about 10 KB: more than what is left in any page of the disk."""
    return [CronFired(f"{name}-{i}-" + "x" * 200, float(i)) for i in range(n)]


def sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}


def test_appends_on_a_full_disk_change_nothing_and_work_again_when_space_returns(
    disk: Path,
) -> None:
    folder = disk / "store"
    store = EventLog(folder, snapshot_every=None)
    acked: list[Event] = []
    for i in range(12):
        store.append(events(3, f"b{i}-"))
        acked += events(3, f"b{i}-")
    filler = fill(disk)
    files = sizes(folder)
    for segment_bytes in (64 << 20, 1):  # a write into the segment's last page, a rotation
        store.close()
        store = EventLog(folder, segment_bytes=segment_bytes, snapshot_every=None)
        for attempt in range(2):
            with pytest.raises(StoreWriteFailed) as caught:
                store.append(big(f"lost{attempt}"))
            assert caught.value.errno == errno.ENOSPC
            assert str(caught.value).startswith("no space left on device (ENOSPC) writing ")
            assert str(folder) in str(caught.value)
            assert not store.healthy and store.last_error is caught.value
            assert sizes(folder) == files
            assert store.load() == acked
    with EventLog(folder, snapshot_every=None) as other:
        assert other.load() == acked  # what a restart would find
    filler.unlink()
    store.append(big("kept"))  # the same store object: no restart
    assert store.healthy and store.last_error is None
    assert len(sizes(folder)) == len(files) + 1  # it rotated
    store.close()
    with EventLog(folder, snapshot_every=None) as store:
        assert store.load() == acked + big("kept")


async def test_every_commit_of_a_failed_group_gets_the_error_and_the_next_group_lands(
    disk: Path,
) -> None:
    folder = disk / "store"
    store = EventLog(folder, snapshot_every=None)
    store.append(events(2, "acked"))
    filler = fill(disk)

    async def commits(name: str) -> list[BaseException | None]:
        return await asyncio.gather(
            *(store.commit(big(f"{name}{i}", 10)) for i in range(8)), return_exceptions=True
        )

    failed = await commits("lost")
    assert all(isinstance(r, StoreWriteFailed) and r.errno == errno.ENOSPC for r in failed)
    assert store.load() == events(2, "acked")
    filler.unlink()
    assert await commits("kept") == [None] * 8
    store.close()
    with EventLog(folder, snapshot_every=None) as store:
        assert store.load() == events(2, "acked") + [
            e for i in range(8) for e in big(f"kept{i}", 10)
        ]


def test_a_snapshot_that_does_not_fit_keeps_the_old_one_and_leaves_nothing(disk: Path) -> None:
    folder = disk / "store"
    plane, batches = control_plane_batches(seed=3, steps=300)
    half = len(batches) // 2
    store = EventLog(folder, snapshot_every=None)
    for batch in batches[:half]:
        store.append(batch)
    store.compact()
    for batch in batches[half:]:
        store.append(batch)
    before, archived = store.load(), store.archived_job_ids()
    old = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    filler = fill(disk)
    with pytest.raises(StoreWriteFailed, match=r"\(ENOSPC\) writing "):
        store.compact()
    assert {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == old
    assert store.load() == before and store.archived_job_ids() == archived
    filler.unlink()
    store.compact()
    state = ControlPlane.replay(store.load()).snapshot()
    assert state == without(plane.snapshot(), set(store.archived_job_ids()))
    assert len(store.archived_job_ids()) > len(archived)
    store.close()

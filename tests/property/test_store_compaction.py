"""Compaction keeps the live state: replay(compact(log)) is replay(log) minus the archived jobs.

Runs are seeded random ControlPlane runs (Hypothesis picks seeds and lengths). Beyond equal
snapshots, the compacted plane must behave the same from then on: the same commands give
the same events (job numbers, cron, SLA submissions and inherited definitions included).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.compaction import compact
from core.control import ControlPlane
from core.events import ClusterCreated, ClusterDeleted, Event, JobAccepted
from core.job import TERMINAL
from tests.contracts.store import control_plane_run, without

SEEDS = st.integers(0, 2**32)


def check(log: list[Event], seed: int) -> None:
    """Compact `log` and check the properties."""
    full = ControlPlane.replay(log)
    result = compact(log)
    archived = set(result.archived)
    for jid in archived:
        job = full.jobs[jid]
        assert job.state in TERMINAL, f"{jid} archived while {job.state}"
        newest = max(j.number for j in full.jobs.values() if j.cluster == job.cluster)
        assert job.number < newest, f"{jid} is its cluster's newest job"
        first = result.archived[jid][0]
        assert isinstance(first, JobAccepted) and first.job_id == jid
    assert {e.job_id for e in result.live if isinstance(e, JobAccepted)}.isdisjoint(archived)
    moved = [e for events in result.archived.values() for e in events]
    assert len(result.live) + len(moved) <= len(log)
    compacted = ControlPlane.replay(result.live)
    assert compacted.snapshot() == without(full.snapshot(), archived)
    # The compacted plane carries on exactly like the full one.
    later = max((getattr(e, "at", 0.0) for e in log), default=0.0) + 1.0
    _, full_next = control_plane_run(seed + 1, 120, plane=full, start=later)
    _, compacted_next = control_plane_run(seed + 1, 120, plane=compacted, start=later)
    assert compacted_next == full_next


@settings(max_examples=25)
@given(seed=SEEDS, steps=st.integers(0, 400))
def test_compaction_keeps_the_live_state_and_behaviour(seed: int, steps: int) -> None:
    _, log = control_plane_run(seed, steps)
    check(log, seed)


@settings(max_examples=15)
@given(seed=SEEDS, cut=st.floats(0, 1))
def test_compacting_again_after_more_events_is_the_same(seed: int, cut: float) -> None:
    """What the store does: snapshot, more events, snapshot of the snapshot and the rest."""
    _, log = control_plane_run(seed, 300)
    k = int(len(log) * cut)
    first = compact(log[:k])
    second = compact(first.live + log[k:])
    assert set(first.archived).isdisjoint(second.archived)
    once = compact(log)
    assert set(first.archived) | set(second.archived) == set(once.archived)
    for jid, events in once.archived.items():
        assert (first.archived.get(jid) or second.archived[jid]) == events
    assert ControlPlane.replay(second.live).snapshot() == ControlPlane.replay(once.live).snapshot()


def test_recreated_clusters_keep_counting_job_numbers_after_archiving() -> None:
    """Seeded runs where a cluster name is deleted and created again, with archived jobs."""
    recreated = 0
    for seed in range(12):
        _, log = control_plane_run(seed, 300)
        deleted: set[str] = set()
        for e in log:
            if isinstance(e, ClusterDeleted):
                deleted.add(e.name)
            elif isinstance(e, ClusterCreated) and e.definition.name in deleted:
                recreated += 1
        check(log, seed)
        full, compacted = ControlPlane.replay(log), ControlPlane.replay(compact(log).live)
        assert len(compacted.jobs) < len(full.jobs)
        for name, cluster in full.clusters.items():
            assert compacted.clusters[name].last_job_count == cluster.last_job_count
    assert recreated > 3

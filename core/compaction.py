"""Compaction of the event log: the live events that rebuild the state, and the archived jobs.

`compact(events)` splits a log into the events a replay still needs and, per terminal job
that can go, that job's own events (for the archive). Replaying the live events gives the
state of replaying them all, minus the archived jobs and their workers (and their ids in
their clusters' job lists). What the state depends on, and how it is kept:

- A job stays, with every event of its own, while it or one of its workers is not terminal
  (its workers end in events after the job's end, maybe in a later batch), and when it is
  the newest job of its cluster name: its JobAccepted sets the cluster's job count (the next
  job number, also across a delete and re-create of the name), and quick submit, cron and
  SLA submissions inherit its definition. Live jobs keep their whole history: their old
  workers are part of the state.
- Every other terminal job goes to the archive with its events (JobAccepted, its workers',
  JobStateChanged, StageScaled).
- A cluster incarnation (created .. deleted) keeps its ClusterCreated, at its place, holding
  its last definition (updates only change the definition, and the cron time below), and its
  ClusterDeleted. A live incarnation ends with its last ClusterEnabled if that disabled it,
  and with a CronFired at the time its cron time was last set, when that was not its creation
  (the next fire time follows from the spec, which has not changed since).
- An agent's mode keeps its last AgentModeChanged, unless that made it ACTIVE again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from core.events import (
    AgentModeChanged,
    ClusterCreated,
    ClusterDeleted,
    ClusterEnabled,
    ClusterUpdated,
    CronFired,
    Event,
    JobAccepted,
    JobStateChanged,
    StageScaled,
    WorkerAccepted,
    WorkerLaunched,
    WorkerStateChanged,
)
from core.job import TERMINAL
from core.migration import AgentMode
from core.worker import TERMINAL as WORKER_TERMINAL


@dataclass(slots=True)
class _Incarnation:
    created: ClusterCreated
    position: int
    cron_set_at: float  # when its cron time was last set
    last_enabled: ClusterEnabled | None = None


@dataclass(frozen=True, slots=True)
class Compacted:
    live: list[Event]
    archived: dict[str, list[Event]]  # job id -> its events, in log order


def compact(events: Iterable[Event]) -> Compacted:
    log = list(events)
    job_of: dict[str, str] = {}  # worker id -> job id
    ended: set[str] = set()  # terminal workers
    alive: dict[str, int] = {}  # job id -> its workers not terminal
    terminal: set[str] = set()
    newest: dict[str, tuple[int, str]] = {}  # cluster name -> (number, job id) of its newest job
    # Output slots: index in `log` -> the event to emit there (None: dropped).
    out: list[Event | None] = [None] * len(log)
    owner: list[str] = [""] * len(log)  # index -> the job the event belongs to ("" for clusters)
    live: dict[str, _Incarnation] = {}
    agents: dict[str, AgentModeChanged] = {}
    for i, e in enumerate(log):
        if isinstance(e, JobAccepted):
            owner[i] = e.job_id
            name = e.definition.cluster_name
            if e.number >= newest.get(name, (-1, ""))[0]:
                newest[name] = (e.number, e.job_id)
        elif isinstance(e, WorkerAccepted):
            job_of[e.worker_id] = e.job_id
            owner[i] = e.job_id
            alive[e.job_id] = alive.get(e.job_id, 0) + 1
        elif isinstance(e, WorkerLaunched):
            owner[i] = job_of[e.worker_id]
        elif isinstance(e, WorkerStateChanged):
            owner[i] = jid = job_of[e.worker_id]
            if e.state in WORKER_TERMINAL and e.worker_id not in ended:
                ended.add(e.worker_id)
                alive[jid] -= 1
        elif isinstance(e, StageScaled):
            owner[i] = e.job_id
        elif isinstance(e, JobStateChanged):
            owner[i] = e.job_id
            if e.state in TERMINAL:
                terminal.add(e.job_id)
            else:
                terminal.discard(e.job_id)
        elif isinstance(e, ClusterCreated):
            live[e.definition.name] = _Incarnation(e, i, e.at)
            out[i] = e
        elif isinstance(e, ClusterUpdated):
            inc = live[e.definition.name]
            if e.definition.sla != inc.created.definition.sla:
                inc.cron_set_at = e.at
            inc.created = replace(inc.created, definition=e.definition)
            out[inc.position] = inc.created
        elif isinstance(e, ClusterEnabled):
            live[e.name].last_enabled = e
        elif isinstance(e, CronFired):
            live[e.name].cron_set_at = e.at
        elif isinstance(e, ClusterDeleted):
            del live[e.name]
            out[i] = e
        elif isinstance(e, AgentModeChanged):
            agents[e.agent_id] = e
    keep = {jid for _, jid in newest.values()}
    archived: dict[str, list[Event]] = {}
    for i, e in enumerate(log):
        jid = owner[i]
        if not jid:
            continue
        if jid in terminal and not alive.get(jid) and jid not in keep:
            archived.setdefault(jid, []).append(e)
        else:
            out[i] = e
    kept = [e for e in out if e is not None]
    for name, inc in live.items():
        if inc.last_enabled is not None and not inc.last_enabled.enabled:
            kept.append(inc.last_enabled)
        if inc.cron_set_at != inc.created.at:
            kept.append(CronFired(name, inc.cron_set_at))
    kept += [e for e in agents.values() if e.mode is not AgentMode.ACTIVE]
    return Compacted(kept, archived)

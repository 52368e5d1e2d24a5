"""A worker: one task of one stage of a job, and its lifecycle as a `transitions` machine.

States and allowed moves are Mantis' WorkerState
(io.mantisrx.master.jobcluster.job.worker.WorkerState). One shared
Machine serves every worker: the trigger is fired on the worker object directly
(`WORKER_MACHINE.events[trigger].trigger(worker)`), which validates the move and sets
`worker.state`, without `add_model` (whose cost grows with the number of models).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from transitions import Machine, MachineError

from core.model import CompletedReason


class WorkerState(Enum):
    Accepted = "Accepted"
    Launched = "Launched"
    StartInitiated = "StartInitiated"
    Started = "Started"
    Failed = "Failed"
    Completed = "Completed"
    Noop = "Noop"
    Unknown = "Unknown"


S = WorkerState
RUNNING = frozenset({S.Launched, S.StartInitiated, S.Started})
TERMINAL = frozenset({S.Failed, S.Completed})

# (trigger, sources, destination): one trigger per destination, so a state names its trigger.
MOVES: tuple[tuple[str, tuple[WorkerState, ...], WorkerState], ...] = (
    ("launched", (S.Accepted,), S.Launched),
    ("start_initiated", (S.Launched, S.StartInitiated), S.StartInitiated),
    ("started", (S.Launched, S.StartInitiated, S.Started), S.Started),
    ("failed", (S.Accepted, S.Launched, S.StartInitiated, S.Started, S.Failed), S.Failed),
    ("completed", (S.Accepted, S.Launched, S.StartInitiated, S.Started), S.Completed),
)
WORKER_TRANSITIONS = [{"trigger": t, "source": list(src), "dest": d} for t, src, d in MOVES]
TRIGGER_TO: dict[WorkerState, str] = {d: t for t, _, d in MOVES}
ALLOWED: frozenset[tuple[WorkerState, WorkerState]] = frozenset(
    (s, d) for _, src, d in MOVES for s in src
)

WORKER_MACHINE = Machine(
    model=None,
    states=WorkerState,
    transitions=WORKER_TRANSITIONS,
    initial=None,
    auto_transitions=False,
    ignore_invalid_triggers=False,
    send_event=True,
)


@dataclass(slots=True, eq=False)
class Worker:
    """Mutable worker record; changed only by ControlPlane's event appliers."""

    worker_id: str
    job_id: str
    stage: int
    index: int
    number: int
    accepted_at: float
    ready_at: float
    resubmit_of: int = 0
    resubmit_count: int = 0
    state: WorkerState = WorkerState.Accepted
    agent_id: str = ""
    hostname: str = ""
    ports: tuple[int, ...] = ()
    launched_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    reason: CompletedReason | None = None
    message: str = ""
    # How the worker this one replaces ended (Failed with Error, Lost, Relaunched...): its
    # slot's last failure, still shown once the failed worker is no longer current.
    replaced_reason: CompletedReason | None = None
    replaced_message: str = ""
    # Volatile: not persisted; a recovering master gives running workers a fresh window.
    last_heartbeat_at: float | None = None
    is_subscribed: bool = False
    payloads: Mapping[str, str] = field(default_factory=dict)
    """The last heartbeat's payloads (data drops, resource usage...), for the API."""
    pending_reason: str = ""
    """Why the last offer round left this pending worker unplaced (Fenzo's assignment
    failure, core.scheduling.PlacementFailure); "" once placed or before any round."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    def move(self, dest: WorkerState) -> None:
        """Fire the transition to `dest`; raises MachineError if Mantis forbids it."""
        trigger = TRIGGER_TO.get(dest)
        if trigger is None:
            raise MachineError(f"no transition leads to {dest.name}")
        WORKER_MACHINE.events[trigger].trigger(self)

    def durable(self) -> tuple[object, ...]:
        """Everything that replay must rebuild (the volatile heartbeat fields excluded)."""
        return (
            self.worker_id,
            self.stage,
            self.index,
            self.number,
            self.accepted_at,
            self.ready_at,
            self.resubmit_of,
            self.resubmit_count,
            self.state,
            self.agent_id,
            self.hostname,
            self.ports,
            self.launched_at,
            self.started_at,
            self.completed_at,
            self.reason,
            self.message,
            self.replaced_reason,
            self.replaced_message,
        )

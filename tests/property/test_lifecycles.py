"""The job and worker machines allow exactly Mantis' transitions (JobState, WorkerState).

Mantis: io.mantisrx.master.jobcluster.job.JobState and its worker.WorkerState.

The reference tables here are transcribed from Mantis independently of core/, so that a
mistake in the machines' tables shows up as a difference.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transitions import MachineError

from core.job import JOB_MACHINE, JobState
from core.worker import WORKER_MACHINE, WorkerState

W = WorkerState
MANTIS_WORKER = {
    W.Accepted: {W.Launched, W.Failed, W.Completed},
    W.Launched: {W.StartInitiated, W.Started, W.Failed, W.Completed},
    W.StartInitiated: {W.StartInitiated, W.Started, W.Failed, W.Completed},
    W.Started: {W.Started, W.Failed, W.Completed},
    W.Failed: {W.Failed},
    W.Completed: set(),
    W.Noop: set(),
    W.Unknown: set(),
}
J = JobState
MANTIS_JOB = {
    J.Accepted: {J.Launched, J.Terminating_abnormal, J.Terminating_normal, J.Failed, J.Completed},
    J.Launched: {J.Terminating_abnormal, J.Terminating_normal, J.Failed, J.Completed},
    J.Terminating_abnormal: {J.Failed},
    J.Terminating_normal: {J.Completed},
    J.Failed: set(),
    J.Completed: set(),
    J.Noop: set(),
}
# Mantis also lists job self-loops (Accepted -> Accepted, ...): no-ops, so no trigger has them.


class Thing:
    __slots__ = ("state",)

    def __init__(self, state: object) -> None:
        self.state = state


MACHINES = [("worker", WORKER_MACHINE, MANTIS_WORKER), ("job", JOB_MACHINE, MANTIS_JOB)]
CASES = [
    (name, machine, table, state, trigger)
    for name, machine, table in MACHINES
    for state in table
    for trigger in machine.events
]


def dest_of(machine: object, trigger: str) -> object:
    (dest,) = {t.dest for ts in machine.events[trigger].transitions.values() for t in ts}
    return machine.get_state(dest).value


@pytest.mark.parametrize(
    ("name", "machine", "table", "state", "trigger"),
    CASES,
    ids=[f"{c[0]}-{c[3].name}-{c[4]}" for c in CASES],
)
def test_every_trigger_from_every_state(name, machine, table, state, trigger) -> None:
    thing = Thing(state)
    dest = dest_of(machine, trigger)
    if dest in table[state]:
        machine.events[trigger].trigger(thing)
        assert thing.state is dest
    else:
        with pytest.raises(MachineError):
            machine.events[trigger].trigger(thing)
        assert thing.state is state


@pytest.mark.parametrize(("name", "machine", "table"), MACHINES, ids=["worker", "job"])
def test_every_mantis_transition_has_a_trigger(name, machine, table) -> None:
    reachable = {
        (s, dest_of(machine, t))
        for s in table
        for t in machine.events
        if dest_of(machine, t) in table[s]
    }
    assert reachable == {(s, d) for s, ds in table.items() for d in ds}


@pytest.mark.parametrize(("name", "machine", "table"), MACHINES, ids=["worker", "job"])
@given(data=st.data())
def test_random_trigger_sequences_follow_mantis(name, machine, table, data) -> None:
    start = list(table)[0]
    thing = Thing(start)
    path = [start]
    for trigger in data.draw(st.lists(st.sampled_from(sorted(machine.events)), max_size=30)):
        before = thing.state
        try:
            machine.events[trigger].trigger(thing)
        except MachineError:
            assert thing.state is before
            continue
        assert thing.state in table[before]
        path.append(thing.state)
    terminal = [s for s in path if not table[s] or table[s] <= {s}]
    # Once terminal, a lifecycle never leaves its terminal state.
    if terminal:
        assert all(s is terminal[0] for s in path[path.index(terminal[0]) :])

"""`mantis demo`: a job's lifecycle driven through the real ControlPlane on a virtual clock.

Each step gives one command or observation to `core.control.ControlPlane` at a virtual time
and prints what came back: events (->, what the store would persist) and effects (=>, what
the adapters would do). Agents are simulated by round-robin placement. At the end the events
are replayed into a new ControlPlane, whose snapshot must equal the live one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import TextIO

from core.control import ControlPlane, Outcome
from core.effects import Effect, KillTask, LaunchRequest
from core.events import (
    ClusterCreated,
    Event,
    JobAccepted,
    JobStateChanged,
    StageScaled,
    WorkerAccepted,
    WorkerLaunched,
    WorkerStateChanged,
)
from core.model import (
    CompletedReason,
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.worker import WorkerState

CLUSTER = "demo"
USER = "alice"
AGENTS = 3
FIRST_PORT = 31000
TIME_WIDTH = 10
COMMAND_WIDTH = 36
LINE_WIDTH = 110


def cluster_definition() -> JobClusterDefinition:
    """Stage 1: two workers; stage 2: one worker, scalable."""
    machine = MachineDefinition(1, 512)
    stages = (StageSchedulingInfo(2, machine), StageSchedulingInfo(1, machine, scalable=True))
    config = JobClusterConfig("demo-job.zip", "1.0", 0.0, SchedulingInfo(stages))
    return JobClusterDefinition(CLUSTER, (config,), user=USER)


def _parts(item: Event | Effect) -> tuple[str, str, str]:
    """(kind, worker id, detail) of one event or effect."""
    match item:
        case ClusterCreated():
            return "ClusterCreated", "", item.definition.name
        case JobAccepted():
            return "JobAccepted", "", item.job_id
        case WorkerAccepted() if item.backoff_step >= 0:
            wait = item.ready_at - item.at
            return (
                "WorkerAccepted",
                item.worker_id,
                f"ready_at=+{item.ready_at:.1f}s (back-off {wait:g}s)",
            )
        case WorkerAccepted() | WorkerLaunched() | KillTask():
            return type(item).__name__, item.worker_id, ""
        case WorkerStateChanged() | JobStateChanged():
            why = f" ({item.reason.value})" if item.reason else ""
            subject = item.worker_id if isinstance(item, WorkerStateChanged) else ""
            return type(item).__name__, subject, item.state.value + why
        case StageScaled():
            return "StageScaled", "", f"stage {item.stage} to {item.workers}"
        case LaunchRequest():
            return "LaunchRequest", item.worker_id, ""
        case _:
            return type(item).__name__, "", ""


def summarise(items: Sequence[Event | Effect], subject: str = "") -> list[str]:
    """One phrase per item; a run of items that differ only by worker becomes `kind xN`."""
    phrases: list[tuple[str, str]] = []  # (without worker id, with it)
    for item in items:
        kind, wid, detail = _parts(item)
        short = " ".join(filter(None, (kind, detail)))
        long = short if wid == subject else " ".join(filter(None, (kind, wid, detail)))
        phrases.append((short, long))
    out: list[str] = []
    i = 0
    while i < len(phrases):
        j = i
        while j < len(phrases) and phrases[j][0] == phrases[i][0]:
            j += 1
        out.append(phrases[i][1] if j - i == 1 else f"{phrases[i][0]} x{j - i}")
        i = j
    return out


class Demo:
    """The scripted run: a ControlPlane, a virtual clock, simulated agents, an output."""

    def __init__(self, out: TextIO, steps_delay: float, sleep: Callable[[float], None]) -> None:
        self.plane = ControlPlane()
        self.out = out
        self.steps_delay = steps_delay
        self.sleep = sleep
        self.events: list[Event] = []
        self.effects: list[Effect] = []
        self.steps = 0
        self.placed = 0
        self.next_port = dict.fromkeys(range(1, AGENTS + 1), FIRST_PORT)

    def write(self, line: str = "") -> None:
        self.out.write(line.rstrip() + "\n")

    def step(
        self, at: float, command: str, call: Callable[[float], Outcome], subject: str = ""
    ) -> Outcome:
        if self.steps and self.steps_delay > 0:
            self.out.flush()
            self.sleep(self.steps_delay)
        self.steps += 1
        outcome = call(at)
        self.events += outcome.events
        self.effects += outcome.effects
        head = f"{f't=+{at:.1f}s':<{TIME_WIDTH}}{command:<{COMMAND_WIDTH}}"
        indent = " " * len(head)
        lines = self._wrapped("-> ", summarise(outcome.events, subject) or ["no events"])
        lines += (
            self._wrapped("=> ", summarise(outcome.effects, subject)) if outcome.effects else []
        )
        for n, line in enumerate(lines):
            self.write((head if n == 0 else indent) + line)
        return outcome

    def _wrapped(self, arrow: str, phrases: list[str]) -> list[str]:
        """`arrow` and the phrases joined by '; ', wrapped between phrases, never inside one."""
        width = LINE_WIDTH - TIME_WIDTH - COMMAND_WIDTH
        lines = [arrow + phrases[0]]
        for phrase in phrases[1:]:
            if len(lines[-1]) + 2 + len(phrase) > width:
                lines[-1] += ";"
                lines.append(" " * len(arrow) + phrase)
            else:
                lines[-1] += "; " + phrase
        return lines

    def launch(self, at: float, effects: Sequence[Effect]) -> list[str]:
        """Place each LaunchRequest on the next simulated agent, round robin; their worker ids."""
        launched = []
        for r in effects:
            if not isinstance(r, LaunchRequest):
                continue
            agent = self.placed % AGENTS + 1
            self.placed += 1
            first = self.next_port[agent]
            self.next_port[agent] += r.machine.ports_needed
            ports = tuple(range(first, first + r.machine.ports_needed))
            host = f"host-{agent}"
            call = partial(self.plane.worker_launched, r.worker_id, f"agent-{agent}", host, ports)
            self.step(max(at, r.ready_at), f"launch {r.worker_id} on {host}", call, r.worker_id)
            launched.append(r.worker_id)
        return launched

    def heartbeat(self, at: float, wid: str) -> Outcome:
        return self.step(at, f"heartbeat {wid}", lambda now: self.plane.heartbeat(wid, now), wid)

    def heartbeat_all_but(self, at: float, jid: str, silent: str) -> None:
        def beat(now: float) -> Outcome:
            merged = Outcome()
            for w in self.plane.job(jid).current_workers():
                if w.worker_id != silent and not w.terminal:
                    got = self.plane.heartbeat(w.worker_id, now)
                    merged.events += got.events
                    merged.effects += got.effects
            return merged

        self.step(at, f"heartbeat all but {silent}", beat)

    def show_scheduling_info(self, jid: str) -> None:
        self.write(
            f"{'':<{TIME_WIDTH}}JobSchedulingInfo of {jid} (index-number@host:port, Started)"
        )
        for stage in self.plane.scheduling_info(jid).stages:
            where = "  ".join(
                f"{h.index}-{h.number}@{h.hostname}:{h.ports[0]}" for h in stage.hosts
            )
            count = f"{stage.num_workers} worker{'s' if stage.num_workers != 1 else ''}:"
            self.write(f"{'':<{TIME_WIDTH}}  stage {stage.stage}, {count:<11}{where}")

    def verify_replay(self) -> bool:
        replayed = ControlPlane.replay(self.events)
        same = replayed.snapshot() == self.plane.snapshot()
        verdict = "state identical" if same else "STATE DIFFERS from the live control plane"
        self.write(f"replayed {len(self.events)} events into a new ControlPlane: {verdict}")
        return same

    def summary(self) -> str:
        plane = self.plane
        jobs = Counter(j.state.value for j in plane.jobs.values())
        ends = Counter(w.reason.value for w in plane.workers.values() if w.reason)
        return (
            f"summary: {self.steps} steps, {len(self.events)} events, {len(self.effects)} effects; "
            f"{len(plane.clusters)} cluster; {len(plane.jobs)} job {_counts(jobs)}; "
            f"{len(plane.workers)} workers {_counts(ends)}"
        )


def _counts(counter: Counter[str]) -> str:
    return "(" + ", ".join(f"{n} {name}" for name, n in sorted(counter.items())) + ")"


def run(
    out: TextIO, steps_delay: float = 0.0, sleep: Callable[[float], None] = lambda _: None
) -> int:
    """Play the script on `out`; 0 when the replayed state equals the live one, else 1."""
    d = Demo(out, steps_delay, sleep)
    plane = d.plane
    d.write("mantis demo: the real core.control.ControlPlane on a virtual clock")
    d.write(f"{'':<{TIME_WIDTH}}{'(command or observation)':<{COMMAND_WIDTH}}-> events  => effects")
    d.step(0.0, f"create cluster {CLUSTER}", partial(plane.create_cluster, cluster_definition()))
    submitted = d.step(
        1.0, f"submit a job to {CLUSTER}", partial(plane.submit_job, CLUSTER, JobRequest(), USER)
    )
    jid = submitted.job_id
    first = d.launch(2.0, submitted.effects)
    for wid in first:
        d.heartbeat(3.0, wid)
    d.show_scheduling_info(jid)

    scale = partial(plane.scale_stage, jid, 2, 3, USER, "more throughput")
    scaled = d.step(10.0, f"scale stage 2 of {jid} to 3", scale)
    for wid in d.launch(11.0, scaled.effects):
        d.heartbeat(12.0, wid)

    silent = first[1]
    d.heartbeat_all_but(40.0, jid, silent)
    d.heartbeat_all_but(80.0, jid, silent)
    timeout = plane.job(jid).worker_timeout_secs * plane.config.heartbeat_tolerance
    lost = d.step(100.0, f"tick (heartbeat timeout {timeout:g}s)", plane.tick)
    (replacement,) = d.launch(101.0, lost.effects)
    d.heartbeat(102.0, replacement)
    crash = partial(
        plane.worker_status,
        replacement,
        WorkerState.Failed,
        reason=CompletedReason.Error,
        message="exit code 1",
    )
    crashed = d.step(105.0, f"status {replacement} Failed", crash, replacement)
    (second,) = d.launch(105.0, crashed.effects)
    d.heartbeat(111.0, second)
    d.show_scheduling_info(jid)
    d.step(120.0, f"kill {jid}", partial(plane.kill_job, jid, USER, "demo over"))

    d.write()
    same = d.verify_replay()
    d.write(d.summary())
    return 0 if same else 1

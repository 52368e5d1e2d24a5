"""`MasterService`: decide on the core, persist the events, then act; one master for every world.

Every input, a REST command, a resource-manager observation (offers, task statuses,
(re-)registration) or the timer's tick, runs on the `ControlPlane` at the clock's now. Its
events are persisted through the Store port before anything else; only then are its effects
carried out through the ResourceManager port (launch, kill, decline, revive) and watchers told.
Production (`mantis master`), the simulation and the test harness wrap this one class with
their own store, resource manager and clock.

Two ways in, one dispatch:
- `run(command)`: synchronous (`Store.append`), for the simulation and scripts.
- `await call(command)`: for an event loop. Commits are grouped: while one batch is being
  written, the outcomes of later commands queue and go to the store together in the next
  write, so concurrent requests share one fsync. A command's effects wait for the commit of
  every command before it, so nothing acts on a state that is not durable.
Observations follow `group_commit`: as tasks on the loop through `call`, or inline through `run`.

A failed commit changes nothing: the commands of that batch and of every batch queued behind
it (computed on top of it) fail with `NotPersisted`, the plane is rebuilt from the store, and
the master reports unhealthy until a commit succeeds again; new commands are tried as they
come, so it recovers by itself once the store can write (space returns, say).

Effects are never lost silently: on every (re-)registration the service asks for the state of
every task it placed (a launch that never reached an agent comes back TASK_LOST and is
replaced) and of all tasks (one it forgot is killed); and a worker still Launched, with no
word from its agent `unconfirmed_launch_secs` after its launch, is asked about again, so a
lost ACCEPT costs seconds, not the heartbeat timeout. A lost kill is repeated when the task
heartbeats or shows up in a reconciliation.

Resource-manager calls must not block: adapters queue them (the pymesos adapter runs them on
its own thread, in order).
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from core.control import ControlPlane, Outcome
from core.effects import (
    DeclineOffers,
    KillTask,
    LaunchRequest,
    LaunchTask,
    PublishSchedulingInfo,
    PublishStatus,
)
from core.errors import NotFound
from core.events import ClusterCreated, Event, JobAccepted
from core.model import JobClusterConfig, JobClusterDefinition
from core.ports import ResourceManager, Store, TaskLaunch, TaskStatus
from core.scheduling import Offer
from service.metrics import MasterMetrics
from service.watchers import Watchers
from service.worker_task import WorkerTaskSettings, worker_task

log = structlog.get_logger()

Command = Callable[[ControlPlane, float], Outcome]
Clock = Callable[[], float]
UNCONFIRMED_LAUNCH_SECS = 10.0


class NotPersisted(Exception):
    """The store could not persist a command's events: the command did not happen."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        code = getattr(cause, "errno", None) or getattr(cause.__cause__, "errno", None)
        self.out_of_space = code in (errno.ENOSPC, errno.EDQUOT)
        what = "no space left for the store" if self.out_of_space else "the store cannot write"
        super().__init__(f"{what}: {cause}; nothing was changed")


class MasterService:
    """The master; implements `core.ports.ResourceManagerEvents` for its resource manager."""

    def __init__(
        self,
        store: Store,
        resource_manager: ResourceManager,
        clock: Clock = time.time,
        *,
        worker_tasks: WorkerTaskSettings | None = None,
        group_commit: bool = True,
        archive: Callable[[str], Sequence[Event]] | None = None,
        audit: Callable[[Outcome], None] | None = None,
        unconfirmed_launch_secs: float = UNCONFIRMED_LAUNCH_SECS,
    ) -> None:
        """`archive(job_id)`: the events of an archived job (the store's archive), for reads.
        `worker_tasks`: how workers are started; without, tasks carry no command (the
        simulation's). `audit(outcome)`: called once an outcome is durable, before its effects (the
        simulation checks its invariants there)."""
        self.store = store
        self.rm = resource_manager
        self.clock = clock
        self.plane = ControlPlane.replay(store.load())
        self.metrics = MasterMetrics(lambda: self.plane)
        self.worker_tasks = worker_tasks
        self.group_commit = group_commit
        self._archive = archive
        self._audit = audit
        self.unconfirmed_launch_secs = unconfirmed_launch_secs
        self._next_launch_check = 0.0
        self.watchers = Watchers()
        self.last_submitted = _last_submitted(self.plane)
        self.healthy = True
        self.last_error = ""
        self._queue: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Re-queue what the store says is pending, then subscribe to the resource manager."""
        self._carry_out(self.plane.recover(self.clock()))
        self.rm.start(self)

    def stop(self) -> None:
        """Stop acting; the resource manager keeps the framework's tasks running."""
        for task in self._tasks:
            task.cancel()
        self.rm.stop()
        self.watchers.close()

    # -- commands -----------------------------------------------------------------------------

    def run(self, command: Command) -> Outcome:
        """Run a command at the clock's now, append its events, then carry out its effects.

        Raises the command's rejection (nothing changed) or `NotPersisted`."""
        outcome = command(self.plane, self.clock())
        if outcome.events:
            try:
                self.metrics.append(lambda: self.store.append(outcome.events), len(outcome.events))
            except Exception as e:
                raise self._failed(e) from e
            self._succeeded()
        self._carry_out(outcome)
        return outcome

    async def call(self, command: Command) -> Outcome:
        """`run` on an event loop, with grouped commits (see the module docstring). The effects
        are carried out by the committing task, so a caller that goes away (a client hangs up)
        loses none of them."""
        outcome = command(self.plane, self.clock())
        if not (outcome.events or self._queue or self._flushing):
            self._carry_out(outcome)
            return outcome
        done = asyncio.get_running_loop().create_future()
        self._queue.append((outcome, done))
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush(), "commit")
        await done
        return outcome

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                events = [e for outcome, _ in batch for e in outcome.events]
                try:
                    if events:
                        await self.metrics.commit(self.store.commit(events), len(events))
                except Exception as e:
                    error = self._failed(e)
                    batch, self._queue = batch + self._queue, []  # computed on top: void too
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                    return
                if events:
                    self._succeeded()
                for outcome, done in batch:
                    try:
                        self._carry_out(outcome)
                    except Exception:  # one bad effect must not strand the callers behind it
                        log.exception("master_effects_failed")
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flushing = False

    def _failed(self, cause: BaseException) -> NotPersisted:
        """Forget what was not persisted: the plane becomes the store's state again."""
        error = NotPersisted(cause)
        self.healthy, self.last_error = False, str(error)
        log.error("master_store_write_failed", error=str(cause), out_of_space=error.out_of_space)
        self.plane = ControlPlane.replay(self.store.load())
        self.last_submitted = _last_submitted(self.plane)
        self._carry_out(self.plane.recover(self.clock()))
        self.watchers.wake_all()
        return error

    def _succeeded(self) -> None:
        if not self.healthy:
            log.info("master_store_writes_again")
        self.healthy, self.last_error = True, ""

    # -- the one effect dispatch ---------------------------------------------------------------

    def _carry_out(self, outcome: Outcome) -> None:
        """After the events are durable: act through the resource manager, tell watchers."""
        if self._audit is not None:
            self._audit(outcome)
        for event in outcome.events:
            if isinstance(event, JobAccepted):
                cluster = event.definition.cluster_name
                self.last_submitted[cluster] = event.job_id
                self.watchers.cluster_submitted(cluster)
        launches: list[LaunchTask] = []
        changed: set[str] = set()
        revive = False
        for effect in outcome.effects:
            if isinstance(effect, LaunchTask):
                launches.append(effect)
            elif isinstance(effect, DeclineOffers):
                self.rm.decline(effect.offer_ids, effect.refuse_seconds)
            elif isinstance(effect, KillTask):
                # A worker the plane knows that has no agent was only a launch request, which
                # nothing outside holds; an unknown worker (its heartbeat came) is killed by id.
                if effect.agent_id or effect.worker_id not in self.plane.workers:
                    self.rm.kill(effect.worker_id, effect.agent_id, effect.grace_secs)
            elif isinstance(effect, LaunchRequest):
                revive = True
            elif isinstance(effect, PublishSchedulingInfo):
                changed.add(effect.job_id)
            elif isinstance(effect, PublishStatus):
                self.watchers.keep_status(effect)
        if launches:
            settings = self.worker_tasks
            self.rm.launch(
                [
                    worker_task(self.plane.job(t.request.job_id), t, settings)
                    if settings
                    else TaskLaunch(t)
                    for t in launches
                ]
            )
        if revive:
            self.rm.revive()
        for jid in changed:
            self.watchers.job_changed(jid)
        if outcome.events:
            self.watchers.changed()

    # -- ResourceManagerEvents -------------------------------------------------------------------

    def registered(self, framework_id: str) -> None:
        """(Re-)registered: ask for the state of every task the plane thinks is placed (a
        launch that never reached an agent comes back TASK_LOST and is replaced), then of all
        (tasks the plane forgot are killed), and ask for offers again."""
        plane = self.plane
        placed = [
            (w.worker_id, w.agent_id)
            for w in plane.workers.values()
            if w.running and w.agent_id and not plane.jobs[w.job_id].terminal
        ]
        log.debug("master_reconciling", framework_id=framework_id, tasks=len(placed))
        self.rm.reconcile(placed)
        self.rm.reconcile([])
        self.rm.revive()

    def offers(self, offers: Sequence[Offer]) -> None:
        self._observe(
            lambda p, now: self.metrics.offer_round(offers, lambda: p.on_offers(offers, now)),
            "offers",
        )

    def rescinded(self, offer_id: str) -> None:
        pass  # offers are used within the call that receives them

    def task_status(self, status: TaskStatus) -> None:
        self._observe(
            lambda p, now: p.task_status(status, now),
            "task_status",
            lambda: self.rm.acknowledge(status),  # only once its events are durable
        )

    def tick(self) -> None:
        """Fire the plane's timers (heartbeats, runtime limits, cron, SLA); ask about launches
        the resource manager has not confirmed."""
        self._observe(lambda p, now: p.tick(now), "tick")
        now = self.clock()
        if now >= self._next_launch_check:
            self._next_launch_check = now + self.unconfirmed_launch_secs
            self._reconcile_unconfirmed(now)

    def _reconcile_unconfirmed(self, now: float) -> None:
        unconfirmed = [
            (w.worker_id, w.agent_id)
            for w in self.plane.launched_workers()
            if w.launched_at is not None and now - w.launched_at >= self.unconfirmed_launch_secs
        ]
        if unconfirmed:
            log.info("master_unconfirmed_launches", tasks=[t for t, _ in unconfirmed])
            self.rm.reconcile(unconfirmed)

    def _observe(self, command: Command, what: str, then: Callable[[], None] | None = None) -> None:
        if not self.group_commit:
            try:
                self.run(command)
            except NotPersisted:
                return  # not acknowledged: the resource manager sends it again
            if then is not None:
                then()
            return

        async def observe() -> None:
            try:
                await self.call(command)
            except NotPersisted:
                return
            if then is not None:
                then()

        self._spawn(observe(), what)

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("master_task_failed", task=task.get_name(), error=repr(task.exception()))

    # -- reads for the API ----------------------------------------------------------------------

    def archived_plane(self, jid: str) -> ControlPlane | None:
        """A plane holding only the archived job `jid` (its events replayed on a stand-in
        cluster), or None if the store has not archived it."""
        if self._archive is None:
            return None
        try:
            events = self._archive(jid)
        except NotFound:
            return None
        accepted = next((e for e in events if isinstance(e, JobAccepted)), None)
        if accepted is None:
            return None
        d = accepted.definition
        config = JobClusterConfig(
            d.artifact_name, d.version, accepted.at, d.scheduling_info, d.job_jar_url
        )
        stand_in = ClusterCreated(JobClusterDefinition(d.cluster_name, (config,)), accepted.at)
        return ControlPlane.replay([stand_in, *events])


def _last_submitted(plane: ControlPlane) -> dict[str, str]:
    """Each cluster's newest job id (Mantis' lastSubmittedJobIdStream starts from it)."""
    return {name: c.job_ids[-1] for name, c in plane.clusters.items() if c.job_ids}

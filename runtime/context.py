"""The Context a job's code sees: parameters, worker info, metrics and the live worker map.

Mantis' ``io.mantisrx.runtime.Context``. The worker process builds one per worker: it
resolves the job's parameters, fills in ``WorkerInfo`` from its task environment, reads
``Metrics.snapshot()`` into heartbeats, and calls ``update_worker_map`` on every
scheduling-info change; user code reads parameters and the map and subscribes to changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

log = structlog.get_logger()

T = TypeVar("T")


def slot_name(stage: int, index: int) -> str:
    """The keyed-routing slot of worker `index` of `stage`: a replacement keeps its keys."""
    return f"stage_{stage}_index_{index}"


@dataclass(frozen=True)
class WorkerInfo:
    """Who this worker is: job, stage (1-based), index (stable), number (unique per start)."""

    job_name: str
    job_id: str
    stage: int
    worker_index: int
    worker_number: int
    total_workers: int
    """Workers of this stage."""
    total_stages: int = 1

    @property
    def slot(self) -> str:
        """The name this worker gives upstream workers for keyed routing (runtime.transport)."""
        return slot_name(self.stage, self.worker_index)

    @property
    def is_first_stage(self) -> bool:
        return self.stage == 1

    @property
    def is_last_stage(self) -> bool:
        return self.stage == self.total_stages


@dataclass(frozen=True)
class WorkerHost:
    """One Started worker of a stage, as the job's scheduling info lists it."""

    host: str
    port: int
    """Its sink port: the next stage connects here."""
    worker_index: int
    worker_number: int
    state: str = "Started"
    metrics_port: int | None = None


WorkerMap = Mapping[int, tuple[WorkerHost, ...]]
"""Stage number -> its Started workers, by worker index."""


def worker_map_from_scheduling_info(info: Mapping[str, Any]) -> dict[int, tuple[WorkerHost, ...]]:
    """A WorkerMap from a JobSchedulingInfo JSON object (Mantis' io.mantisrx.server.core
    JobSchedulingInfo, WorkerAssignments and WorkerHost).

    ``{jobId, workerAssignments: {stage: {stage, numWorkers, hosts: {number: {host, port:
    [sinkPort], workerIndex, state, workerNumber, metricsPort}}}}}``; workers not Started and
    hosts without a port are left out. Raises ValueError on a malformed object.
    """
    out: dict[int, tuple[WorkerHost, ...]] = {}
    try:
        for stage_key, assignment in (info.get("workerAssignments") or {}).items():
            hosts: list[WorkerHost] = []
            for number_key, h in (assignment.get("hosts") or {}).items():
                state = str(h.get("state", "Started"))
                ports = h.get("port") or []
                if state != "Started" or not ports:
                    continue
                metrics_port = h.get("metricsPort")
                hosts.append(
                    WorkerHost(
                        host=str(h["host"]),
                        port=int(ports[0]),
                        worker_index=int(h["workerIndex"]),
                        worker_number=int(h.get("workerNumber", number_key)),
                        state=state,
                        metrics_port=None if metrics_port is None else int(metrics_port),
                    )
                )
            hosts.sort(key=lambda w: (w.worker_index, w.worker_number))
            out[int(assignment.get("stage", stage_key))] = tuple(hosts)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed scheduling info: {type(e).__name__}: {e}") from e
    return dict(sorted(out.items()))


class Counter:
    """A monotonically increasing count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


class Gauge:
    """A value that goes up and down."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def set(self, v: float) -> None:
        self.value = v

    def inc(self, n: float = 1) -> None:
        self.value += n

    def dec(self, n: float = 1) -> None:
        self.value -= n


class Metrics:
    """Named counters and gauges; ``snapshot()`` is what goes into heartbeats.

    ``counter(name)`` returns the same Counter for the same name (keep it, don't look it up
    per event). A name is either a counter or a gauge, not both.
    """

    def __init__(self) -> None:
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}

    def counter(self, name: str) -> Counter:
        c = self._counters.get(name)
        if c is None:
            if name in self._gauges:
                raise ValueError(f"metric {name!r} is a gauge")
            c = self._counters[name] = Counter()
        return c

    def gauge(self, name: str) -> Gauge:
        g = self._gauges.get(name)
        if g is None:
            if name in self._counters:
                raise ValueError(f"metric {name!r} is a counter")
            g = self._gauges[name] = Gauge()
        return g

    def counters(self) -> dict[str, int]:
        """Every counter's value, by name (runtime.metrics exports them as counters)."""
        return {n: c.value for n, c in self._counters.items()}

    def gauges(self) -> dict[str, float]:
        """Every gauge's value, by name."""
        return {n: g.value for n, g in self._gauges.items()}

    def snapshot(self) -> dict[str, float]:
        """Every metric's current value, by name (sorted)."""
        values: dict[str, float] = {n: c.value for n, c in self._counters.items()}
        values.update((n, g.value) for n, g in self._gauges.items())
        return dict(sorted(values.items()))


WorkerMapListener = Callable[[WorkerMap], None]


class Context:
    """What a job's source, stages and sink see of their worker."""

    def __init__(
        self,
        parameters: Mapping[str, object] | None = None,
        worker: WorkerInfo | None = None,
        metrics: Metrics | None = None,
        worker_map: WorkerMap | None = None,
        on_complete: Callable[[], None] | None = None,
    ) -> None:
        self.parameters: Mapping[str, object] = dict(parameters or {})
        self.worker = worker or WorkerInfo("local", "local-1", 1, 0, 1, 1, 1)
        self.metrics = metrics or Metrics()
        self._worker_map: WorkerMap = dict(worker_map or {})
        self._listeners: list[WorkerMapListener] = []
        self._on_complete = on_complete
        self.completed = False

    # parameters -------------------------------------------------------------------------------

    def param(self, name: str, kind: type[T]) -> T:
        """A resolved parameter's value, checked to be a `kind` (KeyError if not defined)."""
        value = self.parameters[name]
        if not isinstance(value, kind):
            raise TypeError(f"parameter {name!r} is a {type(value).__name__}, not {kind.__name__}")
        return value

    # worker map -------------------------------------------------------------------------------

    @property
    def worker_map(self) -> WorkerMap:
        """The Started workers of every stage, as last reported by the master."""
        return self._worker_map

    def workers_of(self, stage: int) -> tuple[WorkerHost, ...]:
        return self._worker_map.get(stage, ())

    def subscribe_worker_map(
        self, listener: WorkerMapListener, *, replay: bool = True
    ) -> Callable[[], None]:
        """Call `listener(map)` on every change (and at once with the current map, if
        `replay`); returns a function that unsubscribes."""
        self._listeners.append(listener)
        if replay:
            listener(self._worker_map)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def update_worker_map(self, worker_map: WorkerMap) -> bool:
        """Set the map (the worker calls this); listeners hear of it if it changed.

        A listener that raises is logged and does not stop the others.
        """
        new = dict(worker_map)
        if new == self._worker_map:
            return False
        self._worker_map = new
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception as e:
                log.warning("worker_map_listener_failed", error=repr(e))
        return True

    # lifecycle --------------------------------------------------------------------------------

    def complete_and_exit(self) -> None:
        """Ask the worker to finish this job normally (Mantis' ``completeAndExit``)."""
        self.completed = True
        if self._on_complete is not None:
            self._on_complete()

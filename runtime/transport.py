"""Stage-to-stage transport over TCP: upstream workers serve, downstream workers connect.

This module holds the design and the types both sides share; the sides are
``runtime.stage_output.StageOutputServer`` and ``runtime.stage_input.StageInput``.

Who connects to whom follows Mantis ("pull connect, push data", as in
WorkerExecutionOperationsNetworkStage.connectToObservableAtPreviousStages): a
worker whose stage has a next stage listens on its sink port (``StageOutputServer``); each
worker of the next stage learns the Started workers of the previous stage from the job's
scheduling info and connects to every one of them (``StageInput``), names itself with a HELLO
frame, and from then on only reads. So a worker never needs to know its downstream, a new or
replaced downstream worker simply connects, and an upstream worker that is replaced is found
again by the downstream's reconnect loop or by the next scheduling-info update.

Admission: the HELLO names the downstream worker (``WorkerId``: job id, stage, index, worker
number). The upstream worker follows the job's scheduling info too, so it knows the newest
worker number of every downstream slot (``StageOutputServer.set_downstream_workers``; a HELLO
with a newer number teaches it as well). A connection from an older number of a slot, from
another job or from a stage that is not the next one is refused: a ``REFUSE`` frame with the
reason, then the connection closes (one already routed to is taken out of routing at once).
The refused input stops and raises ``Refused`` to its consumer, and the worker exits. This is
what keeps a worker that was replaced, yet survived (its agent was killed and the worker
lived on), from taking half of its slot's output as a second consumer.

Sending (``StageOutputServer``):

- Batching: events wait in a per-connection list and go out as one frame (runtime.codec) when
  ``batch_size`` are there or ``flush_interval`` seconds after the first, whichever is first.
- Scalar output (``Routing.ROUND_ROBIN``) goes round-robin across connections, skipping any
  whose buffer is full. Keyed output (``Routing.KEYED``) goes by consistent hashing of the key
  (runtime.routing, 1,000 virtual nodes per downstream slot, as in Mantis): the same key
  reaches the same downstream worker, from every upstream worker, for as long as the set of
  downstream workers stays the same; adding or removing one moves only its share of the keys.
- Declared membership: a worker declares its next stage's slots from the scheduling info
  (``set_downstream_slots``, one per worker index: at first all ``numWorkers`` of them, Started
  or not; see runtime.worker.downstream_indices for a rescale), and keys are hashed over those
  rather than over the connected ones. A key whose owner is not connected (not yet started,
  or being replaced) is dropped and counted (lossy) or waits for it (blocking); it never goes
  to another worker meanwhile. Hashing over the connected workers instead sent every key to
  the first worker to connect and moved half of them when the second did, so two workers
  counted the same key in the same window. Keys move only when the slots change (a stage
  rescaled).
- Completion: an upstream worker whose stage completed sends ``END`` after its last events
  (``finish``); a downstream input whose upstream workers have all ended ends too.
- Backpressure: each connection has a bounded buffer of ``buffer_events`` events, which fills
  only while the socket is not writable (asyncio's ``pause_writing``). ``Backpressure.LOSSY``
  (Mantis' default) drops what does not fit and counts it; ``Backpressure.BLOCKING`` makes the
  ``send*`` coroutines wait for room instead (and, with no downstream connected, for one).
  ``stats()`` gives ``on_next_count`` and ``dropped_count`` for heartbeats. Events still
  buffered for a connection that is lost are dropped and counted in both modes.
- On an idle connection a HEARTBEAT frame goes out every ``heartbeat_interval`` seconds, so a
  downstream worker can tell a silent upstream from a dead one (``idle_timeout``).

Receiving (``StageInput``): one connection task per (upstream endpoint, partition), which
connects, says HELLO, reads frames until the connection ends, then reconnects with exponential
back-off (jittered, reset after a connection that delivered data) until the endpoint is removed
by ``set_upstreams``. Decoded batches from all upstream workers are merged into one bounded
queue; when it is full, reading pauses, so TCP pushes back on the upstream worker, whose
backpressure mode then decides between dropping and waiting.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Any

import orjson

from common.backpressure import Backpressure as Backpressure  # re-exported: stages use it
from runtime.codec import FrameError, Payload


class Routing(enum.Enum):
    """How a stage's output is spread over the workers of the next stage."""

    ROUND_ROBIN = "round_robin"
    KEYED = "keyed"


class TransportClosed(Exception):
    """The server or input was closed while a caller was waiting on it."""


class Refused(Exception):
    """An upstream worker refused this input: its worker was replaced or is of another job."""


@dataclass(frozen=True)
class WorkerId:
    """A worker as the stage-to-stage handshake names it."""

    job_id: str
    stage: int
    index: int
    number: int

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job_id, "stage": self.stage, "index": self.index, "number": self.number}

    @classmethod
    def from_hello(cls, payload: Payload) -> WorkerId | None:
        """The worker a HELLO names; None if it names none (a peer that only gives a slot)."""
        try:
            worker = orjson.loads(payload).get("worker")
            if worker is None:
                return None
            job, stage, index, number = (
                worker["job"],
                worker["stage"],
                worker["index"],
                worker["number"],
            )
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            raise FrameError("malformed HELLO worker") from None
        if not isinstance(job, str) or not all(type(v) is int for v in (stage, index, number)):
            raise FrameError("malformed HELLO worker")
        return cls(job, stage, index, number)

    def __str__(self) -> str:
        return f"{self.job_id} stage {self.stage} index {self.index} worker {self.number}"


@dataclass(frozen=True)
class Endpoint:
    """Where an upstream worker serves its output."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class OutputStats:
    """Counters of a StageOutputServer; ``on_next_count`` and ``dropped_count`` go in heartbeats.

    Every event offered is counted once, in ``on_next_count`` (accepted into a buffer) or in
    ``dropped_count``; an accepted event that is lost with its connection or fails to encode
    is counted in both. ``sent_count``: events written to sockets. ``lost_in_flight``: written
    events a lost connection's receiver never acknowledged (also in ``dropped_count``).
    """

    on_next_count: int
    dropped_count: int
    sent_count: int
    encode_errors: int
    lost_in_flight: int
    connections: int
    slots: tuple[str, ...]


@dataclass(frozen=True)
class InputStats:
    """Counters of a StageInput."""

    received_count: int
    batch_count: int
    connects: int
    disconnects: int
    connected: int
    frame_errors: int


def resolve(fut: asyncio.Future[None] | None, exc: Exception | None = None) -> None:
    """Wake whoever awaits `fut` (with `exc`, if given), unless it is done already."""
    if fut is not None and not fut.done():
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)

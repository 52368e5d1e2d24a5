"""What a sender does when a receiver's buffer is full: shared by the stage-to-stage transport
(runtime.transport) and the SSE sink (common.sse_sink), as Mantis' sinks and connections
share one choice."""

from __future__ import annotations

import enum


class Backpressure(enum.Enum):
    """What happens to an event when a connection's buffer is full."""

    LOSSY = "lossy"
    """Drop it and count it (Mantis' default)."""
    BLOCKING = "blocking"
    """The sender waits for room (no loss while connections live)."""

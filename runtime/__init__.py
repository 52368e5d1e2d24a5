"""The worker side of mantis-py: what runs inside a job's workers.

- ``runtime.codec``: the wire format between workers (length-prefixed frames of event batches).
- ``runtime.routing``: consistent hashing with virtual nodes, for keyed output.
- ``runtime.transport``: the stage-to-stage TCP transport's design and shared types; upstream
  workers serve (``runtime.stage_output.StageOutputServer``), downstream workers connect
  (``runtime.stage_input.StageInput``).
- ``runtime.sse``: the SSE sink of a job's last stage (``SseSink``), with Mantis' query
  parameters.
- ``runtime.tuning``: process-wide tuning for worker processes (GC thresholds).
"""

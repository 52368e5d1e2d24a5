"""The worker side of mantis-py: what runs inside a job's workers.

- ``runtime.codec``: the wire format between workers (length-prefixed frames of event batches).
- ``runtime.routing``: consistent hashing with virtual nodes, for keyed output.
- ``runtime.transport``: the stage-to-stage TCP transport's design and shared types; upstream
  workers serve (``runtime.stage_output.StageOutputServer``), downstream workers connect
  (``runtime.stage_input.StageInput``).
- ``runtime.tuning``: process-wide tuning for worker processes (GC thresholds).
- ``runtime.job``: the job DSL: ``Job`` (source, stages, sink, parameters), ``load_job`` for
  artifacts exposing ``job()``, and ``run_local`` to run every stage in one process.
- ``runtime.stages``: stage kinds (scalar, key, group-to-scalar with count or time windows,
  group-to-group, and Mantis' per-key kinds), over reactivex pipelines or plain functions over
  batches.
- ``runtime.engines``: the running form of a stage, driven batch by batch by the worker.
- ``runtime.windows``: per-key count and time windows, and their engine.
- ``runtime.parameters``: typed job parameters with defaults and validation.
- ``runtime.context``: what user code sees: parameters, worker info, metrics, the worker map.
- ``runtime.sources``: job sources: synthetic, file, SSE, and other jobs (``JobSource``).

A last stage's SSE sink (``common.sse_sink.SseSink``) and the worker's task environment
(``common.task_environment``) are in the leaf package ``common``, shared with the master.
"""

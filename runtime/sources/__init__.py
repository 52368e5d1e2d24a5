"""Job sources: where a job's first stage gets its events (runtime.job.Source).

- ``SyntheticSource``: generated events at a steady rate, deterministic for a seed.
- ``FileSource``: the lines of a text file (str or JSON), optionally following appends.
- ``SseSource``: an HTTP Server-Sent Events stream, reconnecting with back-off.
- ``JobSource``: another job's output, found by cluster name through the master (Mantis'
  job chaining); ``TargetSource`` builds JobSources from Mantis' ``target`` parameter.
- ``MergedSource``: several sources as one.

Every source is an async generator of batches; stopping the iteration (``aclose()``, or
cancelling the task that iterates) closes its files, connections and tasks.
"""

from common.backoff import Backoff
from common.sse_client import HttpStatusError
from runtime.sources.files import FileSource
from runtime.sources.jobs import (
    MASTER_URL_ENV,
    JobSource,
    Target,
    TargetSource,
    UnknownClusterError,
    job_sources,
    parse_target,
    unique_client_ids,
)
from runtime.sources.merge import MergedSource
from runtime.sources.sse import SourceError, SseSource
from runtime.sources.synthetic import SyntheticSource, default_event

__all__ = [
    "MASTER_URL_ENV",
    "Backoff",
    "FileSource",
    "HttpStatusError",
    "JobSource",
    "MergedSource",
    "SourceError",
    "SseSource",
    "SyntheticSource",
    "Target",
    "TargetSource",
    "UnknownClusterError",
    "default_event",
    "job_sources",
    "parse_target",
    "unique_client_ids",
]

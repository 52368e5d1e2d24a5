"""Logging for the `mantis` processes: structlog, key=value or JSON lines, on stderr."""

from __future__ import annotations

import logging
import sys

import structlog


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Looked up on every call, so a replaced sys.stderr (tests, redirection) is honoured.
    return structlog.PrintLogger(sys.stderr)


def configure_logging(json: bool = False, level: str = "info") -> None:
    """Event name first, then key=value pairs with an ISO UTC timestamp; JSON lines if `json`."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.processors.LogfmtRenderer(key_order=["event", "timestamp", "level"])
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )

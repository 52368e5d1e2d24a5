"""structlog set-up for every process of the project: key=value or JSON lines, on stderr.

Event name first, then key=value pairs with an ISO UTC timestamp. One set of flags for every
process (`--log-json`, `--log-level`): the `mantis` CLI, the mesoslite master and agents
(which run on their own and may not import adapters) and the workers all call `configure`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

import structlog

LEVELS = ("debug", "info", "warning", "error")


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure(json: bool = False, level: str = "info") -> None:
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
    logging.basicConfig(level=logging.getLevelNamesMapping()[level.upper()], stream=sys.stderr)
    logging.getLogger("transitions").setLevel(logging.WARNING)  # a line per state change


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--log-json` and `--log-level`: the one spelling of the logging flags for every process."""
    parser.add_argument(
        "--log-json", action="store_true", help="log JSON lines instead of key=value"
    )
    parser.add_argument("--log-level", choices=LEVELS, default="info", help="default: info")


def standalone(
    prog: str,
    description: str,
    add: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: list[str] | None,
) -> int:
    """A stand-alone entry point: the command's options plus the logging flags."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure(args.log_json, args.log_level)
    return run(args)

"""The mesoslite master's entry point (as Mesos' src/master/main.cpp): options -> MasterConfig
-> allocator -> MesosliteMaster served over HTTP until SIGTERM or SIGINT.

`python -m mesoslite master ...`, `python -m mesoslite.master_main ...` or `mantis mesoslite ...`.
"""

from __future__ import annotations

import argparse
import asyncio

import structlog

from common import logs
from mesoslite.flags import (
    add_arguments,
    agent_credentials,
    config_from_args,
    framework_credentials,
    resolve_allocator,
)
from mesoslite.http import serve

log = structlog.get_logger()

__all__ = ["add_arguments", "main", "run"]


def run(args: argparse.Namespace) -> int:
    """Run the master from parsed options; logging is the caller's to configure."""
    try:
        config = config_from_args(args)
        resolve_allocator(config.allocator)  # fail fast, before binding
        credentials = framework_credentials(config)
        agents = agent_credentials(config)
    except ValueError as e:
        log.error("master_config_invalid", error=str(e))
        return 2
    try:
        asyncio.run(serve(config, credentials=credentials, agent_credentials=agents))
    except OSError as e:
        log.error("master_failed", error=str(e))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    description = "mesoslite master: Mesos' v1 scheduler HTTP API on 127.0.0.1 by default."
    return logs.standalone("python -m mesoslite master", description, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""The `mantis` console script: global flags, a table of subcommands, one function each.

To add a subcommand, write `_add_<name>_arguments(parser)` and `_run_<name>(args) -> int`
and list them in SUBCOMMANDS. A subcommand returns its exit status; a rejected command or an
OS error becomes one line on stderr and exit status 1, a usage error exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from common.logs import add_arguments as add_log_arguments
from common.logs import configure as configure_logging
from core.errors import CommandRejected

DISTRIBUTION = "mantis-py"
UNINSTALLED_VERSION = "0.1.0+local"


class _Exit(Exception):
    """argparse wanted to exit (help shown, or a usage error); main returns `status`."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that returns control to `main` instead of calling sys.exit."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _Exit(status, message or "")

    def error(self, message: str) -> NoReturn:
        raise _Exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True, slots=True)
class Subcommand:
    """A subcommand: its module is imported only when it is the one run (or all are shown),
    so that `mantis job list` does not pay for importing the master and mesoslite."""

    name: str
    help: str
    module: str
    add_arguments: str = "add_arguments"
    run: str = "run"

    def load(
        self,
    ) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
        module = importlib.import_module(self.module)
        return getattr(module, self.add_arguments), getattr(module, self.run)


def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNINSTALLED_VERSION


def _add_version_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _run_version(args: argparse.Namespace) -> int:
    sys.stdout.write(f"{DISTRIBUTION} {package_version()}\n")
    return 0


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("version", "print the version", __name__, "_add_version_arguments", "_run_version"),
    Subcommand(
        "mesoslite",
        "run a mesoslite master: Mesos' v1 scheduler API on 127.0.0.1:5050",
        "mesoslite.master_main",
    ),
    Subcommand("agent", "run a mesoslite agent that runs tasks as processes", "mesoslite.agent"),
    Subcommand(
        "master",
        "run the Mantis master: control plane, store, HTTP API, on Mesos or mesoslite",
        "adapters.cli.master",
    ),
    Subcommand(
        "up",
        "start a local cluster (mesoslite, agents, master) and keep it running until Ctrl-C",
        "adapters.cli.up",
    ),
    Subcommand(
        "cluster",
        "job clusters on a master: create, list, get, update, delete, enable, disable",
        "adapters.cli.commands",
        "add_cluster_arguments",
    ),
    Subcommand(
        "job",
        "jobs on a master: submit, list, get, kill, scale, resubmit-worker, connect",
        "adapters.cli.commands",
        "add_job_arguments",
    ),
    Subcommand(
        "agents",
        "agents seen by a master: list, disable, drain (move their workers off), enable",
        "adapters.cli.agents",
    ),
    Subcommand(
        "top",
        "jobs and stages as a refreshing table: workers, events/s, drops, CPU, memory",
        "adapters.cli.top",
    ),
    Subcommand(
        "artifact",
        "job artifacts on a master: upload, list",
        "adapters.cli.commands",
        "add_artifact_arguments",
    ),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that subcommand gets its arguments (and its import)."""
    parser = _Parser(
        prog="mantis", description="mantis-py: stream processing in the style of Netflix Mantis."
    )
    add_log_arguments(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for sub in SUBCOMMANDS:
        sub_parser = commands.add_parser(sub.name, help=sub.help, description=sub.help)
        if only is None or sub.name == only:
            add_arguments, run = sub.load()
            add_arguments(sub_parser)
            sub_parser.set_defaults(run=run)
    return parser


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is one), if any."""
    names = {sub.name for sub in SUBCOMMANDS}
    return next((word for word in argv if word in names), None)


def main(argv: list[str] | None = None) -> int:
    """Run `mantis` with `argv` (default: the process arguments); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(_chosen(argv)).parse_args(argv)
    except _Exit as e:
        sys.stderr.write(e.message)
        return e.status
    except KeyboardInterrupt:  # Ctrl-C while the subcommand's module is imported
        sys.stderr.write(" ".join(filter(None, ("mantis", _chosen(argv)))) + ": interrupted\n")
        return 130
    configure_logging(json=args.log_json, level=args.log_level)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (CommandRejected, OSError) as e:
        sys.stderr.write(f"mantis {args.command}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"mantis {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())

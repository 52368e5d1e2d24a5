"""The mesoslite master's flags: MasterConfig and its command-line options (as Mesos'
src/master/flags.cpp), and loading the `--allocator` module and the `--credentials` they name."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from mesoslite.allocator import Allocator, load_allocator
from mesoslite.auth import CREDENTIALS_ENV, Credentials, CredentialsError, load_credentials
from mesoslite.zk import ZkUrl

# Allocation modules that ship with mesoslite, for a checkout that is not pip-installed (then
# the `mesoslite.allocators` entry points do not exist). Installed, the entry points win.
BUILTIN_ALLOCATORS = {
    "drf": "mesoslite.allocator.drf:HierarchicalDRF",
    "priority": "mesoslite.allocator.priority:StrictPriority",
}


@dataclass(frozen=True, slots=True)
class MasterConfig:
    host: str = "127.0.0.1"
    port: int = 5050
    hostname: str | None = None  # advertised; defaults to `host`
    allocator: str = "drf"
    allocation_interval: float = 1.0
    heartbeat_interval: float = 15.0
    agent_ping_timeout: float = 15.0
    max_agent_ping_timeouts: int = 5
    agent_reregister_timeout: float = 10.0
    status_update_retry_min: float = 10.0
    status_update_retry_max: float = 600.0
    offer_timeout: float | None = None
    weights: dict[str, float] = field(default_factory=dict)
    authenticate_http_frameworks: bool = False
    authenticate_agents: bool = False
    credentials: str | None = None  # a path: the secrets stay out of the config and its state
    zk: str | None = None  # zk://host:port[,host:port]/path: contend for leadership there
    zk_session_timeout: float = 10.0

    @property
    def advertised_host(self) -> str:
        return self.hostname or self.host


def flag_values(config: MasterConfig) -> dict[str, Any]:
    """Every flag by name, as `/master/state` lists them under `flags`."""
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def resolve_allocator(name: str) -> Allocator:
    """`--allocator`: an entry-point name (`drf`, `priority`) or `package.module:Factory`."""
    if ":" not in name:
        try:
            return load_allocator(name)
        except ValueError:
            if name not in BUILTIN_ALLOCATORS:
                raise
            name = BUILTIN_ALLOCATORS[name]
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load allocator {name!r}: {e}") from None
    allocator: Allocator = factory()
    return allocator


def framework_credentials(config: MasterConfig) -> Credentials | None:
    """What frameworks must present (None: they are not authenticated). A bad credentials file
    is an error even when unused, and authentication without credentials is one too (as Mesos'
    master refuses to start)."""
    return _required(config, config.authenticate_http_frameworks, "--authenticate-http-frameworks")


def agent_credentials(config: MasterConfig) -> Credentials | None:
    """What agents must present (None: they are not authenticated), from the same file as
    frameworks', as Mesos' `--authenticate_agents` uses `--credentials`."""
    return _required(config, config.authenticate_agents, "--authenticate-agents")


def _required(config: MasterConfig, enabled: bool, flag: str) -> Credentials | None:
    credentials = None if config.credentials is None else load_credentials(config.credentials)
    if not enabled:
        return None
    if credentials is None:
        raise CredentialsError(f"{flag} needs --credentials (or {CREDENTIALS_ENV})")
    return credentials


def positive(text: str) -> float:
    """An argparse type: a number > 0 (seconds, weights)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _weights(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        role, sep, weight = item.partition("=")
        try:
            out[role.strip()] = positive(weight)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"{item!r}: expected role=weight") from None
        if not sep or not role.strip():
            raise argparse.ArgumentTypeError(f"{item!r}: expected role=weight")
    return out


def zk_url(text: str) -> str:
    """An argparse type: a `zk://HOST:PORT[,HOST:PORT]/PATH` URL, normalised."""
    try:
        return str(ZkUrl.parse(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The master's options (`mantis mesoslite ...`, `python -m mesoslite master ...`)."""
    d = MasterConfig()
    parser.add_argument("--host", default=d.host, help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=d.port, help="port (default: %(default)s; 0 picks one)"
    )
    parser.add_argument(
        "--hostname", default=None, help="name advertised to frameworks (default: --host)"
    )
    parser.add_argument(
        "--allocator",
        default=d.allocator,
        help="allocation module: drf, priority, or package.module:Factory (default: %(default)s)",
    )
    parser.add_argument(
        "--allocation-interval",
        type=positive,
        default=d.allocation_interval,
        metavar="SECONDS",
        help="seconds between allocation cycles (default: %(default)s)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=positive,
        default=d.heartbeat_interval,
        metavar="SECONDS",
        help="HEARTBEAT period to frameworks (default: %(default)s)",
    )
    parser.add_argument(
        "--agent-ping-timeout",
        type=positive,
        default=d.agent_ping_timeout,
        metavar="SECONDS",
        help="time an agent has to answer a ping (default: %(default)s)",
    )
    parser.add_argument(
        "--max-agent-ping-timeouts",
        type=int,
        default=d.max_agent_ping_timeouts,
        metavar="N",
        help="unanswered pings before an agent is removed (default: %(default)s)",
    )
    parser.add_argument(
        "--agent-reregister-timeout",
        type=float,
        default=d.agent_reregister_timeout,
        metavar="SECONDS",
        help="after start, how long reconciliation waits for agents to re-register (default: %(default)s)",
    )
    parser.add_argument(
        "--status-update-retry-min",
        type=positive,
        default=d.status_update_retry_min,
        metavar="SECONDS",
        help="first re-send of an unacknowledged update (default: %(default)s)",
    )
    parser.add_argument(
        "--status-update-retry-max",
        type=positive,
        default=d.status_update_retry_max,
        metavar="SECONDS",
        help="cap of the re-send back-off (default: %(default)s)",
    )
    parser.add_argument(
        "--offer-timeout",
        type=positive,
        default=None,
        metavar="SECONDS",
        help="rescind offers not used within this time (default: never)",
    )
    parser.add_argument(
        "--weights",
        type=_weights,
        default={},
        metavar="ROLE=W,...",
        help="role weights for the allocator, e.g. 'prod=2,dev=1'",
    )
    parser.add_argument(
        "--authenticate-http-frameworks",
        action="store_true",
        help="frameworks must authenticate with HTTP Basic credentials of --credentials",
    )
    parser.add_argument(
        "--authenticate-agents",
        action="store_true",
        help="agents must authenticate with HTTP Basic credentials of --credentials",
    )
    parser.add_argument(
        "--credentials",
        default=None,
        metavar="PATH",
        help='JSON credentials file, {"credentials": [{"principal": ..., "secret": ...}]}'
        f" (default: ${CREDENTIALS_ENV})",
    )
    parser.add_argument(
        "--zk",
        type=zk_url,
        default=None,
        metavar="zk://HOST:PORT[,HOST:PORT]/PATH",
        help="elect the leader among the masters of this ZooKeeper path, as Mesos' --zk"
        " (default path /mesos; default: no election, this master leads)",
    )
    parser.add_argument(
        "--zk-session-timeout",
        type=positive,
        default=d.zk_session_timeout,
        metavar="SECONDS",
        help="ZooKeeper session timeout: how long a dead leader keeps leading (default: %(default)s)",
    )


def config_from_args(args: argparse.Namespace) -> MasterConfig:
    return MasterConfig(
        host=args.host,
        port=args.port,
        hostname=args.hostname,
        allocator=args.allocator,
        allocation_interval=args.allocation_interval,
        heartbeat_interval=args.heartbeat_interval,
        agent_ping_timeout=args.agent_ping_timeout,
        max_agent_ping_timeouts=max(1, args.max_agent_ping_timeouts),
        agent_reregister_timeout=max(0.0, args.agent_reregister_timeout),
        status_update_retry_min=args.status_update_retry_min,
        status_update_retry_max=max(args.status_update_retry_max, args.status_update_retry_min),
        offer_timeout=args.offer_timeout,
        weights=args.weights,
        authenticate_http_frameworks=args.authenticate_http_frameworks,
        authenticate_agents=args.authenticate_agents,
        credentials=args.credentials or os.environ.get(CREDENTIALS_ENV) or None,
        zk=args.zk,
        zk_session_timeout=args.zk_session_timeout,
    )

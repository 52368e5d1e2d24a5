"""`mantis agents list|disable|drain|enable`: the agents a master knows, and taking one out.

`mantis agent` runs a mesoslite agent, so these are under `agents`. `disable` and `drain`
stop new workers going to the agent and move its workers off at their job clusters'
migration pace (`POST /api/v1/agents/{agent}/actions/...`, adapters/http/agents.py); a
drained agent shows DRAINED once empty; `enable` takes it back. AGENT is an agent id or a
hostname (every agent with that hostname).
"""

from __future__ import annotations

import argparse
import sys

from adapters.cli.client import MantisClient
from adapters.cli.commands import _actions, _print_json, _say, table
from adapters.cli.commands import run as run_action

WHAT = {"disable": "disabled", "drain": "draining", "enable": "enabled"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = _actions(parser)
    add("list", "agents, their mode and their workers", _list)
    for action, help in (
        ("disable", "no new workers on the agent; its workers move off at their pace"),
        ("drain", "as disable, for maintenance: DRAINED once no worker is left"),
        ("enable", "the agent takes workers again"),
    ):
        p = add(action, help, _act)
        p.add_argument("agent", metavar="AGENT", help="an agent id or a hostname")
        p.set_defaults(agent_action=action)


def run(args: argparse.Namespace) -> int:
    return run_action(args)


def _list(client: MantisClient, args: argparse.Namespace) -> int:
    agents = client.list_agents()
    if args.json:
        _print_json(agents)
    elif not agents:
        sys.stdout.write("no agents seen yet\n")
    else:
        rows = [[a["agentId"], a["hostname"], a["mode"], len(a["workers"])] for a in agents]
        sys.stdout.write(table(["AGENT ID", "HOSTNAME", "MODE", "WORKERS"], rows))
    return 0


def _act(client: MantisClient, args: argparse.Namespace) -> int:
    client.agent_action(args.agent, args.agent_action, args.user)
    return _say(args, f"agent {args.agent} {WHAT[args.agent_action]}")

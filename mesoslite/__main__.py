"""`python -m mesoslite master ...` / `python -m mesoslite agent ...`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("master", "agent"):
        sys.stderr.write("usage: python -m mesoslite {master,agent} [options]  (--help for each)\n")
        return 2
    if args[0] == "master":
        from mesoslite.master_main import main as run_master

        return run_master(args[1:])
    from mesoslite.agent import main as run_agent

    return run_agent(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())

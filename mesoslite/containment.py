"""Keeping an agent's tasks contained: they die with their agent, and an agent that starts
kills whatever an earlier agent on the same work dir left behind.

Mesos contains a task in a cgroup (src/slave/containerizer/mesos/linux_launcher.cpp), which
nothing in a task can leave. mesoslite runs tasks as plain processes, so it layers what Linux
offers a process that may lack the rights to create cgroups:

- every task has its own session and process group (the agent's `spawn`): a terminal's Ctrl-C
  does not reach it, and one killpg(2) stops it with every process it started;
- the task's process gets PR_SET_PDEATHSIG (SIGKILL when the agent dies), and a shell command
  that is one simple command runs as `exec <command>` (`exec_form`), so that the shell is
  replaced and the signal reaches the command itself. A task that forks anyway (a script, a
  pipeline) must ask for the signal itself, as `python -m runtime.worker` does;
- `TaskGroups` records every task's process group in the agent's work dir, with the start time
  of its leader (field 22 of /proc/<pid>/stat) so that a reused pid is told apart, and `reap()`
  SIGKILLs the recorded groups still alive when an agent starts there. `lock_work_dir` keeps a
  second live agent off the work dir, so that agents never reap each other's tasks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import signal
from pathlib import Path

import orjson
import structlog

log = structlog.get_logger()

RECORDS = "task-groups"
LOCK_FILE = "agent.lock"

# dash's reserved words and builtins: `exec` would skip the builtin or break the syntax.
_SHELL_WORDS = frozenset(
    (
        "!",
        "{",
        "}",
        "case",
        "do",
        "done",
        "elif",
        "else",
        "esac",
        "fi",
        "for",
        "if",
        "in",
        "then",
        "until",
        "while",
        ".",
        ":",
        "[",
        "alias",
        "bg",
        "break",
        "cd",
        "chdir",
        "command",
        "continue",
        "echo",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "fc",
        "fg",
        "getopts",
        "hash",
        "jobs",
        "kill",
        "local",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
    )
)
_OPERATOR = re.compile(r"[();<>|&]+")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def exec_form(script: str) -> str:
    """`exec <script>` if `script` is one simple command running a program, else `script`.

    `sh -c` (dash) forks for its last command instead of replacing itself, so a task's process
    would be the shell and the command its child, out of reach of the parent-death signal.
    With `exec` the command replaces the shell and nothing else changes. Anything with an
    operator, a newline, an assignment or a builtin first, or an expansion as the program,
    is left as it is.
    """
    if "\n" in script:
        return script
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: the shell will say so
        return script
    if not words or any(_OPERATOR.fullmatch(w) for w in words):
        return script
    program = words[0]
    if program in _SHELL_WORDS or _ASSIGNMENT.match(program) or "$" in program or "`" in program:
        return script
    return f"exec {script}"


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks since boot) from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold spaces
    return fields[0], int(fields[2]), int(fields[19])


def lock_work_dir(work_dir: Path) -> int:
    """Hold an exclusive lock on the work dir for this agent's life; its file descriptor.

    Raises OSError naming the work dir when another live agent holds it.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(f"another agent is running on the work dir {work_dir}") from None
    return fd


class TaskGroups:
    """The process groups of an agent's tasks, one small file each under `<work dir>/task-groups`."""

    def __init__(self, work_dir: Path) -> None:
        self.dir = work_dir / RECORDS

    def add(self, pgid: int, task_id: str) -> None:
        """Record a task's group; its leader `pgid` must have just been spawned."""
        stat = proc_stat(pgid)
        if stat is None:  # no /proc: nothing to tell a reused pid by, so nothing to reap later
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"pgid": pgid, "start_time": stat[2], "task_id": task_id}
        (self.dir / str(pgid)).write_bytes(orjson.dumps(record))

    def remove(self, pgid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / str(pgid)).unlink()

    def reap(self) -> list[int]:
        """SIGKILL every recorded group that is still alive; the groups killed.

        A group is the recorded one when its leader is alive with the recorded start time, or
        when its leader is gone and members remain: Linux does not hand out a number that is
        still some process's group id, so those members can only be the task's.
        """
        records = sorted(self.dir.iterdir()) if self.dir.is_dir() else []
        if not records:
            return []
        members: dict[int, dict[int, int]] = {}  # pgid -> {pid: start time}
        for entry in Path("/proc").iterdir():
            stat = proc_stat(int(entry.name)) if entry.name.isdigit() else None
            if stat is not None and stat[0] != "Z":
                members.setdefault(stat[1], {})[int(entry.name)] = stat[2]
        killed: list[int] = []
        for path in records:
            try:
                record = orjson.loads(path.read_bytes())
                pgid, start_time = int(record["pgid"]), int(record["start_time"])
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                path.unlink(missing_ok=True)  # torn by a killed agent: its group is unknown
                continue
            group = members.get(pgid, {})
            leader_start = group.get(pgid)
            if group and (leader_start is None or leader_start == start_time):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                    killed.append(pgid)
                log.warning(
                    "agent_reaped_leftover_task",
                    pgid=pgid,
                    task_id=record.get("task_id"),
                    processes=sorted(group),
                )
            path.unlink(missing_ok=True)
        return killed

"""Which ContainerInfo settings mesoslite can honour: none beyond `type: MESOS`.

mesoslite runs every task and executor as a plain local process (mesoslite.containment), so a
ContainerInfo (mesos.proto) asking for Docker, an image, volumes, networks, Linux
capabilities, rlimits or a TTY cannot be honoured. Such a task gets TASK_ERROR naming the
field instead of running without what it asked for.
"""

from __future__ import annotations

from typing import Any

HONOURED = frozenset({"type"})


def problem(container: Any, where: str) -> str | None:
    """Why `container` (the ContainerInfo at `where`, e.g. TaskInfo.container) cannot be
    honoured, or None."""
    if container is None:
        return None
    if not isinstance(container, dict):
        return f"{where} must be a ContainerInfo object"
    kind = container.get("type", "MESOS")
    if kind != "MESOS":
        return (
            f"{where}.type {kind} is not supported by mesoslite (tasks run as local processes;"
            " use MESOS)"
        )
    for name in sorted(container):
        value = container[name]
        if name not in HONOURED and value not in (None, [], {}, ""):
            return f"{where}.{name} is not supported by mesoslite (tasks run as local processes)"
    return None

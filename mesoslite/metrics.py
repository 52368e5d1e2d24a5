"""The master's metrics under Mesos' names (the `master/*` metrics of
docs/monitoring.md, src/master/metrics.cpp), for `/metrics/snapshot` and GET_METRICS.

Gauges are computed from the state at the time of asking; counters (`master/tasks_finished`,
`master/slave_registrations`, ...) are counted since this master started leading. A standby
answers too, with `master/elected` 0 and nothing else of a cluster it does not run.
"""

from __future__ import annotations

import time

from mesoslite.master import MesosliteMaster
from mesoslite.protocol import TASK_STATES, TERMINAL
from mesoslite.resources import Resources

_ACTIVE_STATES = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING")
_COUNTERS = (
    *("master/tasks_" + s.removeprefix("TASK_").lower() for s in sorted(TASK_STATES & TERMINAL)),
    "master/slave_registrations",
    "master/slave_reregistrations",
    "master/slave_removals",
)


def snapshot(master: MesosliteMaster, elected: bool) -> dict[str, float]:
    out: dict[str, float] = {
        "master/elected": 1.0 if elected else 0.0,
        "master/uptime_secs": time.time() - master.start_time,
    }
    if not elected:
        return out
    agents = list(master.agents.values())
    frameworks = list(master.frameworks.values())
    out["master/slaves_connected"] = sum(1.0 for a in agents if a.connected)
    out["master/slaves_disconnected"] = sum(1.0 for a in agents if not a.connected)
    out["master/slaves_active"] = sum(1.0 for a in agents if a.connected and not a.deactivated)
    out["master/slaves_inactive"] = sum(1.0 for a in agents if a.deactivated)
    out["master/slaves_unreachable"] = float(len(master.removed_agents))
    out["master/frameworks_connected"] = sum(1.0 for f in frameworks if f.connected)
    out["master/frameworks_disconnected"] = sum(1.0 for f in frameworks if not f.connected)
    out["master/frameworks_active"] = out["master/frameworks_connected"]
    out["master/frameworks_inactive"] = out["master/frameworks_disconnected"]
    out["master/outstanding_offers"] = float(len(master.offers))
    states: dict[str, float] = dict.fromkeys(_ACTIVE_STATES, 0.0)
    unreachable = 0.0
    for fw in frameworks:
        unreachable += len(fw.unreachable_tasks)
        for task in fw.tasks.values():
            if task.state in states:
                states[task.state] += 1
    for state, count in states.items():
        out["master/tasks_" + state.removeprefix("TASK_").lower()] = count
    out["master/tasks_unreachable"] = unreachable
    for name in _COUNTERS:
        out[name] = float(master.counters[name])
    total = Resources()
    used = Resources()
    for a in agents:
        total = total + a.total
        used = used + a.used
    for name, t in total.scalars().items():
        u = used.scalars()[name]
        out[f"master/{name}_total"] = t / 1000
        out[f"master/{name}_used"] = u / 1000
        out[f"master/{name}_percent"] = u / t if t else 0.0
    return out


def metric_list(values: dict[str, float]) -> list[dict[str, object]]:
    """GET_METRICS' `metrics`: Metric {name, value} (mesos.proto)."""
    return [{"name": k, "value": v} for k, v in sorted(values.items())]

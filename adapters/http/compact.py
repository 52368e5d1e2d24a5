"""`compact=true` on job lists and job gets: Mantis' CompactJobInfo in place of the job view.

Mantis (v1 JobsRoute, `JobClusterProtoAdapter.toCompactJobInfo`) sums each stage's workers,
CPUs (workers x cpuCores) and memory (workers x memoryMB) and counts the listed workers by
state; `type` is the job SLA's duration type and `terminatedAt` -1 while the job runs.
"""

from __future__ import annotations

from collections import Counter

from adapters.http.responses import Json


def compact_job(view: Json) -> Json:
    """A rendered job view (rendering.render_job) -> its CompactJobInfo."""
    meta, stages = view["jobMetadata"], view["stageMetadataList"]
    states = Counter(w["state"] for w in view["workerMetadataList"])
    return {
        "jobId": meta["jobId"],
        "submittedAt": meta["submittedAt"],
        "terminatedAt": meta["endedAt"],
        "user": meta["user"],
        "jarUrl": meta["jarUrl"],
        "state": meta["state"],
        "type": meta["sla"]["durationType"],
        "numStages": meta["numStages"],
        "numWorkers": sum(s["numWorkers"] for s in stages),
        "totCPUs": float(sum(s["numWorkers"] * s["machineDefinition"]["cpuCores"] for s in stages)),
        "totMemory": float(
            sum(s["numWorkers"] * s["machineDefinition"]["memoryMB"] for s in stages)
        ),
        "statesSummary": dict(states),
        "labels": meta["labels"],
    }

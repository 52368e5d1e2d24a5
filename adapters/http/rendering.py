"""Core values -> Mantis' JSON: every shape the master sends (clusters, jobs, workers, streams).

Field names are Mantis' own: the REST views (MantisJobClusterMetadataView,
MantisJobMetadataView, MantisWorkerMetadataImpl), the discovery stream's JobSchedulingInfo and
the status stream's Status. Times are epoch milliseconds, -1 when unset, as Mantis renders them.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.http.responses import Json
from core.control import JobCluster
from core.effects import JobSchedulingInfo, PublishStatus
from core.job import JobRecord, JobState
from core.model import (
    JobSla,
    Label,
    MachineDefinition,
    ParameterValue,
    SchedulingInfo,
    StageScalingPolicy,
    StageSchedulingInfo,
    metrics_port,
)
from core.worker import Worker


def ms(t: float | None) -> int:
    return -1 if t is None else round(t * 1000)


def render_named(items: Sequence[ParameterValue] | Sequence[Label]) -> list[Json]:
    return [{"name": i.name, "value": i.value} for i in items]


def render_machine(m: MachineDefinition) -> Json:
    return {
        "cpuCores": m.cpu_cores,
        "memoryMB": m.memory_mb,
        "networkMbps": m.network_mbps,
        "diskMB": m.disk_mb,
        "numPorts": m.num_ports,
    }


def render_scaling_policy(p: StageScalingPolicy | None) -> Json | None:
    if p is None:
        return None
    return {
        "stage": p.stage,
        "min": p.min,
        "max": p.max,
        "increment": p.increment,
        "decrement": p.decrement,
        "coolDownSecs": p.cool_down_secs,
        "enabled": p.enabled,
        "strategies": {
            s.reason: {
                "reason": s.reason,
                "scaleDownBelowPct": s.scale_down_below_pct,
                "scaleUpAbovePct": s.scale_up_above_pct,
                "rollingCount": {"count": s.rolling_count, "of": s.rolling_of},
            }
            for s in p.strategies
        },
    }


def render_stage(s: StageSchedulingInfo) -> Json:
    return {
        "numberOfInstances": s.number_of_instances,
        "machineDefinition": render_machine(s.machine_definition),
        "hardConstraints": [c.value for c in s.hard_constraints],
        "softConstraints": [c.value for c in s.soft_constraints],
        "scalingPolicy": render_scaling_policy(s.scaling_policy),
        "scalable": s.scalable,
    }


def render_scheduling_info(info: SchedulingInfo) -> Json:
    return {"stages": {str(n): render_stage(s) for n, s in enumerate(info.stages, start=1)}}


def render_job_sla(sla: JobSla) -> Json:
    return {
        "runtimeLimitSecs": sla.runtime_limit_secs,
        "minRuntimeSecs": sla.min_runtime_secs,
        "slaType": sla.sla_type,
        "durationType": sla.duration_type.value,
        "userProvidedType": sla.user_provided_type,
    }


def render_cluster(c: JobCluster) -> Json:
    """Mantis' job cluster view (MantisJobClusterMetadataView), plus `artifactName` per jar."""
    d = c.definition
    return {
        "name": d.name,
        "jars": [
            {
                "url": j.job_jar_url or j.artifact_name,
                "artifactName": j.artifact_name,
                "uploadedAt": ms(j.uploaded_at),
                "version": j.version,
                "schedulingInfo": render_scheduling_info(j.scheduling_info),
            }
            for j in d.configs
        ],
        "sla": {
            "min": d.sla.min,
            "max": d.sla.max,
            "cronSpec": d.sla.cron_spec or None,
            "cronPolicy": d.sla.cron_policy.value if d.sla.cron_policy else None,
        },
        "jobSla": render_job_sla(d.job_sla),
        "parameters": render_named(d.parameters),
        "owner": {
            "name": d.owner.name,
            "teamName": d.owner.team_name,
            "description": d.owner.description,
            "contactEmail": d.owner.contact_email,
            "repo": d.owner.repo,
        },
        "user": d.user,
        "lastJobCount": c.last_job_count,
        "disabled": c.disabled,
        "isReadyForJobMaster": False,
        "labels": render_named(d.labels),
        "cronActive": c.cron_next_at is not None and not c.disabled,
        "latestVersion": d.latest.version,
        "migrationConfig": {
            "strategy": d.migration_config.strategy.value,
            "configString": d.migration_config.config_string,
        },
    }


def render_worker(w: Worker, job: JobRecord) -> Json:
    """Mantis' worker metadata; `ports` are all the ports the worker was given. Added:
    `message`, the worker's last status message (why it failed or ended, as its postJobStatus
    or the resource manager said: Mantis' Status.message), `pendingReason`, why the last
    offer round could not place it (Fenzo's assignment failure), and `resubmitReason` and
    `resubmitMessage`, how the worker it replaces ended."""
    machine = job.definition.scheduling_info.stage(w.stage).machine_definition
    return {
        "workerIndex": w.index,
        "workerNumber": w.number,
        "jobId": w.job_id,
        "stageNum": w.stage,
        "numberOfPorts": machine.ports_needed,
        "metricsPort": metrics_port(w.ports),
        "consolePort": -1,
        "debugPort": -1,
        "customPort": -1,
        "ports": list(w.ports),
        "state": w.state.value,
        "slave": w.hostname or None,
        "slaveID": w.agent_id or None,
        "cluster": None,
        "acceptedAt": ms(w.accepted_at),
        "launchedAt": ms(w.launched_at),
        "startingAt": -1,
        "startedAt": ms(w.started_at),
        "completedAt": ms(w.completed_at),
        "reason": w.reason.value if w.reason else "Normal",
        "resubmitOf": w.resubmit_of,
        "totalResubmitCount": w.resubmit_count,
        "message": w.message,
        "pendingReason": w.pending_reason,
        "resubmitReason": w.replaced_reason.value if w.replaced_reason else None,
        "resubmitMessage": w.replaced_message,
    }


def render_job(job: JobRecord, workers: Sequence[Worker] | None = None) -> Json:
    """Mantis' job view: `jobMetadata`, `stageMetadataList`, `workerMetadataList`, `version`."""
    d = job.definition
    stages = d.scheduling_info.stages
    return {
        "jobMetadata": {
            "jobId": job.job_id,
            "name": job.cluster,
            "user": d.user,
            "submittedAt": ms(job.submitted_at),
            "startedAt": ms(job.started_at),
            "endedAt": ms(job.ended_at),
            "jarUrl": d.job_jar_url or d.artifact_name,
            "artifactName": d.artifact_name,
            "numStages": len(stages),
            "sla": render_job_sla(d.job_sla),
            "state": job.state.value,
            "reason": job.reason.value if job.reason else None,
            "message": job.message,
            "subscriptionTimeoutSecs": d.subscription_timeout_secs,
            "parameters": render_named(d.parameters),
            "nextWorkerNumberToUse": job.next_worker_number,
            "labels": render_named(d.labels),
        },
        "stageMetadataList": [
            {
                "jobId": job.job_id,
                "stageNum": n,
                "numStages": len(stages),
                "machineDefinition": render_machine(s.machine_definition),
                "numWorkers": len(job.stages.get(n, ())),
                "hardConstraints": [c.value for c in s.hard_constraints],
                "softConstraints": [c.value for c in s.soft_constraints],
                "scalingPolicy": render_scaling_policy(s.scaling_policy),
                "scalable": s.scalable,
                "scalingHistory": [  # the last scalings, by users or the autoscaler
                    {"at": ms(h.at), "fromWorkers": h.from_workers, "toWorkers": h.to_workers}
                    | {"user": h.user, "reason": h.reason}
                    for h in job.scalings.get(n, ())
                ],
            }
            for n, s in enumerate(stages, start=1)
        ],
        "workerMetadataList": [
            render_worker(w, job) for w in (job.current_workers() if workers is None else workers)
        ],
        "version": d.version,
    }


def render_job_scheduling_info(info: JobSchedulingInfo) -> Json:
    """Mantis' JobSchedulingInfo JSON (maps keyed by stage and worker number as strings)."""
    return {
        "jobId": info.job_id,
        "workerAssignments": {
            str(s.stage): {
                "stage": s.stage,
                "numWorkers": s.num_workers,
                "hosts": {
                    str(h.number): {
                        "host": h.hostname,
                        "state": "Started",
                        "workerIndex": h.index,
                        "workerNumber": h.number,
                        "port": list(h.ports),
                        "metricsPort": metrics_port(h.ports),
                    }
                    for h in s.hosts
                },
            }
            for s in info.stages
        },
    }


def render_status(status: PublishStatus) -> Json:
    """Mantis' Status as jobStatusStream sends it: `ERROR` for a failed job, else `INFO`."""
    return {
        "status": {
            "jobId": status.job_id,
            "workerId": status.worker_id,
            "state": status.state,
            "message": status.message,
            "timestamp": int(status.at * 1000),
            "type": "ERROR" if status.state == JobState.Failed.value else "INFO",
        }
    }

"""What an agent runs for a placed worker: the worker command and its MANTIS_* environment.

The environment is the worker's task-environment contract (`common.task_environment`); the
master fills it from the job's definition, so the master never imports the worker runtime.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from common.master_leader import DEFAULT_ZK_ROOT
from common.task_environment import TaskEnvironment
from core.effects import LaunchTask
from core.job import JobRecord
from core.model import DurationType, JobDefinition, metrics_port
from core.ports import TaskLaunch

DEFAULT_SUBSCRIPTION_TIMEOUT_SECS = 300.0  # Mantis' ephemeral.job.unsubscribed.timeout.secs
WORKER_COMMAND = f"{sys.executable} -m runtime.worker"


@dataclass(frozen=True)
class WorkerTaskSettings:
    """How workers are started and where they find the master and their artifacts."""

    master_url: str = ""
    command: str = WORKER_COMMAND
    artifact_cache: Path = Path("artifact-cache")
    api_token: str = ""
    uploaded: Callable[[str], bool] = lambda name: False
    """Whether an artifact of that name was uploaded to this master (then served by it)."""
    heartbeat_secs: float | None = None
    """Overrides the job's heartbeat interval (tests use short ones)."""
    zk: str = ""
    """ZooKeeper ``host:port[/chroot]`` where the masters elect their leader (``mantis master
    --zk``): workers follow the leader published there. Empty: one master, at `master_url`."""
    zk_root: str = DEFAULT_ZK_ROOT
    """The masters' root znode under the chroot."""


def artifact_location(definition: JobDefinition, settings: WorkerTaskSettings) -> str:
    """Where a job's workers fetch its artifact: its jobJarUrl if given, else the uploaded
    artifact of that name from this master, else the name itself (a path or module)."""
    if definition.job_jar_url:
        return str(definition.job_jar_url)
    name = str(definition.artifact_name)
    if settings.uploaded(name):
        return f"{settings.master_url}/api/v1/jobArtifacts/{name}"
    return name


def task_environment(
    job: JobRecord, task: LaunchTask, settings: WorkerTaskSettings
) -> TaskEnvironment:
    """What a worker is told: who it is, where the master and artifact are, its job's
    parameters and timings; a transient job's sink workers also get its subscription timeout."""
    d, r, a = job.definition, task.request, task.assignment
    timeout = 0.0
    if d.job_sla.duration_type is DurationType.Transient and r.stage == len(job.stages):
        timeout = float(d.subscription_timeout_secs or DEFAULT_SUBSCRIPTION_TIMEOUT_SECS)
    env = TaskEnvironment(
        job_id=r.job_id,
        stage=r.stage,
        index=r.index,
        number=r.number,
        master_url=settings.master_url,
        artifact=artifact_location(d, settings),
        ports=a.ports,
        metrics_port=metrics_port(a.ports),
        cpu_cores=r.machine.cpu_cores,
        memory_mb=r.machine.memory_mb,
        job_name=job.cluster,
        stage_workers=len(job.stages.get(r.stage, ())) or 1,
        parameters={p.name: p.value for p in d.parameters},
        heartbeat_secs=job.heartbeat_interval_secs,
        host=a.hostname,
        hostname=a.hostname,
        artifact_cache=settings.artifact_cache,
        subscription_timeout_secs=timeout,
        min_runtime_secs=float(d.job_sla.min_runtime_secs),
        api_token=settings.api_token,
        zk=settings.zk,
        zk_root=settings.zk_root,
    )
    if settings.heartbeat_secs is not None:
        env = replace(env, heartbeat_secs=settings.heartbeat_secs)
    return env


def worker_task(job: JobRecord, task: LaunchTask, settings: WorkerTaskSettings) -> TaskLaunch:
    env = task_environment(job, task, settings).environ()
    return TaskLaunch(task, settings.command, tuple(env.items()))

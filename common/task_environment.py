"""The worker's task environment: the ``MANTIS_*`` variables a launcher sets for a worker.

The contract between the master (which builds it for each task it launches,
adapters/cli/master.py) and the worker process (``python -m runtime.worker``, which reads it
back): here, so that the master builds a task without importing the worker runtime. Mantis
passes the same facts to a worker as ``ExecuteStageRequest`` fields and ``MANTIS_*``-style
environment variables (``WorkerPorts``, ``JOB_ID``...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from common.master_leader import DEFAULT_ZK_ROOT

DEFAULT_ARTIFACT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mantis-py" / "artifacts"
)
"""Where a worker keeps downloaded job artifacts unless ``MANTIS_ARTIFACT_CACHE`` says."""


class TaskEnvironmentError(ValueError):
    """A MANTIS_* variable is missing or malformed; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int | None = None, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise TaskEnvironmentError(f"{name} is not set")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TaskEnvironmentError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise TaskEnvironmentError(f"{name} must be >= {minimum}, got {value}")
    return value


def _seconds(
    env: Mapping[str, str], name: str, default: float, what: str = "a number of seconds"
) -> float:
    raw = env.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise TaskEnvironmentError(f"{name} must be {what}, got {raw!r}") from None
    if value < 0:
        raise TaskEnvironmentError(f"{name} must be >= 0, got {value}")
    return value


def _zk_root(raw: str) -> str:
    if not raw:
        return DEFAULT_ZK_ROOT
    if not raw.startswith("/"):
        raise TaskEnvironmentError(f"MANTIS_ZK_ROOT must be an absolute znode path, got {raw!r}")
    return raw


@dataclass(frozen=True)
class TaskEnvironment:
    """What a worker is told by its environment (set by the master's task launcher)."""

    job_id: str
    """``MANTIS_JOB_ID``, e.g. ``demo-1``."""
    stage: int
    """``MANTIS_STAGE`` (1-based)."""
    index: int
    """``MANTIS_WORKER_INDEX``."""
    number: int
    """``MANTIS_WORKER_NUMBER``."""
    master_url: str
    """``MANTIS_MASTER_URL``, e.g. ``http://127.0.0.1:8100``."""
    artifact: str
    """``MANTIS_ARTIFACT_URL``: the job's jobJarUrl (URL, path or module name)."""
    ports: tuple[int, ...] = ()
    """``MANTIS_PORTS``: the task's ports; the first is the data port (stage output or sink).
    Empty: an ephemeral port (only useful when no master publishes the port)."""
    metrics_port: int = -1
    """``MANTIS_METRICS_PORT`` (Mantis' WorkerTopologyInfo reads the same variable): where the
    worker serves its metrics (runtime.metrics); -1: it serves none."""
    cpu_cores: float = 0.0
    """``MANTIS_CPU_CORES``: the stage's machineDefinition.cpuCores (ResourceUsage.cpuLimit)."""
    memory_mb: float = 0.0
    """``MANTIS_MEMORY_MB``: the stage's machineDefinition.memoryMB (ResourceUsage.memLimit)."""
    job_name: str = ""
    """``MANTIS_JOB_NAME`` (the cluster; default: the job id without its number)."""
    stage_workers: int = 1
    """``MANTIS_STAGE_WORKERS``: how many workers the stage has."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """``MANTIS_PARAMETERS``: a JSON object of the job's parameter values."""
    heartbeat_secs: float = 5.0
    """``MANTIS_HEARTBEAT_SECS``."""
    host: str = "127.0.0.1"
    """``MANTIS_HOST``: the address the data port binds."""
    hostname: str = ""
    """``MANTIS_HOSTNAME``: this worker's host as the master knows it (for status messages)."""
    artifact_cache: Path = DEFAULT_ARTIFACT_CACHE
    """``MANTIS_ARTIFACT_CACHE``."""
    subscription_timeout_secs: float = 0.0
    """``MANTIS_SUBSCRIPTION_TIMEOUT_SECS``: for a transient job's sink workers; 0 = never."""
    min_runtime_secs: float = 0.0
    """``MANTIS_MIN_RUNTIME_SECS``: no subscription timeout before the job ran this long."""
    api_token: str = field(default="", repr=False)
    """``MANTIS_API_TOKEN``: the master's bearer token, when it requires one."""
    zk: str = ""
    """``MANTIS_ZK``: ZooKeeper ``host:port[,host:port][/chroot]`` where masters elect their
    leader: the worker follows the leader published there (common.master_leader). Empty: one
    master, at ``MANTIS_MASTER_URL``."""
    zk_root: str = DEFAULT_ZK_ROOT
    """``MANTIS_ZK_ROOT``: the masters' root under the chroot."""

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> TaskEnvironment:
        env = os.environ if env is None else env
        job_id = env.get("MANTIS_JOB_ID", "")
        if not job_id:
            raise TaskEnvironmentError("MANTIS_JOB_ID is not set")
        master_url = env.get("MANTIS_MASTER_URL", "")
        if not master_url.startswith(("http://", "https://")):
            raise TaskEnvironmentError(
                f"MANTIS_MASTER_URL must be an http(s) URL, got {master_url!r}"
            )
        try:
            ports = tuple(int(p) for p in env.get("MANTIS_PORTS", "").split(",") if p.strip())
        except ValueError:
            raise TaskEnvironmentError(
                f"MANTIS_PORTS must be comma-separated integers, got {env['MANTIS_PORTS']!r}"
            ) from None
        raw_params = env.get("MANTIS_PARAMETERS", "") or "{}"
        try:
            params = orjson.loads(raw_params)
        except orjson.JSONDecodeError:
            raise TaskEnvironmentError("MANTIS_PARAMETERS must be a JSON object") from None
        if not isinstance(params, dict):
            raise TaskEnvironmentError("MANTIS_PARAMETERS must be a JSON object")
        heartbeat = _seconds(env, "MANTIS_HEARTBEAT_SECS", 5.0)
        if not heartbeat > 0:
            raise TaskEnvironmentError("MANTIS_HEARTBEAT_SECS must be > 0")
        return cls(
            job_id=job_id,
            stage=_int(env, "MANTIS_STAGE", minimum=1),
            index=_int(env, "MANTIS_WORKER_INDEX"),
            number=_int(env, "MANTIS_WORKER_NUMBER", minimum=1),
            master_url=master_url,
            artifact=env.get("MANTIS_ARTIFACT_URL", ""),
            ports=ports,
            metrics_port=_int(env, "MANTIS_METRICS_PORT", -1, minimum=-1),
            cpu_cores=_seconds(env, "MANTIS_CPU_CORES", 0.0, "a number of cores"),
            memory_mb=_seconds(env, "MANTIS_MEMORY_MB", 0.0, "a number of MB"),
            job_name=env.get("MANTIS_JOB_NAME", "") or job_id.rpartition("-")[0] or job_id,
            stage_workers=_int(env, "MANTIS_STAGE_WORKERS", 1, minimum=1),
            parameters={
                str(k): v if isinstance(v, str) else orjson.dumps(v).decode()
                for k, v in params.items()
            },
            heartbeat_secs=heartbeat,
            host=env.get("MANTIS_HOST", "") or "127.0.0.1",
            hostname=env.get("MANTIS_HOSTNAME", ""),
            artifact_cache=Path(env.get("MANTIS_ARTIFACT_CACHE", "") or DEFAULT_ARTIFACT_CACHE),
            subscription_timeout_secs=_seconds(env, "MANTIS_SUBSCRIPTION_TIMEOUT_SECS", 0.0),
            min_runtime_secs=_seconds(env, "MANTIS_MIN_RUNTIME_SECS", 0.0),
            api_token=env.get("MANTIS_API_TOKEN", ""),
            zk=env.get("MANTIS_ZK", ""),
            zk_root=_zk_root(env.get("MANTIS_ZK_ROOT", "")),
        )

    def environ(self) -> dict[str, str]:
        """These settings as MANTIS_* variables (what a launcher sets)."""
        return {
            "MANTIS_JOB_ID": self.job_id,
            "MANTIS_STAGE": str(self.stage),
            "MANTIS_WORKER_INDEX": str(self.index),
            "MANTIS_WORKER_NUMBER": str(self.number),
            "MANTIS_MASTER_URL": self.master_url,
            "MANTIS_ARTIFACT_URL": self.artifact,
            "MANTIS_PORTS": ",".join(str(p) for p in self.ports),
            "MANTIS_METRICS_PORT": str(self.metrics_port),
            "MANTIS_CPU_CORES": str(self.cpu_cores),
            "MANTIS_MEMORY_MB": str(self.memory_mb),
            "MANTIS_JOB_NAME": self.job_name,
            "MANTIS_STAGE_WORKERS": str(self.stage_workers),
            "MANTIS_PARAMETERS": orjson.dumps(dict(self.parameters)).decode(),
            "MANTIS_HEARTBEAT_SECS": str(self.heartbeat_secs),
            "MANTIS_HOST": self.host,
            "MANTIS_HOSTNAME": self.hostname,
            "MANTIS_ARTIFACT_CACHE": str(self.artifact_cache),
            "MANTIS_SUBSCRIPTION_TIMEOUT_SECS": str(self.subscription_timeout_secs),
            "MANTIS_MIN_RUNTIME_SECS": str(self.min_runtime_secs),
            **({"MANTIS_API_TOKEN": self.api_token} if self.api_token else {}),
            **({"MANTIS_ZK": self.zk, "MANTIS_ZK_ROOT": self.zk_root} if self.zk else {}),
        }

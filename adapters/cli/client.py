"""A small synchronous client of the master's REST API, for the `mantis` client commands.

One method per call, on Mantis' v1 paths (adapters/http): standard library `urllib` only, so
that scripts and the CLI need nothing beyond the package. A 4xx/5xx answer becomes an
`ApiError` (a `CommandRejected`: the CLI prints it as one line, exit status 1); a master that
cannot be reached becomes `MasterUnreachable` (an `OSError`) naming the URL. `connect` reads
the job output stream (Server-Sent Events) and yields each event decoded from JSON.

With several masters (`mantis master --zk`), `find_leader` reads the leader's URL once from
ZooKeeper (`<root>/leader`, common.master_leader), as Mantis' clients do through its
ZookeeperMasterMonitor; a follower reached anyway redirects (302 for reads, 307 for calls with
a body), and the client follows with the same method, body and token (urllib alone would
refuse a 307 for a POST and turn a POST redirected by 302 into a GET).

Without a token given, the client finds the one of a local `mantis up` (`discover_token`):
$MANTIS_API_TOKEN, else the `api-token` file in its data folder (./mantis-data by default),
the file only for a master on this machine so that a local token never goes elsewhere.

The helpers at the end build a NamedJobDefinition from simple arguments (an artifact, the
workers per stage, cpus and memory, parameters and labels), and turn a cluster as the API
renders it back into one, for a full update (PUT).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from common.master_leader import (
    DEFAULT_ZK_ROOT,
    MAX_REDIRECTS,
    REDIRECTS,
    leader_path,
    leader_url,
)
from common.sse import SseParser
from core.errors import CommandRejected

DEFAULT_URL = "http://127.0.0.1:8100"
DEFAULT_DATA_DIR = Path("mantis-data")
TOKEN_FILE = "api-token"
"""The file in a `mantis up` data folder that holds the API token (mode 0600)."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
Json = dict[str, Any]


def discover_token(url: str, data_dir: Path | None = None) -> str | None:
    """$MANTIS_API_TOKEN, else for a master on this machine the token `mantis up` wrote to
    `<data_dir>/api-token` (default ./mantis-data), else None."""
    token = os.environ.get("MANTIS_API_TOKEN")
    if token:
        return token
    if urlsplit(url).hostname not in LOOPBACK_HOSTS:
        return None
    try:
        return (data_dir or DEFAULT_DATA_DIR).joinpath(TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


_KAZOO_LOG = logging.getLogger(f"{__name__}.kazoo")
_KAZOO_LOG.setLevel(logging.ERROR)  # its connection attempts are not the CLI's output


def find_leader(zk: str, root: str = DEFAULT_ZK_ROOT, timeout: float = 10.0) -> str:
    """The URL of the Mantis leader published in ZooKeeper `zk` (``host:port[/chroot]``)
    under `root`; `MasterUnreachable` if ZooKeeper does not answer or names no leader."""
    path = leader_path(root)
    client = KazooClient(hosts=zk, timeout=timeout, logger=_KAZOO_LOG)
    try:
        with warnings.catch_warnings():  # kazoo warns of a missing chroot: no leader either
            warnings.simplefilter("ignore", UserWarning)
            client.start(timeout=timeout)
    except KazooTimeoutError:
        raise MasterUnreachable(
            f"cannot reach ZooKeeper at {zk} within {timeout:g} s to find the Mantis leader"
        ) from None
    try:
        data, _ = client.get(path)
    except NoNodeError:
        data = None
    except KazooException as e:
        raise MasterUnreachable(f"cannot read {path} in ZooKeeper at {zk}: {e!r}") from None
    finally:
        client.stop()
        client.close()
    url = leader_url(data)
    if url is None:
        raise MasterUnreachable(
            f"no Mantis leader is published at {path} in ZooKeeper {zk}: "
            "are the masters running (mantis master --zk)?"
        )
    return url


class ApiError(CommandRejected):
    """The master answered with an error: its HTTP status, message and (maybe) field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        if field and not message.startswith(f"{field}:"):
            message = f"{field}: {message}"
        super().__init__(message)
        self.status = status
        self.field = field

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


class MasterUnreachable(ConnectionError):
    """No answer from the master's URL (refused, unknown host, timed out)."""


def _quote(segment: str) -> str:
    return quote(segment, safe="")


class MantisClient:
    """The master's REST API at `url`; `token` is sent as a bearer token with every call
    (None: the one `discover_token` finds, with `data_dir`; "": none)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float = 10.0,
        data_dir: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = discover_token(self.url, data_dir) if token is None else token
        self.timeout = timeout
        self._local_token = token is None and not os.environ.get("MANTIS_API_TOKEN")
        """A token read from this machine's data folder: never sent to another machine."""

    # ---------------------------------------------------------------------- job clusters

    def create_cluster(self, definition: Json) -> Json:
        """POST a NamedJobDefinition (`cluster_definition` builds one); returns the cluster."""
        return self._json(self._call("POST", "/api/v1/jobClusters", body=definition))

    def list_clusters(self, matching: str | None = None) -> list[Json]:
        query = {"matching": matching} if matching else None
        return self._list(self._call("GET", "/api/v1/jobClusters", query=query))

    def get_cluster(self, name: str) -> Json:
        return self._json(self._call("GET", f"/api/v1/jobClusters/{_quote(name)}"))

    def update_cluster(self, name: str, definition: Json) -> Json:
        """A full update (a new version): `definition` replaces the cluster's."""
        path = f"/api/v1/jobClusters/{_quote(name)}"
        return self._json(self._call("PUT", path, body=definition))

    def delete_cluster(self, name: str, user: str) -> None:
        self._call("DELETE", f"/api/v1/jobClusters/{_quote(name)}", query={"user": user})

    def enable_cluster(self, name: str, user: str) -> None:
        self._cluster_action(name, "enableCluster", {"user": user})

    def disable_cluster(self, name: str, user: str) -> None:
        """Kills the cluster's active jobs and refuses submissions until enabled."""
        self._cluster_action(name, "disableCluster", {"user": user})

    def _cluster_action(self, name: str, action: str, body: Json) -> None:
        path = f"/api/v1/jobClusters/{_quote(name)}/actions/{action}"
        self._call("POST", path, body={"name": name, **body})

    # ---------------------------------------------------------------------- jobs

    def submit_job(
        self,
        cluster: str,
        user: str,
        *,
        parameters: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        artifact: str | None = None,
    ) -> Json:
        """Submit a job of `cluster`; what is not given comes from the cluster. Returns the job."""
        body: Json = {"name": cluster, "user": user}
        if parameters is not None:
            body["parameters"] = named(parameters)
        if labels is not None:
            body["labels"] = named(labels)
        if artifact is not None:
            body.update(artifact_fields(artifact))
        return self._json(self._call("POST", "/api/v1/jobs", body=body))

    def list_jobs(self, cluster: str | None = None, active_only: bool = True) -> list[Json]:
        """Newest first; only active jobs unless `active_only` is False."""
        path = f"/api/v1/jobClusters/{_quote(cluster)}/jobs" if cluster else "/api/v1/jobs"
        query = {"activeOnly": "true" if active_only else "false"}
        return self._list(self._call("GET", path, query=query))

    def get_job(self, job_id: str) -> Json:
        return self._json(self._call("GET", f"/api/v1/jobs/{_quote(job_id)}"))

    def kill_job(self, job_id: str, user: str, reason: str) -> None:
        query = {"user": user, "reason": reason}
        self._call("DELETE", f"/api/v1/jobs/{_quote(job_id)}", query=query)

    def scale_stage(self, job_id: str, stage: int, workers: int, user: str, reason: str) -> None:
        body = {
            "JobId": job_id,
            "StageNumber": stage,
            "NumWorkers": workers,
            "User": user,
            "Reason": reason,
        }
        self._call("POST", f"/api/v1/jobs/{_quote(job_id)}/actions/scaleStage", body=body)

    def resubmit_worker(self, job_id: str, worker_number: int, user: str, reason: str) -> None:
        body = {"workerNumber": worker_number, "user": user, "reason": reason}
        self._call("POST", f"/api/v1/jobs/{_quote(job_id)}/actions/resubmitWorker", body=body)

    # ---------------------------------------------------------------------- agents

    def list_agents(self) -> list[Json]:
        return self._list(self._call("GET", "/api/v1/agents"))

    def agent_action(self, agent: str, action: str, user: str) -> None:
        """`disable`, `drain` or `enable` the agent (an agent id or a hostname)."""
        path = f"/api/v1/agents/{_quote(agent)}/actions/{action}"
        self._call("POST", path, body={"user": user})

    # ---------------------------------------------------------------------- artifacts

    def upload_artifact(self, path: Path | str, name: str | None = None) -> Json:
        """Upload a file (named as the file unless `name`); returns name, size, sha256, url."""
        path = Path(path)
        data = path.read_bytes()
        query = {"name": name or path.name}
        return self._json(self._call("POST", "/api/v1/jobArtifacts", query=query, data=data))

    def list_artifacts(self) -> list[Json]:
        found = self._call("GET", "/api/v1/jobArtifacts")
        if not isinstance(found, list):
            raise ApiError(200, f"expected a JSON list from {self.url}, got {type(found).__name__}")
        return found

    # ---------------------------------------------------------------------- job output

    def connect(
        self,
        job_id: str | None = None,
        *,
        cluster: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Generator[Any, None, None]:
        """The output of a job (or of a cluster's newest job), one decoded event at a time.

        `params` go to the sink workers (clientId, sample, ...). The stream has no read
        timeout: it ends when the job ends, or when the caller stops iterating.
        """
        if (job_id is None) == (cluster is None):
            raise ValueError("connect to a job_id or to a cluster, not both or neither")
        if job_id is not None:
            path = f"/jobconnectbyid/{_quote(job_id)}"
        else:
            path = f"/jobconnectbyname/{_quote(cluster or '')}"
        request = self._request("GET", path, query=params, accept="text/event-stream")
        with self._open(request, timeout=None) as response:
            yield from sse_events(iter(lambda: response.read1(65536), b""))

    # ---------------------------------------------------------------------- transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        data: bytes | None = None,
        accept: str = "application/json",
    ) -> urllib.request.Request:
        url = self.url + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": accept}
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return urllib.request.Request(url, data=data, headers=headers, method=method)

    def _open(self, request: urllib.request.Request, timeout: float | None) -> Any:
        for _ in range(MAX_REDIRECTS):
            try:
                return _OPENER.open(request, timeout=timeout)
            except urllib.error.HTTPError as e:
                with e:
                    location = e.headers.get("Location")
                    if e.code not in REDIRECTS or not location:
                        raise _api_error(e.code, e.read(), e.reason) from None
                request = _redirected(request, location)
                if self._local_token and urlsplit(request.full_url).hostname not in LOOPBACK_HOSTS:
                    request.remove_header("Authorization")
            except urllib.error.URLError as e:
                raise MasterUnreachable(
                    f"cannot reach the master at {self.url} ({_reason(e.reason)}): "
                    "is `mantis up` running?"
                ) from None
        raise MasterUnreachable(
            f"the master at {self.url} redirected more than {MAX_REDIRECTS} times "
            "(masters electing a leader?): try again shortly"
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; the decoded JSON answer (None for an empty one)."""
        request = self._request(method, path, **kwargs)
        try:
            with self._open(request, self.timeout) as response:
                raw = response.read()
        except TimeoutError:  # raised as it is while reading, not wrapped in a URLError
            raise MasterUnreachable(
                f"the master at {self.url} did not answer within {self.timeout} s"
            ) from None
        if not raw:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(200, f"{method} {path}: the answer is not JSON") from None

    def _json(self, value: Any) -> Json:
        if not isinstance(value, dict):
            raise ApiError(
                200, f"expected a JSON object from {self.url}, got {type(value).__name__}"
            )
        return value

    def _list(self, value: Any) -> list[Json]:
        """The `list` of one of Mantis' pages (`{list, prev, next, total}`)."""
        items = self._json(value).get("list")
        if not isinstance(items, list):
            raise ApiError(200, f"expected a page with a list from {self.url}")
        return items


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects come back as HTTPErrors, for `_redirected` to follow."""

    def redirect_request(self, *args: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _redirected(request: urllib.request.Request, location: str) -> urllib.request.Request:
    """`request` again, to `location` (relative to its URL), with its method, body and headers:
    a follower redirects every call to its leader, and the call must arrive as it was sent."""
    return urllib.request.Request(
        urllib.parse.urljoin(request.full_url, location),
        data=request.data,
        headers=dict(request.header_items()),
        method=request.get_method(),
    )


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    return str(reason)


def _api_error(status: int, raw: bytes, reason: str) -> ApiError:
    """The master's `{"error", "field"}`, or the HTTP reason if the body is not that."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        field = body.get("field")
        return ApiError(status, body["error"], field if isinstance(field, str) else None)
    return ApiError(status, reason or "error")


def sse_events(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Server-Sent Events from the bytes of a stream as they are read (parsed by common.sse):
    each event's data, decoded from JSON if it is JSON. An event the stream ends before the
    blank line that completes it is dropped, as the format says."""
    parser = SseParser()
    for chunk in chunks:
        for data in parser.feed(chunk):
            yield _decode(data)


def _decode(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------- definitions


def parse_stages(text: str) -> dict[int, int]:
    """`"1:2,2:1"` (stage:workers, stages numbered 1..N) -> {1: 2, 2: 1}; ValueError if not."""
    stages: dict[int, int] = {}
    for item in text.split(","):
        match = re.fullmatch(r"\s*([0-9]{1,6})\s*:\s*([0-9]{1,6})\s*", item)
        if not match:
            raise ValueError(f"{item.strip()!r} is not stage:workers (e.g. 1:2)")
        number, count = int(match[1]), int(match[2])
        if number in stages:
            raise ValueError(f"stage {number} is given twice")
        if count < 1:
            raise ValueError(f"stage {number} needs at least 1 worker, got {count}")
        stages[number] = count
    if sorted(stages) != list(range(1, len(stages) + 1)):
        raise ValueError(f"stages must be numbered 1..N, got {sorted(stages)}")
    return stages


def parse_key_value(text: str) -> tuple[str, str]:
    """`"k=v"` -> ("k", "v"); the value may contain '=' and be empty; ValueError if no '='."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{text!r} is not name=value")
    return key, value


def named(values: Mapping[str, str]) -> list[Json]:
    """Mantis' `[{name, value}]` lists (parameters, labels)."""
    return [{"name": k, "value": v} for k, v in values.items()]


def artifact_fields(artifact: str) -> Json:
    """A URL or a path (anything with a '/') is the job's file location; anything else names
    an uploaded artifact (or an importable module, for a master on this machine)."""
    if "://" in artifact:
        return {"jobJarFileLocation": artifact}
    if "/" in artifact:
        return {"jobJarFileLocation": str(Path(artifact).expanduser().resolve())}
    return {"artifactName": artifact}


def stage_definition(workers: int, cpus: float, memory: float, scalable: bool = False) -> Json:
    return {
        "numberOfInstances": workers,
        "scalable": scalable,
        "machineDefinition": {"cpuCores": cpus, "memoryMB": memory},
    }


def cluster_definition(
    name: str,
    artifact: str,
    user: str,
    *,
    stages: Mapping[int, int] | None = None,
    cpus: float = 1.0,
    memory: float = 512.0,
    scalable: bool = False,
    parameters: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    version: str | None = None,
) -> Json:
    """A NamedJobDefinition: every stage gets `cpus` and `memory` (MB) per worker."""
    definition: Json = {
        "name": name,
        "user": user,
        **artifact_fields(artifact),
        "schedulingInfo": {
            "stages": {
                str(n): stage_definition(w, cpus, memory, scalable)
                for n, w in sorted((stages or {1: 1}).items())
            }
        },
        "parameters": named(parameters or {}),
        "labels": named(labels or {}),
    }
    if version:
        definition["version"] = version
    return {"jobDefinition": definition}


def latest_jar(cluster: Json) -> Json:
    """The cluster's current version (artifact and scheduling info), as rendered by the API."""
    jars: list[Json] = cluster.get("jars") or []
    if not jars:
        raise ApiError(200, f"job cluster {cluster.get('name')!r} has no versions")
    current = [j for j in jars if j.get("version") == cluster.get("latestVersion")]
    return current[-1] if current else jars[-1]


def updated_definition(
    cluster: Json,
    user: str,
    *,
    artifact: str | None = None,
    stages: Mapping[int, int] | None = None,
    cpus: float | None = None,
    memory: float | None = None,
    scalable: bool | None = None,
    parameters: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    version: str | None = None,
) -> Json:
    """A NamedJobDefinition for a full update of `cluster` (as GET renders it): what is not
    given stays; `stages` sets the worker counts (new stages copy the last one's machine);
    parameters and labels given are added or replace those of the same name."""
    jar = latest_jar(cluster)
    old: dict[str, Json] = jar["schedulingInfo"]["stages"]
    counts = stages or {int(n): int(s["numberOfInstances"]) for n, s in old.items()}
    new_stages: dict[str, Json] = {}
    for n in sorted(counts):
        base = old.get(str(n)) or old[max(old, key=int)]
        machine = dict(base["machineDefinition"])
        if cpus is not None:
            machine["cpuCores"] = cpus
        if memory is not None:
            machine["memoryMB"] = memory
        new_stages[str(n)] = {
            **base,
            "numberOfInstances": counts[n],
            "machineDefinition": machine,
            "scalable": base.get("scalable", False) if scalable is None else scalable,
        }
    if artifact is None:
        where = {"artifactName": jar["artifactName"]}
        if jar.get("url") and jar["url"] != jar["artifactName"]:
            where["jobJarFileLocation"] = jar["url"]
    else:
        where = artifact_fields(artifact)
    old_params = {p["name"]: p["value"] for p in cluster.get("parameters") or []}
    old_labels = {label["name"]: label["value"] for label in cluster.get("labels") or []}
    sla, job_sla = cluster.get("sla") or {}, cluster.get("jobSla") or {}
    definition: Json = {
        "name": cluster["name"],
        "user": user,
        **where,
        "schedulingInfo": {"stages": new_stages},
        "parameters": named({**old_params, **(parameters or {})}),
        "labels": named({**old_labels, **(labels or {})}),
        "slaMin": sla.get("min", 0),
        "slaMax": sla.get("max", 0),
        "cronSpec": sla.get("cronSpec"),
        "cronPolicy": sla.get("cronPolicy"),
        "jobSla": job_sla or None,
    }
    if version:
        definition["version"] = version
    owner = cluster.get("owner")
    return {"jobDefinition": definition, **({"owner": owner} if owner else {})}

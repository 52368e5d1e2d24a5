"""The OpenAPI 3 document of the master's HTTP API, built in code, served at /api/v1/openapi.json.

One table (`_operations`) lists every route with its parameters, body and responses; a test
checks it against the app's router both ways, and a schemathesis run checks the responses
against it. The request bodies' schemas are derived from their declarations
(adapters/http/bodies.py `components`), which the server also parses with; they give Mantis'
canonical JSON types (the server also takes numbers and booleans as strings, as Mantis does).
The responses' schemas are written here; those shared with requests (NameValue, JobSla,
SchedulingInfo, Owner, MigrationConfig) are the bodies'.
"""

from __future__ import annotations

from aiohttp import web

from adapters.http.bodies import MAX_NAME, MAX_VALUE, NO_CONTROL, SAFE_ARTIFACT_NAME, components
from adapters.http.queries import MAX_REGEX
from adapters.http.responses import Json, json_response

PATH = "/api/v1/openapi.json"
DOCUMENT = web.AppKey("openapi_document", dict)
JSON_TYPE = "application/json"


def add_route(app: web.Application, with_artifacts: bool) -> None:
    app[DOCUMENT] = document(with_artifacts)
    app.router.add_get(PATH, serve_document)


async def serve_document(request: web.Request) -> web.Response:
    return json_response(request.app[DOCUMENT])


# ---------------------------------------------------------------------- schema helpers


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(
    required: tuple[str, ...] = (), nullable: bool = False, extra: bool = True, **props: Json
) -> Json:
    schema: Json = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if nullable:
        schema["nullable"] = True
    if not extra:
        schema["additionalProperties"] = False
    return schema


def arr(items: Json) -> Json:
    return {"type": "array", "items": items}


STR: Json = {"type": "string"}
# Query strings, as the handlers bound them (a name has no control characters).
NAME_IN: Json = {"type": "string", "maxLength": MAX_NAME, "pattern": NO_CONTROL}
VALUE_IN: Json = {"type": "string", "maxLength": MAX_VALUE}
ARTIFACT_IN: Json = {
    "type": "string",
    "pattern": f"^{SAFE_ARTIFACT_NAME.pattern}$",
    "description": "an artifact's file name, or a module name",
}
NSTR: Json = {"type": "string", "nullable": True}
INT: Json = {"type": "integer"}
NUM: Json = {"type": "number"}
BOOL: Json = {"type": "boolean"}
MILLIS: Json = {"type": "integer", "description": "epoch milliseconds; -1 when unset"}
CONSTRAINT: Json = {
    "type": "string",
    "enum": ["UniqueHost", "ExclusiveHost", "ZoneBalance", "M3Cluster", "M4Cluster", "M5Cluster"],
}
JOB_STATE: Json = {
    "type": "string",
    "enum": [
        "Accepted",
        "Launched",
        "Terminating_abnormal",
        "Terminating_normal",
        "Failed",
        "Completed",
        "Noop",
    ],
}
WORKER_STATE: Json = {
    "type": "string",
    "enum": [
        "Accepted",
        "Launched",
        "StartInitiated",
        "Started",
        "Failed",
        "Completed",
        "Noop",
        "Unknown",
    ],
}
REASON: Json = {"type": "string", "enum": ["Normal", "Error", "Lost", "Killed", "Relaunched"]}


def _scaling_policy() -> Json:
    strategy = obj(
        reason=STR, scaleDownBelowPct=NUM, scaleUpAbovePct=NUM, rollingCount=obj(count=INT, of=INT)
    )
    return obj(
        nullable=True,
        stage=INT,
        min=INT,
        max=INT,
        increment=INT,
        decrement=INT,
        coolDownSecs=INT,
        enabled=BOOL,
        strategies={"type": "object", "additionalProperties": strategy},
    )


SCHEMAS: dict[str, Json] = {
    "Error": obj(("error",), error=STR, field=STR),
    "Agent": obj(
        ("agentId", "hostname", "mode", "workers"),
        agentId=STR,
        hostname=STR,
        mode={"type": "string", "enum": ["ACTIVE", "DISABLED", "DRAINING", "DRAINED"]},
        workers=arr(STR),
    ),
    "ClusterHealth": obj(
        ("isHealthy", "message"),
        responseCode=STR,
        message=STR,
        isHealthy=BOOL,
        failureReason=obj(
            ("type", "workers"),
            nullable=True,
            type={"type": "string", "enum": ["unreadyWorkers"]},
            workers=arr(
                obj(
                    ("jobId", "workerIndex", "workerNumber", "state"),
                    jobId=STR,
                    workerIndex=INT,
                    workerNumber=INT,
                    state=WORKER_STATE,
                )
            ),
        ),
    ),
    "JobSchedulingInfo": obj(
        ("jobId", "workerAssignments"),
        jobId=STR,
        workerAssignments={"type": "object", "additionalProperties": {"type": "object"}},
    ),
    "Cluster": obj(
        ("name", "jars", "sla", "parameters", "labels", "disabled", "latestVersion"),
        name=STR,
        jars=arr(
            obj(
                ("url", "version", "uploadedAt", "schedulingInfo"),
                url=STR,
                artifactName=STR,
                uploadedAt=MILLIS,
                version=STR,
                schedulingInfo=ref("SchedulingInfo"),
            )
        ),
        sla=obj(("min", "max"), min=INT, max=INT, cronSpec=NSTR, cronPolicy=NSTR),
        jobSla=ref("JobSla"),
        parameters=arr(ref("NameValue")),
        owner=ref("Owner"),
        user=STR,
        lastJobCount=INT,
        disabled=BOOL,
        isReadyForJobMaster=BOOL,
        labels=arr(ref("NameValue")),
        cronActive=BOOL,
        latestVersion=STR,
        migrationConfig=ref("MigrationConfig"),
    ),
    "Worker": obj(
        ("workerIndex", "workerNumber", "jobId", "stageNum", "state"),
        workerIndex=INT,
        workerNumber=INT,
        jobId=STR,
        stageNum=INT,
        numberOfPorts=INT,
        metricsPort=INT,
        consolePort=INT,
        debugPort=INT,
        customPort=INT,
        ports=arr(INT),
        state=WORKER_STATE,
        slave=NSTR,
        slaveID=NSTR,
        cluster=NSTR,
        acceptedAt=MILLIS,
        launchedAt=MILLIS,
        startingAt=MILLIS,
        startedAt=MILLIS,
        completedAt=MILLIS,
        reason=REASON,
        resubmitOf=INT,
        totalResubmitCount=INT,
        message=STR,
        pendingReason=STR,
        resubmitReason={**REASON, "nullable": True},
        resubmitMessage=STR,
    ),
    "Job": obj(
        ("jobMetadata", "stageMetadataList", "workerMetadataList"),
        jobMetadata=obj(
            ("jobId", "name", "state"),
            jobId=STR,
            name=STR,
            user=STR,
            submittedAt=MILLIS,
            startedAt=MILLIS,
            endedAt=MILLIS,
            jarUrl=STR,
            artifactName=STR,
            numStages=INT,
            sla=ref("JobSla"),
            state=JOB_STATE,
            reason={**REASON, "nullable": True},
            message=STR,
            subscriptionTimeoutSecs=INT,
            parameters=arr(ref("NameValue")),
            nextWorkerNumberToUse=INT,
            labels=arr(ref("NameValue")),
        ),
        stageMetadataList=arr(
            obj(
                ("jobId", "stageNum", "numWorkers"),
                jobId=STR,
                stageNum=INT,
                numStages=INT,
                machineDefinition=ref("MachineDefinition"),
                numWorkers=INT,
                hardConstraints=arr(CONSTRAINT),
                softConstraints=arr(CONSTRAINT),
                scalingPolicy=_scaling_policy(),
                scalable=BOOL,
                scalingHistory=arr(  # the last scalings, by users or the autoscaler
                    obj(
                        ("at", "toWorkers"),
                        at=MILLIS,
                        fromWorkers=INT,
                        toWorkers=INT,
                        user=STR,
                        reason=STR,
                    )
                ),
            )
        ),
        workerMetadataList=arr(ref("Worker")),
        version=STR,
    ),
    "CompactJob": obj(  # compact=true (adapters/http/compact.py): Mantis' CompactJobInfo
        ("jobId", "submittedAt", "terminatedAt", "user", "jarUrl", "state", "type"),
        jobId=STR,
        submittedAt=MILLIS,
        terminatedAt=MILLIS,
        user=STR,
        jarUrl=STR,
        state=JOB_STATE,
        type={"type": "string", "enum": ["Perpetual", "Transient"]},
        numStages=INT,
        numWorkers=INT,
        totCPUs=NUM,
        totMemory=NUM,
        statesSummary={
            "type": "object",
            "additionalProperties": INT,
            "description": "worker state -> how many of the listed workers are in it",
        },
        labels=arr(ref("NameValue")),
    ),
    "MasterInfo": obj(
        ("hostname", "hostIP", "apiPort", "createTime"),
        hostname=STR,
        hostIP=STR,
        apiPort=INT,
        schedInfoPort=INT,
        apiPortV2=INT,
        consolePort=INT,
        apiStatusUri=STR,
        createTime=MILLIS,
        fullApiStatusUri=STR,
        isLeader=BOOL,
        instanceId=STR,
    ),
    "Health": obj(("isHealthy",), isHealthy=BOOL, failureReason=NSTR),
    "Artifact": obj(
        ("name", "size", "etag"),
        name=STR,
        size=INT,
        createdAt=MILLIS,
        etag=STR,
        url=STR,
        sha256=STR,
    ),
}


def page_of(item: str) -> Json:
    return obj(
        ("list", "prev", "next", "total"), list=arr(ref(item)), prev=NSTR, next=NSTR, total=INT
    )


# ---------------------------------------------------------------------- operations


def query(
    name: str, schema: Json, description: str = "", required: bool = False, example: object = None
) -> Json:
    param = {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }
    if example is not None:
        param["example"] = example
    return param


def path_param(name: str, example: str) -> Json:
    return {"name": name, "in": "path", "required": True, "schema": STR, "example": example}


PAGING = [
    query("pageSize", {"type": "integer", "minimum": 0}, "records per page; 0: all"),
    query("offset", {"type": "integer", "minimum": 0}, "first record"),
]
NAME, JOB_ID = path_param("name", "demo"), path_param("jobId", "demo-1")
ARTIFACT = path_param("name", "demo-1.0.zip")
USER = query("user", NAME_IN, "who asks", required=True, example="alice")
MATCHING = {"type": "string", "maxLength": MAX_REGEX}
_STAGE = {
    "numberOfInstances": 1,
    "machineDefinition": {"cpuCores": 1, "memoryMB": 512},
    "scalable": True,
}
CLUSTER_EXAMPLE: Json = {
    "jobDefinition": {
        "name": "demo",
        "user": "alice",
        "version": "2",
        "jobJarFileLocation": "http://127.0.0.1:7101/api/v1/jobArtifacts/demo-1.0.zip",
        "schedulingInfo": {"stages": {"1": _STAGE}},
        "parameters": [{"name": "rate", "value": "10"}],
        "labels": [{"name": "team", "value": "a"}],
        "slaMin": 0,
        "slaMax": 2,
    },
    "owner": {"name": "Alice", "contactEmail": "alice@example.com"},
}
JOB_EXAMPLE: Json = {
    "name": "demo",
    "user": "alice",
    "subscriptionTimeoutSecs": 60,
    "jobSla": {"durationType": "Transient", "runtimeLimitSecs": 3600},
}
ERRORS = {
    400: "bad input (the field is named)",
    401: "bearer token missing or wrong",
    403: "Host not a name of this server, or a cross-site call changing something",
    404: "not found",
    409: "conflicts with the current state",
    413: "body too large",
    415: "body of a type this call does not take",
}
JOB_LIST_FILTERS = [
    query("jobState", {"type": "string", "enum": ["Active", "Terminal"]}, "over activeOnly"),
    query("activeOnly", BOOL, "default true"),
    query("matching", MATCHING, "RE2 regular expression searched in the cluster name"),
    query("labels", STR, "comma-separated name=value (or name) terms"),
    query("labels.op", {"type": "string", "enum": ["and", "or"]}, "default or"),
    query("stageNumber", {"type": "integer", "minimum": 0}),
    query("workerIndex", {"type": "integer", "minimum": 0}),
    query("workerNumber", {"type": "integer", "minimum": 0}),
    query("workerState", {"type": "string", "enum": ["Noop", "Active", "Terminal"]}),
    query("limit", {"type": "integer", "minimum": 0}),
    query("ascending", BOOL, "default false: newest first"),
    *PAGING,
]


def op(
    operation_id: str,
    summary: str,
    ok: dict[int, Json | None],
    errors: tuple[int, ...] = (400,),
    params: list[Json] | None = None,
    body: Json | None = None,
    tags: tuple[str, ...] = (),
    content: str = JSON_TYPE,
) -> Json:
    responses: Json = {}
    for status, schema in ok.items():
        responses[str(status)] = {"description": "success"}
        if schema is not None:
            responses[str(status)]["content"] = {content: {"schema": schema}}
    for status in errors:
        responses[str(status)] = {
            "description": ERRORS[status],
            "content": {JSON_TYPE: {"schema": ref("Error")}},
        }
    operation: Json = {"operationId": operation_id, "summary": summary, "responses": responses}
    if tags:
        operation["tags"] = list(tags)
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    return operation


def json_body(schema: Json, example: Json | None = None) -> Json:
    media: Json = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {JSON_TYPE: media}


def _error_response(operation: Json, status: int) -> None:
    operation["responses"][str(status)] = {
        "description": ERRORS[status],
        "content": {JSON_TYPE: {"schema": ref("Error")}},
    }


def _mutating(operation: Json) -> Json:
    operation["security"] = [{"bearer": []}]
    _error_response(operation, 401)
    return operation


def _job_output(sse: Json) -> dict[str, dict[str, Json]]:
    """The job output routes (adapters.http.job_output), with and without /api/v1."""
    sink = [query(n, STR, "forwarded to the sink workers") for n in ("clientId", "sample")]
    paths: dict[str, dict[str, Json]] = {}
    for prefix in ("", "/api/v1"):
        n = "V1" if prefix else ""
        paths[prefix + "/jobconnectbyid/{jobId}"] = {
            "get": op(
                f"jobConnectById{n}",
                "The job's output (SSE, or WebSocket on Upgrade)",
                {200: sse},
                (400, 404),
                params=[JOB_ID, *sink],
                tags=("stream",),
                content="text/event-stream",
            )
        }
        paths[prefix + "/jobconnectbyname/{cluster}"] = {
            "get": op(
                f"jobConnectByName{n}",
                "The output of the cluster's newest job, switching to newer",
                {200: sse},
                (400, 404),
                params=[path_param("cluster", "demo"), *sink],
                tags=("stream",),
                content="text/event-stream",
            )
        }
        paths[prefix + "/jobsubmitandconnect"] = {
            "post": op(
                f"jobSubmitAndConnect{n}",
                "Submit a job (as POST /api/v1/jobs), then its output",
                {200: sse},
                (400, 404, 409),
                params=sink,
                tags=("stream",),
                content="text/event-stream",
                body=json_body(ref("MantisJobDefinition")),
            )
        }
    return paths


def _operations(with_artifacts: bool) -> dict[str, dict[str, Json]]:
    c = "/api/v1/jobClusters"
    sse = {"type": "string", "description": "Server-Sent Events: data: <json> frames"}
    paths: dict[str, dict[str, Json]] = {
        c: {
            "get": op(
                "listJobClusters",
                "Job clusters by name",
                {200: page_of("Cluster")},
                params=[
                    query("matching", MATCHING, "RE2 regular expression searched in the name"),
                    *PAGING,
                ],
            ),
            "post": op(
                "createJobCluster",
                "Create a job cluster",
                {201: ref("Cluster")},
                (400, 409),
                body=json_body(ref("NamedJobDefinition"), CLUSTER_EXAMPLE),
            ),
        },
        c + "/{name}": {
            "get": op(
                "getJobCluster", "One job cluster", {200: ref("Cluster")}, (400, 404), params=[NAME]
            ),
            "put": op(
                "updateJobCluster",
                "Full update: a new version, the rest overwritten",
                {200: ref("Cluster")},
                (400, 404),
                params=[NAME],
                body=json_body(ref("NamedJobDefinition"), CLUSTER_EXAMPLE),
            ),
            "delete": op(
                "deleteJobCluster",
                "Delete a job cluster without active jobs",
                {204: None},
                (400, 404, 409),
                params=[NAME, USER],
            ),
        },
        c + "/{name}/actions/updateArtifact": {
            "post": op(
                "updateJobClusterArtifact",
                "A new version with a new artifact; submits a job unless skipsubmit",
                {204: None},
                (400, 404, 409),
                params=[NAME],
                body=json_body(
                    ref("UpdateArtifact"),
                    {"url": "http://example.com/demo-3.zip", "version": "3", "user": "a"},
                ),
            )
        },
        c + "/{name}/actions/updateSchedulingInfo": {
            "post": op(
                "updateJobClusterSchedulingInfo",
                "A new version with new scheduling info",
                {204: None},
                (400, 404),
                params=[NAME],
                body=json_body(
                    ref("UpdateSchedulingInfo"),
                    {"schedulingInfo": {"stages": {"1": _STAGE}}, "version": "4", "user": "a"},
                ),
            )
        },
        c + "/{name}/actions/updateSla": {
            "post": op(
                "updateJobClusterSla",
                "The cluster's SLA (min/max jobs or a cron)",
                {204: None},
                (400, 404),
                params=[NAME],
                body=json_body(
                    ref("UpdateSla"),
                    {"user": "alice", "min": 0, "max": 3},
                ),
            )
        },
        c + "/{name}/actions/updateLabel": {
            "post": op(
                "updateJobClusterLabels",
                "Replace the cluster's labels",
                {204: None},
                (400, 404),
                params=[NAME],
                body=json_body(
                    ref("UpdateLabels"),
                    {"user": "a", "labels": [{"name": "x", "value": "1"}]},
                ),
            )
        },
        c + "/{name}/actions/enableCluster": {
            "post": op(
                "enableJobCluster",
                "Enable the cluster",
                {204: None},
                (400, 404),
                params=[NAME],
                body=json_body(ref("ClusterAction"), {"name": "demo", "user": "alice"}),
            )
        },
        c + "/{name}/actions/disableCluster": {
            "post": op(
                "disableJobCluster",
                "Disable the cluster (its active jobs are killed)",
                {204: None},
                (400, 404),
                params=[NAME],
                body=json_body(ref("ClusterAction"), {"name": "demo", "user": "alice"}),
            )
        },
        c + "/{name}/jobs": {
            "get": op(
                "listJobClusterJobs",
                "The cluster's jobs",
                {200: page_of("Job")},
                (400, 404),
                params=[NAME, *JOB_LIST_FILTERS],
            ),
            "post": op(
                "submitJobClusterJob",
                "Submit a job of the cluster",
                {201: ref("Job")},
                (400, 404, 409),
                params=[NAME],
                body=json_body(ref("MantisJobDefinition"), JOB_EXAMPLE),
            ),
        },
        c + "/{name}/jobs/{jobId}": {
            "get": op(
                "getJobClusterJob",
                "One job of the cluster",
                {200: ref("Job")},
                (400, 404),
                params=[NAME, JOB_ID],
            )
        },
        "/api/v1/jobs": {
            "get": op(
                "listJobs",
                "Jobs, with Mantis' filters",
                {200: page_of("Job")},
                params=JOB_LIST_FILTERS,
            ),
            "post": op(
                "submitJob",
                "Submit a job of the cluster `name`",
                {201: ref("Job")},
                (400, 404, 409),
                body=json_body(ref("MantisJobDefinition"), JOB_EXAMPLE),
            ),
        },
        "/api/v1/jobs/actions/quickSubmit": {
            "post": op(
                "quickSubmitJob",
                "Submit a job like the cluster's last one",
                {201: ref("Job")},
                (400, 404, 409),
                body=json_body(
                    ref("QuickSubmit"),
                    {"name": "demo", "user": "alice", "jobDefinition": {"parameters": []}},
                ),
            )
        },
        "/api/v1/jobs/actions/postJobStatus": {
            "post": op(
                "postJobStatus",
                "A worker's status or heartbeat",
                {204: None},
                (400,),
                body=json_body(ref("JobStatus")),
                tags=("worker",),
            )
        },
        "/api/v1/jobs/{jobId}": {
            "get": op("getJob", "One job", {200: ref("Job")}, (400, 404), params=[JOB_ID]),
            "delete": op(
                "killJob",
                "Kill a job",
                {202: None},
                (400, 404, 409),
                params=[
                    JOB_ID,
                    USER,
                    query("reason", VALUE_IN, "why", required=True, example="done"),
                ],
            ),
        },
        "/api/v1/jobs/{jobId}/archivedWorkers": {
            "get": op(
                "listArchivedWorkers",
                "The job's ended workers",
                {200: page_of("Worker")},
                (400, 404),
                params=[JOB_ID, query("limit", {"type": "integer", "minimum": 0}), *PAGING],
            )
        },
        "/api/v1/jobs/{jobId}/actions/scaleStage": {
            "post": op(
                "scaleJobStage",
                "Set a scalable stage's number of workers",
                {204: None},
                (400, 404, 409),
                params=[JOB_ID],
                body=json_body(
                    ref("ScaleStage"),
                    {"StageNumber": 1, "NumWorkers": 2, "User": "a", "Reason": "load"},
                ),
            )
        },
        "/api/v1/jobs/{jobId}/actions/resubmitWorker": {
            "post": op(
                "resubmitJobWorker",
                "Replace a worker by a new one at its index",
                {204: None},
                (400, 404, 409),
                params=[JOB_ID],
                body=json_body(
                    ref("ResubmitWorker"),
                    {"workerNumber": 1, "user": "a", "reason": "stuck"},
                ),
            )
        },
        "/api/v1/jobDiscoveryStream/{jobId}": {
            "get": op(
                "jobDiscoveryStream",
                "SSE of the job's scheduling info (Started workers)",
                {200: sse},
                (400, 404),
                params=[JOB_ID, query("sendHB", BOOL)],
                tags=("stream",),
                content="text/event-stream",
            )
        },
        "/api/v1/lastSubmittedJobIdStream/{cluster}": {
            "get": op(
                "lastSubmittedJobIdStream",
                "SSE of the cluster's last submitted job id",
                {200: sse},
                (400, 404),
                params=[path_param("cluster", "demo"), query("sendHB", BOOL)],
                tags=("stream",),
                content="text/event-stream",
            )
        },
        **_job_output(sse),
        **_parity_operations(),
        "/api/v1/jobStatusStream/{jobId}": {
            "get": op(
                "jobStatusStream",
                "WebSocket of the job's lifecycle messages {status: {...}}",
                {101: None},
                (400, 404),
                params=[JOB_ID],
                tags=("stream",),
            )
        },
        "/api/v1/masterInfo": {
            "get": op("masterInfo", "This master", {200: ref("MasterInfo")}, ())
        },
        "/api/v1/healthcheck": {
            "get": op(
                "healthcheck", "200 while serving", {200: ref("Health"), 503: ref("Health")}, ()
            )
        },
        PATH: {"get": op("openapi", "This document", {200: {"type": "object"}}, ())},
        "/metrics": {
            "get": op(
                "metrics",
                "The master's metrics, Prometheus text (adapters/http/metrics.py)",
                {200: {"type": "string"}},
                (),
                content="text/plain",
            )
        },
        "/": {
            "get": op(
                "dashboard",
                "The dashboard page (adapters/http/dashboard.py)",
                {200: {"type": "string"}},
                (),
                content="text/html",
            )
        },
        "/dashboard/{file}": {
            "get": op(
                "dashboardFile",
                "The dashboard's script or style sheet",
                {200: {"type": "string"}},
                (404,),
                params=[path_param("file", "app.js")],
                content="text/javascript",
            )
        },
        "/api/v1/dashboard/stream": {
            "get": op(
                "dashboardStream",
                "SSE of the dashboard's state (on every change) and metrics (every 2 s)",
                {200: sse},
                (),
                tags=("stream",),
                content="text/event-stream",
            )
        },
    }
    if with_artifacts:
        a = "/api/v1/jobArtifacts"
        prefix = [query("prefix", STR, "names starting so"), query("contains", STR)]
        paths[a] = {
            "get": op(
                "listJobArtifacts",
                "Stored artifacts",
                {200: arr(ref("Artifact"))},
                (),
                params=prefix,
            ),
            "post": op(
                "uploadJobArtifact",
                "Store an artifact (raw body, or multipart with a file)",
                {201: ref("Artifact")},
                (400, 413),
                params=[
                    query("name", ARTIFACT_IN, "the artifact's file name", example="demo-1.0.zip")
                ],
                body={
                    kind: {"schema": {"type": "string", "format": "binary"}}
                    for kind in ("application/octet-stream", "application/zip", "text/x-python")
                },
            ),
        }
        paths[a + "/names"] = {
            "get": op(
                "listJobArtifactNames",
                "Names of stored artifacts",
                {200: arr(STR)},
                (),
                params=prefix,
            )
        }
        download = op(
            "downloadJobArtifact",
            "The artifact's bytes; If-None-Match -> 304",
            {200: {"type": "string", "format": "binary"}, 304: None},
            (400, 404),
            params=[ARTIFACT],
            content="application/octet-stream",
        )
        paths[a + "/{name}"] = {"get": download}
    _projected(paths)
    for item in paths.values():
        for method, operation in item.items():
            _error_response(operation, 403)  # security.py: Host on every call, Origin on changes
            if method in ("post", "put", "delete"):
                _mutating(operation)
            if "requestBody" in operation:
                _error_response(operation, 415)
    return paths


FIELDS = query("fields", STR, "comma-separated fields kept in each item (Mantis' projection)")
FROM_OBJ = query(
    "fromObj",
    {"type": "string", "enum": ["jobMetadata", "stageMetadataList", "workerMetadataList"]},
    "the part of each job `fields` applies to; the rest is left out",
)
COMPACT = query("compact", BOOL, "each job as Mantis' CompactJobInfo")
SORT = [
    query("sortBy", STR, "a field of the listed items (of jobMetadata for jobs)"),
    query("ascending", BOOL, "with sortBy: default true"),
]


def _projected(paths: dict[str, dict[str, Json]]) -> None:
    """`fields`/`fromObj`/`sortBy`/`startJobIdExclusive` (adapters/http/queries.py) and
    `compact` on the cluster and job reads. A projected item lacks fields its full schema requires, so their
    answers are any object (`anyOf` the full schema)."""
    c = "/api/v1/jobClusters"
    reads = {
        (c, "Cluster", True): [FIELDS, *SORT],
        (c + "/{name}", "Cluster", False): [FIELDS],
        ("/api/v1/jobs", "Job", True): [FIELDS, FROM_OBJ, COMPACT, *SORT[:1]],
        (c + "/{name}/jobs", "Job", True): [FIELDS, FROM_OBJ, COMPACT, *SORT[:1]],
        ("/api/v1/jobs/{jobId}", "Job", False): [FIELDS, FROM_OBJ, COMPACT],
        (c + "/{name}/jobs/{jobId}", "Job", False): [FIELDS, FROM_OBJ, COMPACT],
    }
    projected = {"type": "object", "description": "projected by fields/fromObj"}
    for (path, schema, listed), params in reads.items():
        operation = paths[path]["get"]
        names = {p["name"] for p in operation.get("parameters", [])}
        operation["parameters"] = operation.get("parameters", []) + [
            p for p in params if p["name"] not in names
        ]
        shapes = [ref(schema), ref("CompactJob")] if schema == "Job" else [ref(schema)]
        item: Json = {"anyOf": [*shapes, projected]}
        answer: Json = page_of(schema) if listed else item
        if listed:
            answer["properties"]["list"] = arr(item)
        operation["responses"]["200"]["content"][JSON_TYPE]["schema"] = answer
    for path in ("/api/v1/jobs", c + "/{name}/jobs"):
        paths[path]["get"]["parameters"].append(
            query("startJobIdExclusive", NAME_IN, "list the jobs after this one")
        )


def _parity_operations() -> dict[str, dict[str, Json]]:
    """The rest of Mantis' v1 routes: cluster_views.py, agents.py, master_configs.py."""
    c = "/api/v1/jobClusters/{name}"
    agent = path_param("agent", "127.0.0.2")
    agent_body = json_body(ref("AgentAction"), {"user": "alice"})
    actions = {
        "disable": "No new workers on the agent; its workers move off at their clusters' pace",
        "drain": "As disable, listed DRAINED once no worker is left",
        "enable": "The agent takes workers again",
    }
    paths: dict[str, dict[str, Json]] = {
        c + "/latestJobDiscoveryInfo": {
            "get": op(
                "getLatestJobDiscoveryInfo",
                "The scheduling info of the cluster's newest started job",
                {200: ref("JobSchedulingInfo")},
                (400, 404),
                params=[NAME],
            )
        },
        c + "/healthcheck": {
            "get": op(
                "jobClusterHealthcheck",
                "Healthy when every worker of the cluster's active jobs is Started",
                {200: ref("ClusterHealth")},
                (400, 404),
                params=[NAME, query("job-ids", STR, "comma-separated job ids to check")],
            )
        },
        c + "/actions/updateMigrationStrategy": {
            "post": op(
                "updateJobClusterMigrationStrategy",
                "How the cluster's workers move off disabled agents",
                {204: None},
                (400, 404),
                params=[NAME],
                body=json_body(
                    ref("UpdateMigrationStrategy"),
                    {
                        "user": "alice",
                        "migrationConfig": {
                            "strategy": "PERCENTAGE",
                            "configString": '{"percentToMove":25,"intervalMs":60000}',
                        },
                    },
                ),
            )
        },
        "/api/v1/masterConfigs": {
            "get": op(
                "masterConfigs",
                "Mantis' configlets: constraints, scaling reasons, strategies, limits",
                {200: arr(obj(("name", "value"), name=STR, value=STR))},
                (),
            )
        },
        "/api/v1/agents": {
            "get": op("listAgents", "The agents this master knows", {200: page_of("Agent")}, ())
        },
    }
    for name, summary in actions.items():
        paths[f"/api/v1/agents/{{agent}}/actions/{name}"] = {
            "post": op(
                f"{name}Agent",
                summary,
                {204: None},
                (400, 404),
                params=[agent],
                body=agent_body,
            )
        }
    return paths


def document(with_artifacts: bool = True) -> Json:
    """The whole OpenAPI 3.0 document; the artifact paths only when the app serves them."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "mantis-py master API",
            "version": "1",
            "description": "Netflix Mantis' v1 REST API paths, field names and status codes.",
        },
        "paths": _operations(with_artifacts),
        "components": {
            "schemas": {**components(), **SCHEMAS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

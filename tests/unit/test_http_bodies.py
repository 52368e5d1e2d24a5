"""Request bodies declared once (adapters/http/bodies.py): lax decoding as Jackson reads
Mantis' JSON, failures named by their JSON path (dict keys included), and the OpenAPI 3.0
components derived from the same declarations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import adapters.http
from adapters.http import bodies
from adapters.http.bodies import (
    BODIES,
    JobStatus,
    MantisJobDefinition,
    NamedJobDefinition,
    ScaleStage,
    components,
    decode,
)
from adapters.http.openapi import document
from adapters.http.parsing import parse_cluster_definition, parse_job_request
from core.errors import InvalidRequest


def stage(**machine: Any) -> dict[str, Any]:
    return {
        "numberOfInstances": 1,
        "machineDefinition": {"cpuCores": 1, "memoryMB": 512, **machine},
    }


def cluster(**definition: Any) -> dict[str, Any]:
    return {
        "jobDefinition": {
            "name": "demo",
            "user": "alice",
            "jobJarFileLocation": "http://x/demo-1.zip",
            "schedulingInfo": {"stages": {"1": stage()}},
            **definition,
        }
    }


def field_of(raw: object, kind: type[bodies.Body] = NamedJobDefinition) -> tuple[str, str]:
    with pytest.raises(InvalidRequest) as e:
        decode(raw if isinstance(raw, bytes) else orjson.dumps(raw), kind)
    return e.value.field, e.value.message.removeprefix(f"{e.value.field}: ")


def test_numbers_and_booleans_may_come_as_strings() -> None:
    body = cluster(
        schedulingInfo={
            "stages": {
                "0": stage(),  # the job master: ignored
                "1": {
                    "numberOfInstances": "2",
                    "machineDefinition": {"cpuCores": "1.5", "memoryMB": "512", "numPorts": "2"},
                    "scalable": "true",
                },
            }
        },
        slaMin="0",
        slaMax="1",
        parameters=[{"name": "n", "value": 3}, {"name": "b", "value": False}],
    )
    definition, user = parse_cluster_definition(decode(orjson.dumps(body), NamedJobDefinition), 1.0)
    [s] = definition.configs[0].scheduling_info.stages
    assert (s.number_of_instances, s.scalable, s.machine_definition.cpu_cores) == (2, True, 1.5)
    assert s.machine_definition.num_ports == 2
    assert (definition.sla.min, definition.sla.max, user) == (0, 1, "alice")
    assert [(p.name, p.value) for p in definition.parameters] == [("n", "3"), ("b", "false")]


def test_unknown_fields_are_ignored_as_mantis_does() -> None:
    body = decode(b'{"StageNumber": 1, "NumWorkers": 2, "extra": {"x": []}}', ScaleStage)
    assert (body.stage_number, body.num_workers, body.user) == (1, 2, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            cluster(schedulingInfo={"stages": {"1": stage(), "2": stage(cpuCores="x")}}),
            "jobDefinition.schedulingInfo.stages.2.machineDefinition.cpuCores",
        ),
        (
            cluster(
                schedulingInfo={
                    "stages": {
                        "1": {
                            **stage(),
                            "scalingPolicy": {
                                "strategies": {
                                    "CPU": {"rollingCount": {"count": 1}},
                                    "Memory": {"rollingCount": {"count": "many"}},
                                }
                            },
                        }
                    }
                }
            ),
            "jobDefinition.schedulingInfo.stages.1.scalingPolicy.strategies.Memory"
            ".rollingCount.count",
        ),
        (cluster(parameters=[{"name": "a"}, {"value": 1}]), "jobDefinition.parameters[1].name"),
        (cluster(schedulingInfo={"stages": {"1": {"numberOfInstances": 1}}}), ""),
        ({"owner": {}}, "jobDefinition"),
        (cluster(subscriptionTimeoutSecs=2**60), "jobDefinition.subscriptionTimeoutSecs"),
        (cluster(labels={"team": "a"}), "jobDefinition.labels"),
        (cluster(cronPolicy="KEEP_ALL"), "jobDefinition.cronPolicy"),
        (cluster(user="a\nb"), "jobDefinition.user"),
        ([], "body"),
        (b"{nope", "body"),
    ],
)
def test_a_bad_body_names_its_field_by_json_path(body: object, field: str) -> None:
    expected = field or "jobDefinition.schedulingInfo.stages.1.machineDefinition"
    got, message = field_of(body)
    assert got == expected and message, message
    if body == {"owner": {}} or not field:
        assert message == "is required"


def test_a_missing_field_inside_a_dict_value_is_named() -> None:
    body = cluster(
        schedulingInfo={
            "stages": {"1": stage(), "2": {"machineDefinition": {"cpuCores": 1, "memoryMB": 1}}}
        }
    )
    assert field_of(body) == (
        "jobDefinition.schedulingInfo.stages.2.numberOfInstances",
        "is required",
    )


def test_an_already_parsed_object_is_named_from_where_it_sits() -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_job_request({"jobSla": {"durationType": "Forever"}}, "jobDefinition.")
    assert e.value.field == "jobDefinition.jobSla.durationType"


def test_worker_status_is_read_strictly() -> None:
    status = {
        "jobId": "demo-1",
        "status": {
            "jobId": "demo-1",
            "stageNum": 1,
            "workerIndex": "0",
            "workerNumber": 1,
            "type": "INFO",
        },
    }
    with pytest.raises(InvalidRequest) as e:
        decode(orjson.dumps(status), JobStatus, strict=True)
    assert e.value.field == "status.workerIndex"
    assert decode(orjson.dumps(status), JobStatus).status.worker_index == 0  # lax would take it


@given(
    instances=st.integers(min_value=1, max_value=10**6),
    cpus=st.floats(min_value=0.01, max_value=1e6, allow_nan=False),
    scalable=st.booleans(),
)
def test_strings_decode_as_the_numbers_and_booleans_they_spell(
    instances: int, cpus: float, scalable: bool
) -> None:
    def job(as_text: bool) -> bytes:
        def v(x: object) -> object:
            return (str(x).lower() if isinstance(x, bool) else repr(x)) if as_text else x

        s = {
            "numberOfInstances": v(instances),
            "machineDefinition": {"cpuCores": v(cpus), "memoryMB": v(512)},
            "scalable": v(scalable),
        }
        return orjson.dumps({"schedulingInfo": {"stages": {"1": s}}})

    assert decode(job(True), MantisJobDefinition) == decode(job(False), MantisJobDefinition)


# ---------------------------------------------------------------------- OpenAPI


def walk(value: object) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(value, dict):
        out.append(value)
        for item in value.values():
            out.extend(walk(item))
    elif isinstance(value, list):
        for item in value:
            out.extend(walk(item))
    return out


def test_components_are_openapi_3_0_and_closed_under_refs() -> None:
    schemas = components()
    assert {kind.__name__ for kind in BODIES} <= set(schemas)
    for node in walk(schemas):
        assert node.get("type") != "null" and "propertyNames" not in node, node
        assert node.get("required", [1]) != [], node
        assert "$defs" not in node
        if "$ref" in node:
            assert node["$ref"].removeprefix("#/components/schemas/") in schemas
    job = schemas["MantisJobDefinition"]["properties"]
    assert job["jobJarFileLocation"]["maxLength"] == bodies.MAX_URL
    assert job["parameters"]["items"] == {"$ref": "#/components/schemas/NameValue"}
    assert job["parameters"]["nullable"] is True
    assert schemas["StageSchedulingInfo"]["required"] == ["numberOfInstances", "machineDefinition"]
    assert schemas["ScaleStage"]["required"] == ["StageNumber", "NumWorkers"]
    assert schemas["JobConstraint"]["type"] == "string"


def test_the_document_serves_the_bodies_declarations() -> None:
    doc = document()
    declared = components()
    for name, schema in declared.items():
        assert doc["components"]["schemas"][name] == schema, name
    bodies_used = {
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]
        for item in doc["paths"].values()
        for operation in item.values()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    assert bodies_used <= {kind.__name__ for kind in BODIES}
    assert {"NamedJobDefinition", "MantisJobDefinition", "JobStatus", "ScaleStage"} <= bodies_used


def test_every_body_the_server_reads_is_in_the_document() -> None:
    """A new body read with `read_body` but left out of BODIES would be missing from the
    OpenAPI document: the handlers' sources are searched for the kinds they read."""
    folder = Path(adapters.http.__file__).parent
    read = {
        kind
        for source in folder.glob("*.py")
        for kind in re.findall(r"(?:read_body|_action_body)\(request, (\w+)", source.read_text())
    }
    read.discard("kind")  # clusters.py's _action_body passes its caller's kind on
    assert len(read) >= 12 and read <= {kind.__name__ for kind in BODIES}, read

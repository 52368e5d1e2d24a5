"""The client commands' pieces without a master: arguments, definitions, errors, SSE, --wait."""

from __future__ import annotations

import io
import socket
from typing import Any

import pytest

from adapters.cli import commands, main
from adapters.cli.client import (
    ApiError,
    MantisClient,
    MasterUnreachable,
    _api_error,
    cluster_definition,
    parse_key_value,
    parse_stages,
    sse_events,
    updated_definition,
)
from core.errors import CommandRejected


def parse(argv: list[str]) -> Any:
    return main.build_parser().parse_args(argv)


# ---------------------------------------------------------------------- arguments


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANTIS_URL", "http://10.0.0.1:9000")
    monkeypatch.setenv("MANTIS_API_TOKEN", "t0k")
    monkeypatch.setenv("USER", "carol")
    args = parse(["cluster", "list"])
    assert (args.url, args.token, args.user, args.json) == (
        "http://10.0.0.1:9000",
        "t0k",
        "carol",
        False,
    )
    monkeypatch.delenv("MANTIS_URL")
    monkeypatch.delenv("MANTIS_API_TOKEN")
    args = parse(["job", "get", "demo-1", "--json", "--user", "dan"])
    assert (args.url, args.token, args.user, args.json) == (
        "http://127.0.0.1:8100",
        None,
        "dan",
        True,
    )


def test_cluster_create_arguments() -> None:
    args = parse(
        [
            "cluster",
            "create",
            "demo",
            "--artifact",
            "job.py",
            "--stages",
            "1:2, 2:1",
            "--cpus",
            "0.5",
            "--memory",
            "256",
            "--param",
            "n=1=2",
            "--param",
            "m=",
            "--label",
            "team=streams",
        ]
    )
    assert args.name == "demo" and args.artifact == "job.py"
    assert args.stages == {1: 2, 2: 1}
    assert (args.cpus, args.memory, args.scalable) == (0.5, 256.0, False)
    assert args.param == [("n", "1=2"), ("m", "")]
    assert args.label == [("team", "streams")]
    assert args.action_run is commands._cluster_create


def test_update_leaves_out_what_is_not_given() -> None:
    args = parse(["cluster", "update", "demo"])
    assert (args.artifact, args.stages, args.cpus, args.memory, args.scalable) == (None,) * 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["cluster", "create", "d", "--artifact", "a", "--stages", "1:2,3:1"],
            "argument --stages: stages must be numbered 1..N, got [1, 3]",
        ),
        (
            ["cluster", "create", "d", "--artifact", "a", "--stages", "1-2"],
            "argument --stages: '1-2' is not stage:workers",
        ),
        (
            ["cluster", "create", "d", "--artifact", "a", "--stages", "1:0"],
            "argument --stages: stage 1 needs at least 1 worker, got 0",
        ),
        (["cluster", "create", "d"], "the following arguments are required: --artifact"),
        (
            ["cluster", "create", "d", "--artifact", "a", "--param", "novalue"],
            "argument --param: 'novalue' is not name=value",
        ),
        (["job", "kill", "d-1"], "the following arguments are required: --reason"),
        (
            ["job", "scale", "d-1", "--stage", "1", "--workers", "0"],
            "argument --workers: must be >= 1, got 0",
        ),
        (["job", "connect"], "one of the arguments ID --cluster is required"),
        (["job", "connect", "d-1", "--cluster", "d"], "argument --cluster: not allowed with"),
        (["job", "connect", "d-1", "--limit", "1.5"], "argument --limit: not an integer: '1.5'"),
        (["job", "submit", "d", "--wait", "--timeout", "-1"], "argument --timeout: must be >= 0"),
        (["cluster"], "the following arguments are required: ACTION"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"error: {message}" in err, err


# ---------------------------------------------------------------------- definitions


def test_parse_stages_and_key_values() -> None:
    assert parse_stages("1:1") == {1: 1}
    assert parse_stages("2:3,1:1") == {1: 1, 2: 3}
    with pytest.raises(ValueError, match="stage 1 is given twice"):
        parse_stages("1:1,1:2")
    with pytest.raises(ValueError, match="numbered 1..N"):
        parse_stages("0:1")
    assert parse_key_value("a=b=c") == ("a", "b=c")
    with pytest.raises(ValueError):
        parse_key_value("=x")


def test_cluster_definition_from_simple_arguments() -> None:
    body = cluster_definition(
        "demo",
        "uploaded.zip",
        "alice",
        stages={1: 2, 2: 1},
        cpus=0.5,
        memory=256,
        parameters={"n": "10"},
        labels={"team": "s"},
        version="v2",
    )
    assert body == {
        "jobDefinition": {
            "name": "demo",
            "user": "alice",
            "artifactName": "uploaded.zip",
            "schedulingInfo": {
                "stages": {
                    "1": {
                        "numberOfInstances": 2,
                        "scalable": False,
                        "machineDefinition": {"cpuCores": 0.5, "memoryMB": 256},
                    },
                    "2": {
                        "numberOfInstances": 1,
                        "scalable": False,
                        "machineDefinition": {"cpuCores": 0.5, "memoryMB": 256},
                    },
                }
            },
            "parameters": [{"name": "n", "value": "10"}],
            "labels": [{"name": "team", "value": "s"}],
            "version": "v2",
        }
    }


def test_an_artifact_is_a_url_a_local_path_or_an_uploaded_name(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    def where(artifact: str) -> dict[str, Any]:
        d = cluster_definition("d", artifact, "u")["jobDefinition"]
        return {k: v for k, v in d.items() if k in ("artifactName", "jobJarFileLocation")}

    assert where("https://x.example/a.zip") == {"jobJarFileLocation": "https://x.example/a.zip"}
    assert where("./jobs/a.py") == {"jobJarFileLocation": str(tmp_path / "jobs" / "a.py")}
    assert where("a.py") == {"artifactName": "a.py"}


def rendered_cluster() -> dict[str, Any]:
    """A cluster as GET /api/v1/jobClusters/{name} renders it (two versions)."""

    def stage(n: int) -> dict[str, Any]:
        return {
            "numberOfInstances": n,
            "scalable": False,
            "hardConstraints": ["M4Cluster"],
            "softConstraints": [],
            "scalingPolicy": None,
            "machineDefinition": {
                "cpuCores": 1.0,
                "memoryMB": 512.0,
                "networkMbps": 128.0,
                "diskMB": 0.0,
                "numPorts": 1,
            },
        }

    return {
        "name": "demo",
        "latestVersion": "2",
        "user": "alice",
        "jars": [
            {
                "url": "old.zip",
                "artifactName": "old.zip",
                "version": "1",
                "schedulingInfo": {"stages": {"1": stage(1)}},
            },
            {
                "url": "http://a.example/new.zip",
                "artifactName": "new.zip",
                "version": "2",
                "schedulingInfo": {"stages": {"1": stage(2), "2": stage(1)}},
            },
        ],
        "sla": {"min": 0, "max": 1, "cronSpec": None, "cronPolicy": None},
        "jobSla": {"runtimeLimitSecs": 0, "durationType": "Perpetual"},
        "parameters": [{"name": "n", "value": "1"}, {"name": "m", "value": "x"}],
        "labels": [{"name": "team", "value": "s"}],
        "owner": {"name": "Alice"},
    }


def test_an_update_keeps_what_is_not_given() -> None:
    d = updated_definition(rendered_cluster(), "bob")["jobDefinition"]
    assert d["user"] == "bob" and d["name"] == "demo"
    assert d["artifactName"] == "new.zip" and d["jobJarFileLocation"] == "http://a.example/new.zip"
    assert d["schedulingInfo"] == rendered_cluster()["jars"][1]["schedulingInfo"]
    assert d["parameters"] == [{"name": "n", "value": "1"}, {"name": "m", "value": "x"}]
    assert d["slaMax"] == 1 and "version" not in d


def test_an_update_overrides_stages_machines_parameters_and_labels() -> None:
    d = updated_definition(
        rendered_cluster(),
        "bob",
        artifact="other.py",
        stages={1: 1, 2: 3, 3: 2},
        cpus=2,
        memory=1024,
        parameters={"n": "5", "k": "v"},
        labels={"env": "test"},
        version="3",
    )["jobDefinition"]
    assert d["artifactName"] == "other.py" and "jobJarFileLocation" not in d
    stages = d["schedulingInfo"]["stages"]
    assert {n: s["numberOfInstances"] for n, s in stages.items()} == {"1": 1, "2": 3, "3": 2}
    assert all(s["machineDefinition"]["cpuCores"] == 2 for s in stages.values())
    assert all(s["machineDefinition"]["memoryMB"] == 1024 for s in stages.values())
    assert stages["3"]["hardConstraints"] == ["M4Cluster"]  # copied from the last stage
    assert d["parameters"] == [
        {"name": "n", "value": "5"},
        {"name": "m", "value": "x"},
        {"name": "k", "value": "v"},
    ]
    assert d["labels"] == [{"name": "team", "value": "s"}, {"name": "env", "value": "test"}]
    assert d["version"] == "3"


# ---------------------------------------------------------------------- errors


def test_api_errors_are_one_line_with_status_field_and_message() -> None:
    e = _api_error(
        400,
        b'{"error":"jobDefinition.name: must not be empty","field":"jobDefinition.name"}',
        "Bad Request",
    )
    assert str(e) == "400 jobDefinition.name: must not be empty"
    assert (e.status, e.field) == (400, "jobDefinition.name")
    assert isinstance(e, CommandRejected)  # main.py prints it as one line, status 1
    e = _api_error(401, b'{"error":"a valid bearer token is required","field":"Authorization"}', "")
    assert str(e) == "401 Authorization: a valid bearer token is required"
    assert str(_api_error(404, b'{"error":"job cluster \'x\' not found"}', "")) == (
        "404 job cluster 'x' not found"
    )
    assert str(_api_error(502, b"<html>bad gateway</html>", "Bad Gateway")) == "502 Bad Gateway"
    assert str(ApiError(409, "busy")) == "409 busy"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_master_not_running_is_a_clear_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(MasterUnreachable) as caught:
        MantisClient(url).list_clusters()
    assert str(caught.value) == (
        f"cannot reach the master at {url} (connection refused): is `mantis up` running?"
    )
    assert isinstance(caught.value, OSError)  # main.py prints it as one line, status 1


def test_connect_needs_a_job_or_a_cluster() -> None:
    with pytest.raises(ValueError):
        next(MantisClient().connect())
    with pytest.raises(ValueError):
        next(MantisClient().connect("a-1", cluster="a"))


# ---------------------------------------------------------------------- SSE


def test_sse_events_decode_json_and_join_data_lines() -> None:
    raw = (
        b'data: {"i": 1}\n\n: a comment\nid: 7\nevent: x\ndata: {"i": 2}\r\n\r\n'
        b"data: ping\n\ndata:[1,\ndata: 2]\n\ndata: last"
    )
    lines = io.BytesIO(raw).readlines()  # "last" is never completed by a blank line
    assert list(sse_events(lines)) == [{"i": 1}, {"i": 2}, "ping", [1, 2]]


# ---------------------------------------------------------------------- output


def test_table_aligns_columns() -> None:
    assert commands.table(["A", "LONG"], [["xyz", 1], ["w", ""]]) == "A    LONG\nxyz  1\nw\n"


def test_when_is_utc_and_dash_when_unset() -> None:
    assert commands.when(0) == "1970-01-01 00:00:00"
    assert commands.when(-1) == "-"


# ---------------------------------------------------------------------- --wait


def job_view(state: str, workers: list[str], wanted: int = 2, message: str = "") -> dict[str, Any]:
    return {
        "jobMetadata": {"jobId": "d-1", "state": state, "message": message},
        "stageMetadataList": [{"stageNum": 1, "numWorkers": wanted}],
        "workerMetadataList": [
            {"state": s, "workerIndex": i, "workerNumber": i + 1, "stageNum": 1, "reason": None}
            for i, s in enumerate(workers)
        ],
    }


class FakeJobs:
    """A client whose job goes through the given views, one per poll, on a virtual clock."""

    def __init__(self, views: list[dict[str, Any]]) -> None:
        self.views = views
        self.now = 0.0

    def get_job(self, jid: str) -> dict[str, Any]:
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]

    def sleep(self, secs: float) -> None:
        self.now += secs


def wait(fake: FakeJobs, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
    out = io.StringIO()
    job = commands.wait_until_started(
        fake,
        "d-1",
        timeout,
        out,
        clock=lambda: fake.now,  # type: ignore[arg-type]
        sleep=fake.sleep,
    )
    return out.getvalue(), job


def test_wait_shows_each_change_until_every_worker_started() -> None:
    views = [
        job_view("Accepted", ["Accepted", "Accepted"]),
        job_view("Accepted", ["Accepted", "Accepted"]),
        job_view("Accepted", ["Launched", "Accepted"]),
        job_view("Accepted", ["Started", "Launched"]),
        job_view("Launched", ["Started", "Started"]),
    ]
    out, job = wait(FakeJobs(views))
    assert out.splitlines() == [
        "d-1: 0/2 workers placed, 0/2 started",
        "d-1: 1/2 workers placed, 0/2 started",
        "d-1: 2/2 workers placed, 1/2 started",
        "d-1: 2/2 workers placed, 2/2 started",
        "d-1: all 2 workers Started",
    ]
    assert job["jobMetadata"]["state"] == "Launched"


def test_wait_fails_when_the_job_ends() -> None:
    views = [job_view("Accepted", ["Accepted"], 1), job_view("Failed", ["Failed"], 1, "boom")]
    with pytest.raises(CommandRejected, match=r"^job d-1 ended Failed: boom$"):
        wait(FakeJobs(views))


def test_wait_times_out_on_the_clock() -> None:
    fake = FakeJobs([job_view("Accepted", ["Launched", "Accepted"])])
    with pytest.raises(TimeoutError, match=r"^job d-1: 0/2 workers Started after 1 s$"):
        wait(fake, timeout=1.0)
    assert fake.now == pytest.approx(1.0)


# ---------------------------------------------------------------------- connect


def test_ctrl_c_ends_connect_with_status_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = []

    def events(self: MantisClient, job_id: str | None = None, **kwargs: Any) -> Any:
        try:
            yield {"i": 1}
            raise KeyboardInterrupt
        finally:
            closed.append(True)

    monkeypatch.setattr(MantisClient, "connect", events)
    assert main.main(["job", "connect", "d-1"]) == 0
    assert capsys.readouterr().out == '{"i":1}\n'
    assert closed == [True]


def test_connect_stops_after_limit_and_closes_the_stream(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def events(self: MantisClient, job_id: str | None = None, **kwargs: Any) -> Any:
        seen.append((job_id, kwargs))
        try:
            yield from ({"i": i} for i in range(100))
        finally:
            seen.append("closed")

    monkeypatch.setattr(MantisClient, "connect", events)
    assert (
        main.main(
            [
                "job",
                "connect",
                "--cluster",
                "d",
                "--limit",
                "2",
                "--sample",
                "0.5",
                "--client-id",
                "me",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == '{"i":0}\n{"i":1}\n'
    assert seen == [
        (None, {"cluster": "d", "params": {"clientId": "me", "sample": "0.5"}}),
        "closed",
    ]

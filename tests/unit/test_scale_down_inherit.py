"""deploymentStrategy.inheritInstanceCount (Mantis' StageDeploymentStrategy): a new job of the
cluster starts an inheriting stage at the current size of the cluster's latest running job."""

from __future__ import annotations

import pytest

from adapters.http.parsing import parse_job_request
from core.control import ControlPlane
from core.errors import InvalidRequest
from core.model import DeploymentStrategy, JobRequest
from tests.unit.test_control import T0, cluster, info, run_all

INHERIT_1 = DeploymentStrategy(inherit_instance_count=(1,))


def sizes(cp: ControlPlane, jid: str) -> list[int]:
    return [s.number_of_instances for s in cp.job(jid).definition.scheduling_info.stages]


def grown() -> tuple[ControlPlane, str]:
    """Cluster `demo` (stages of 2 and 1 workers) with a running job whose stage 1 grew to 5."""
    cp = ControlPlane()
    cp.create_cluster(cluster(scheduling=info(2, 1)), T0)
    jid = cp.submit_job("demo", JobRequest(), "alice", T0).job_id
    run_all(cp, jid, T0)
    cp.scale_stage(jid, 1, 5, "autoscaler", "load", T0 + 1)
    return cp, jid


def test_a_resubmission_starts_the_stage_at_the_running_jobs_current_size() -> None:
    cp, _ = grown()
    new = cp.submit_job("demo", JobRequest(deployment_strategy=INHERIT_1), "bob", T0 + 2).job_id
    assert sizes(cp, new) == [5, 1]
    assert len(cp.job(new).stages[1]) == 5
    assert cp.job(new).definition.deployment_strategy == INHERIT_1
    plain = cp.submit_job("demo", JobRequest(), "bob", T0 + 3).job_id
    assert sizes(cp, plain) == [2, 1]  # without the strategy: the submitted size


def test_the_latest_running_job_counts_and_quick_submit_keeps_the_strategy() -> None:
    cp, first = grown()
    second = cp.submit_job("demo", JobRequest(deployment_strategy=INHERIT_1), "bob", T0 + 2)
    run_all(cp, second.job_id, T0 + 2)
    cp.scale_stage(second.job_id, 1, 3, "bob", "less", T0 + 3)
    cp.kill_job(first, "bob", "replaced", T0 + 4)
    quick = cp.quick_submit("demo", "carol", T0 + 5).job_id
    assert sizes(cp, quick) == [3, 1]


def test_without_a_running_job_the_submitted_size_holds() -> None:
    cp, jid = grown()
    cp.kill_job(jid, "bob", "done", T0 + 2)
    new = cp.submit_job("demo", JobRequest(deployment_strategy=INHERIT_1), "bob", T0 + 3).job_id
    assert sizes(cp, new) == [2, 1]


def test_a_stage_the_job_does_not_have_is_refused() -> None:
    cp, _ = grown()
    strategy = DeploymentStrategy(inherit_instance_count=(3,))
    with pytest.raises(InvalidRequest) as e:
        cp.submit_job("demo", JobRequest(deployment_strategy=strategy), "bob", T0 + 2)
    assert e.value.field == "deploymentStrategy.stageDeploymentStrategyMap"


def test_parsed_from_mantis_json() -> None:
    body = {
        "deploymentStrategy": {
            "stageDeploymentStrategyMap": {
                "2": {"inheritInstanceCount": "true"},
                "1": {"inheritInstanceCount": True},
                "3": {"inheritInstanceCount": False},
            }
        }
    }
    assert parse_job_request(body).deployment_strategy == DeploymentStrategy((1, 2))
    assert parse_job_request({}).deployment_strategy is None


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ([], "deploymentStrategy"),
        ({"stageDeploymentStrategyMap": []}, "deploymentStrategy.stageDeploymentStrategyMap"),
        (
            {"stageDeploymentStrategyMap": {"x": {}}},
            "deploymentStrategy.stageDeploymentStrategyMap.x",
        ),
        (
            {"stageDeploymentStrategyMap": {"0": {}}},
            "deploymentStrategy.stageDeploymentStrategyMap.0",
        ),
        (
            {"stageDeploymentStrategyMap": {"1": {"inheritInstanceCount": "yes"}}},
            "deploymentStrategy.stageDeploymentStrategyMap.1.inheritInstanceCount",
        ),
    ],
)
def test_malformed_strategies_name_the_field(strategy: object, field: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_job_request({"deploymentStrategy": strategy})
    assert e.value.field == field

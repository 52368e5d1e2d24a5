"""Roles end to end: an agent process started with Mesos' reservation syntax
(`--resources "cpus(prod):2;cpus:2;mem(prod):512;mem:1024"`), and real pymesos scheduler
drivers: a MULTI_ROLE framework in `prod` and `dev` gets one offer per role, launches on the
reservation from its `prod` offer and on unreserved resources from its `dev` offer; a framework
in another role is never offered the reservation; quota set over the operator API caps a role.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from typing import Any

import pytest

from mesoslite.local import AgentSpec, LocalCluster
from mesoslite.resources import Resources
from tests.integration.mesoslite_framework import FAST, PymesosFramework, RecordingScheduler

RESERVED_AGENT = "cpus(prod):2;cpus:2;mem(prod):512;mem:1024"


class RoleScheduler(RecordingScheduler):
    """Launches each role's queued commands on that role's offers: on the role's reservation
    when the offer has one (echoing its Resources, as a Mesos framework must), else unreserved."""

    def __init__(self) -> None:
        super().__init__()
        self.by_role: dict[str, deque[tuple[str, str]]] = defaultdict(deque)

    def _tasks_for(self, offer: dict[str, Any]) -> list[dict[str, Any]]:
        role = offer["allocation_info"]["role"]
        with self.cond:
            self.offers.append(offer)
            queue = self.by_role[role]
            if not queue:
                self.cond.notify_all()
                return []
            task_id, command = queue.popleft()
            self.launched_on[task_id] = offer["agent_id"]["value"]
            self.cond.notify_all()
        reserved = [
            r for r in offer["resources"] if r.get("reservations") and r["type"] == "SCALAR"
        ]
        if reserved:
            size = {"cpus": 0.5, "mem": 64}
            resources = [{**r, "scalar": {"value": size[r["name"]]}} for r in reserved]
        else:
            resources = Resources.of(cpus=0.5, mem=64).to_mesos()
        return [
            {
                "name": task_id,
                "task_id": {"value": task_id},
                "agent_id": offer["agent_id"],
                "resources": resources,
                "command": {"value": command},
            }
        ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    spec = AgentSpec(RESERVED_AGENT, "name:reserved")
    with LocalCluster(tmp_path_factory.mktemp("roles"), [spec], master_args=FAST) as c:
        yield c


def operator(cluster: LocalCluster, call: dict[str, Any]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        conn.request("POST", "/api/v1", json.dumps(call), headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def offered(offer: dict[str, Any]) -> Resources:
    return Resources.from_mesos(offer["resources"])


@pytest.mark.timeout(90)
def test_multi_role_framework_uses_its_reservation_and_others_never_see_it(
    cluster: LocalCluster,
) -> None:
    slave = cluster.wait_for_state(lambda s: len(s["slaves"]) == 1, 20, "the agent")["slaves"][0]
    assert slave["reserved_resources"]["prod"]["cpus"] == 2.0
    assert slave["unreserved_resources"]["cpus"] == 2.0
    conn = http.client.HTTPConnection("127.0.0.1", slave["port"], timeout=10)
    conn.request("GET", "/state")
    agent_state = json.loads(conn.getresponse().read())
    conn.close()
    assert agent_state["reserved_resources"]["prod"]["mem"] == 512.0
    assert agent_state["unreserved_resources"]["mem"] == 1024.0

    multi = RoleScheduler()
    multi.by_role["prod"].append(("on-prod", "sleep 60"))
    multi.by_role["dev"].append(("on-dev", "sleep 60"))
    info = {"capabilities": [{"type": "MULTI_ROLE"}], "roles": ["prod", "dev"]}
    with PymesosFramework(cluster.address, multi, **info) as sched:
        sched.wait(
            lambda: (
                sched.last("on-prod") == "TASK_RUNNING" and sched.last("on-dev") == "TASK_RUNNING"
            ),
            30,
            "both tasks running",
        )
        roles = {o["allocation_info"]["role"] for o in sched.offers}
        assert roles == {"prod", "dev"}
        for o in sched.offers:  # one role per offer, on every resource
            assert all(r["allocation_info"] == o["allocation_info"] for r in o["resources"])
        prod = [o for o in sched.offers if o["allocation_info"]["role"] == "prod"]
        assert any(offered(o).reserved_for("prod").cpus_m == 2000 for o in prod)
        assert all(
            offered(o).reserved_for("prod").is_empty() for o in sched.offers if o not in prod
        )

        fw = next(f for f in cluster.state()["frameworks"] if f["id"] == sched.framework_id)
        tasks = {t["id"]: t for t in fw["tasks"]}
        assert tasks["on-prod"]["resources"]["cpus"] == 0.5
        used = cluster.state()["slaves"][0]["used_resources"]
        assert (used["cpus"], used["mem"]) == (1.0, 128.0)

        # Another framework, in `dev`, is offered what is unreserved only.
        other = RoleScheduler()
        with PymesosFramework(cluster.address, other, role="dev") as dev:
            dev.wait(lambda: bool(dev.offers), 20, "an offer to the dev framework")
            assert all(offered(o).reserved == () for o in dev.offers)
            assert all(o["allocation_info"] == {"role": "dev"} for o in dev.offers)

        # Quota: dev limited to 1 cpu, of which its task holds 0.5.
        limits = {"cpus": {"value": 1}}
        call = {
            "type": "UPDATE_QUOTA",
            "update_quota": {"quota_configs": [{"role": "dev", "limits": limits}]},
        }
        assert operator(cluster, call) == (200, b"")
        status, body = operator(cluster, {"type": "GET_QUOTA"})
        assert status == 200
        assert json.loads(body)["get_quota"]["status"]["configs"] == [
            {"role": "dev", "limits": limits}
        ]
        seen = len(sched.offers)

        def capped_dev_offer() -> bool:
            return any(
                o["allocation_info"]["role"] == "dev" and offered(o).cpus_m == 500
                for o in sched.offers[seen:]
            )

        # Revive until it comes: an offer made just before the quota, declined after a revive,
        # would filter the capped one for 30 s.
        deadline = time.monotonic() + 20
        while True:
            sched.driver.reviveOffers()
            with sched.cond:
                if sched.cond.wait_for(capped_dev_offer, 2):
                    break
            assert time.monotonic() < deadline, "no dev offer of the 0.5 cpu left under the quota"

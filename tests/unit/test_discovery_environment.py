"""Discovery of the leader: what a worker is told (MANTIS_ZK, MANTIS_ZK_ROOT) and how the
leader's description in ZooKeeper is read."""

from __future__ import annotations

import orjson
import pytest

from common.master_leader import DEFAULT_ZK_ROOT, leader_path, leader_url
from common.task_environment import TaskEnvironment, TaskEnvironmentError
from core.model import (
    JobClusterConfig,
    JobClusterDefinition,
    JobRequest,
    MachineDefinition,
    SchedulingInfo,
    StageSchedulingInfo,
)
from core.scheduling import Offer
from service.worker_task import WorkerTaskSettings
from tests.eventually import eventually
from tests.fakes import RecordingResourceManager, memory_master

BASE = {
    "MANTIS_JOB_ID": "demo-1",
    "MANTIS_STAGE": "1",
    "MANTIS_WORKER_INDEX": "0",
    "MANTIS_WORKER_NUMBER": "1",
    "MANTIS_MASTER_URL": "http://127.0.0.1:8100",
}


async def launched_environment(settings: WorkerTaskSettings) -> dict[str, str]:
    """The environment of the one worker a master with `settings` launches for a job."""
    master = memory_master()
    master.worker_tasks = settings
    config = JobClusterConfig(
        "demo.zip", "1", 0.0, SchedulingInfo((StageSchedulingInfo(1, MachineDefinition(1, 256)),))
    )
    master.run(lambda p, now: p.create_cluster(JobClusterDefinition("demo", (config,)), now))
    master.start()
    master.run(lambda p, now: p.submit_job("demo", JobRequest(), "alice", now))
    master.offers([Offer("o1", "a1", "host-1", 8.0, 4096.0, 0.0, 1000.0, ((31000, 31010),))])
    rm = master.rm
    assert isinstance(rm, RecordingResourceManager)
    await eventually(lambda: any(call == "launch" for call, _ in rm.calls), "a launch")
    ((task,),) = [args for call, args in rm.calls if call == "launch"]
    return dict(task.environment)


async def test_the_master_tells_its_workers_where_zookeeper_names_the_leader() -> None:
    env = await launched_environment(
        WorkerTaskSettings(master_url="http://127.0.0.1:8100", zk="127.0.0.1:2181/mantis-test")
    )
    assert env["MANTIS_ZK"] == "127.0.0.1:2181/mantis-test"
    assert env["MANTIS_ZK_ROOT"] == "/mantis/master"
    read = TaskEnvironment.from_environ(env)
    assert (read.zk, read.zk_root, read.master_url) == (
        "127.0.0.1:2181/mantis-test",
        "/mantis/master",
        "http://127.0.0.1:8100",
    )


async def test_one_master_sets_no_zookeeper_variables() -> None:
    env = await launched_environment(WorkerTaskSettings(master_url="http://127.0.0.1:8100"))
    assert "MANTIS_ZK" not in env and "MANTIS_ZK_ROOT" not in env
    read = TaskEnvironment.from_environ(env)
    assert (read.zk, read.zk_root) == ("", DEFAULT_ZK_ROOT)


def test_a_relative_zk_root_is_refused_naming_the_variable() -> None:
    with pytest.raises(TaskEnvironmentError, match="MANTIS_ZK_ROOT"):
        TaskEnvironment.from_environ({**BASE, "MANTIS_ZK": "127.0.0.1:2181", "MANTIS_ZK_ROOT": "x"})
    custom = {**BASE, "MANTIS_ZK": "127.0.0.1:2181", "MANTIS_ZK_ROOT": "/other"}
    assert TaskEnvironment.from_environ(custom).zk_root == "/other"


def test_the_leader_znode_and_its_url() -> None:
    assert leader_path() == "/mantis/master/leader"
    assert leader_path("/a/b/") == "/a/b/leader"
    assert leader_path("/") == "/leader"
    described = {"hostname": "m1", "apiPort": 8101, "url": "http://127.0.0.1:8101/", "epoch": 3}
    assert leader_url(orjson.dumps(described)) == "http://127.0.0.1:8101"
    for unusable in (None, b"", b"not json", b"[]", b'{"url": 5}', b'{"url": "ftp://x"}', b"{}"):
        assert leader_url(unusable) is None, unusable

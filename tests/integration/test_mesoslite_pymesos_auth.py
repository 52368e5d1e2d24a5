"""Framework authentication end to end: a mesoslite master as a real process started with
`--authenticate-http-frameworks` (its credentials file named by MESOSLITE_CREDENTIALS), an
agent, and pymesos' MesosSchedulerDriver with `principal` and `secret`, which it sends as HTTP
Basic credentials on SUBSCRIBE and on every call.

A refused SUBSCRIBE makes pymesos abort its IO thread and re-raise the error in the main thread
(through its SIGINT handler): that RuntimeError is what a refused driver looks like here.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesoslite.local import LocalCluster
from tests.eventually import wait_until
from tests.integration.mesoslite_framework import FAST, PymesosFramework, RecordingScheduler, agents

pymesos = pytest.importorskip("pymesos")
pymesos_process = pytest.importorskip("pymesos.process")

PRINCIPAL, SECRET = "mantis", "a secret: with spaces and a colon"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    work = tmp_path_factory.mktemp("mesoslite-auth")
    credentials = work / "credentials.json"
    credentials.write_text(
        json.dumps({"credentials": [{"principal": PRINCIPAL, "secret": SECRET}]})
    )
    with LocalCluster(work, agents(1), master_args=FAST, credentials=credentials) as c:
        yield c


def master_log(cluster: LocalCluster) -> str:
    return Path(cluster.log_path("master")).read_text()


@pytest.mark.timeout(60)
def test_a_pymesos_driver_with_the_right_credentials_runs_a_task(cluster: LocalCluster) -> None:
    assert "--authenticate-http-frameworks" in cluster.master_args
    assert SECRET not in " ".join(cluster.master_args)  # the path travels in the environment
    scheduler = RecordingScheduler()
    scheduler.submit({"authenticated-1": "true"})
    with PymesosFramework(cluster.address, scheduler, principal=PRINCIPAL, secret=SECRET) as sched:
        # ACCEPT and ACKNOWLEDGE carried the credentials too: the task ran and finished.
        sched.wait(lambda: sched.last("authenticated-1") == "TASK_FINISHED", 30, "TASK_FINISHED")
        frameworks = cluster.state()["frameworks"]
        assert [f["principal"] for f in frameworks] == [PRINCIPAL]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("principal", "secret", "info", "status"),
    [
        (PRINCIPAL, "wrong", {}, 401),
        (None, None, {}, 401),
        (PRINCIPAL, SECRET, {"principal": "someone-else"}, 400),
    ],
)
def test_a_pymesos_driver_is_refused_without_valid_credentials(
    cluster: LocalCluster,
    principal: str | None,
    secret: str | None,
    info: dict[str, str],
    status: int,
) -> None:
    # pymesos re-raises its IO thread's error in the main thread through its SIGINT handler;
    # with another handler in place the error would arrive as a KeyboardInterrupt instead.
    assert signal.getsignal(signal.SIGINT) is pymesos_process._handle_sigint
    before = len(cluster.state()["completed_frameworks"]) + len(cluster.state()["frameworks"])
    scheduler = RecordingScheduler()
    driver = pymesos.MesosSchedulerDriver(
        scheduler,
        {"user": "test", "name": "refused", **info},
        cluster.address,
        principal=principal,
        secret=secret,
    )
    try:
        with pytest.raises(RuntimeError, match=f"Failed with HTTP {status}"):
            driver.start()
            # The error is delivered between two bytecodes of this thread, not into a blocked
            # wait: wait in short steps until it comes (or the framework registers: a failure).
            wait_until(lambda: scheduler.framework_id is not None, "the driver's error", timeout=30)
    finally:
        driver.stop()
        driver.join()
    assert scheduler.registrations == []
    state = cluster.state()
    assert len(state["completed_frameworks"]) + len(state["frameworks"]) == before
    if status == 401:
        assert "request_unauthenticated" in master_log(cluster)

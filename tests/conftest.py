"""Hypothesis profiles: `ci` on CI (CI=true), `dev` by default, `nightly` on request; and
structlog's defaults for every test.

Pick one with HYPOTHESIS_PROFILE=<name>.
"""

import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import HealthCheck, settings

from tests.zookeeper import zookeeper, zookeeper_server

__all__ = ["zookeeper", "zookeeper_server"]

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("nightly", max_examples=5000, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


@pytest.fixture(autouse=True)
def structlog_defaults() -> Iterator[None]:
    """A test that runs a command's main in-process configures logging as the command does
    (`python -m adapters.sim` keeps only critical lines): the next test starts from structlog's
    defaults, or a test reading logs would see nothing."""
    yield
    structlog.reset_defaults()

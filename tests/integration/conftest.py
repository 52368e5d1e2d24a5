"""Fixtures of the integration tests."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from adapters.http.app import create_app
from service.master import MasterService
from tests.integration.cli_fixtures import api, cli_loop, mantis, quiet_logs, workers
from tests.integration.disk import disk
from tests.integration.http_helpers import HOST, ApiClient, Client

__all__ = ["api", "api_client", "cli_loop", "disk", "mantis", "quiet_logs", "workers"]


@pytest.fixture
def api_client(aiohttp_client: AiohttpClient) -> ApiClient:
    """`await api_client(master, **options)`: a client of `create_app(master, **options)` served
    on 127.0.0.1 (cancelling handlers of closed connections, as `serve` does) until the test ends."""

    async def start(master: MasterService, *args: Any, **kwargs: Any) -> Client:
        app = create_app(master, *args, **kwargs)
        return await aiohttp_client(app, server_kwargs={"host": HOST, "handler_cancellation": True})

    return start

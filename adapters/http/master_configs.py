"""`GET /api/v1/masterConfigs`: Mantis' AdminMasterRoute configlets, what a console offers in
its forms: `[{name, value}]`, each value a JSON text: the placement constraints, the scaling
reasons, the migration strategies and the worker resource limits."""

from __future__ import annotations

import orjson
from aiohttp import web

from adapters.http.responses import json_response
from core.autoscaling import Reason
from core.migration import MigrationStrategy
from core.model import MAX_CPU_CORES, MAX_MEMORY_MB, MAX_NETWORK_MBPS, JobConstraint


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/masterConfigs", master_configs)


def _configlet(name: str, value: object) -> dict[str, str]:
    return {"name": name, "value": orjson.dumps(value).decode()}


CONFIGS = (
    _configlet("JobConstraints", [c.value for c in JobConstraint]),
    _configlet("ScalingReason", [r.value for r in Reason]),
    _configlet("MigrationStrategyEnum", [s.value for s in MigrationStrategy]),
    _configlet(
        "WorkerResourceLimits",
        {
            "maxCpuCores": int(MAX_CPU_CORES),
            "maxMemoryMB": int(MAX_MEMORY_MB),
            "maxNetworkMbps": int(MAX_NETWORK_MBPS),
        },
    ),
)


async def master_configs(request: web.Request) -> web.Response:
    return json_response(list(CONFIGS))

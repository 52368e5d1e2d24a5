"""The application key under which every route module finds the `MasterService` it calls.

Defined apart from app.py so that the route modules need not import the module that
registers them.
"""

from __future__ import annotations

from aiohttp import web

from service.master import MasterService

MASTER = web.AppKey("master", MasterService)

"""The platform server's HTTP API (FastAPI); the OpenAPI schema is at ``/openapi.json``.

Every route is under ``/v1``. Errors answer ``{"detail": "..."}`` with 400 (bad upload),
401 (missing or wrong token on a write), 404 (unknown id), 409 (state conflict), 413 (upload
too large), 422 (invalid definition or request), 507 (data disk full). The token and the body
size are checked by :class:`~clara_rt.server.guard.RequestGuard` before any route reads a byte.

One router per resource, each in its own module: the server itself (``/health``, ``/docs``),
pipelines, payloads, jobs, results and exports, monitoring, the web console. Routes reach the
running :class:`Server` and the configuration through the dependencies of
:mod:`clara_rt.server.deps` (``app.state.server``, ``app.state.config``); writes depend on
:func:`~clara_rt.server.deps.authorised`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from clara_rt import __version__
from clara_rt.server import (
    console_routes,
    health_routes,
    job_routes,
    metrics_routes,
    payload_routes,
    pipeline_routes,
    result_routes,
)
from clara_rt.server.config import ServerConfig
from clara_rt.server.guard import RequestGuard
from clara_rt.server.http_errors import add_error_handlers
from clara_rt.server.platform import Server

__all__ = ["Server", "create_app"]

# In this order in the OpenAPI schema (and the API reference at /docs).
_ROUTERS = (health_routes, pipeline_routes, payload_routes, job_routes, result_routes,
            metrics_routes, console_routes)


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI application; the server's parts start and stop with its lifespan."""
    app = FastAPI(title="clara-rt platform server", version=__version__, lifespan=_lifespan,
                  docs_url=None, redoc_url=None,
                  description="Pipelines, payloads, jobs and results of clara-rt "
                              "(Clara Deploy's platform server in one process).")
    app.state.config = config
    add_error_handlers(app)
    app.add_middleware(RequestGuard, token=config.token, max_payload=config.max_payload_bytes)
    for module in _ROUTERS:
        app.include_router(module.router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the :class:`Server` (in a thread: it opens the database and recovers jobs), keep
    it on ``app.state.server`` while the application runs, close it at the end."""
    server = await anyio.to_thread.run_sync(Server, app.state.config)
    app.state.server = server
    logging.getLogger().addHandler(server.operator_logs)
    server.retention.start()
    try:
        yield
    finally:
        logging.getLogger().removeHandler(server.operator_logs)
        await anyio.to_thread.run_sync(server.close)

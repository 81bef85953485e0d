"""Routes of the server itself: ``/health`` and ``/docs`` (the API reference, offline)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clara_rt import __version__
from clara_rt.server.apidocs import render_api_docs
from clara_rt.server.deps import ConfigDep, ServerDep

__all__ = ["router"]

router = APIRouter()


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs(request: Request, config: ConfigDep) -> str:
    """The API reference (rendered here from the OpenAPI schema; works offline)."""
    return render_api_docs(request.app.openapi(), token_required=config.token is not None)


@router.get("/health", tags=["server"])
def health(s: ServerDep) -> dict[str, Any]:
    return {"status": "ok", "version": __version__, "uptime_s": time.time() - s.started,
            "running_jobs": s.jobs.running, "queued_jobs": s.jobs.queue_depth()}

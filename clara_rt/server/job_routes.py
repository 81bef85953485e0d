"""Routes of jobs: create, list, status, start, cancel, delete, an operator's log, and the job
record's changes as Server-Sent Events (one job, or all). A job's trace is a monitoring route
(:mod:`~clara_rt.server.metrics_routes`); its results are in :mod:`~clara_rt.server.result_routes`.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from clara_rt.definition.logtail import open_snapshot
from clara_rt.server.deps import WRITE, ServerDep
from clara_rt.server.http_errors import ERRORS
from clara_rt.server.models import (
    JobCreate,
    JobOut,
    JobsOut,
    JobStateName,
    JobStatusName,
    PriorityName,
)
from clara_rt.server.sse import sse_response

__all__ = ["router"]

router = APIRouter(tags=["jobs"])


@router.post("/v1/jobs", status_code=201, response_model=JobOut, dependencies=WRITE,
             responses=ERRORS)
def create_job(spec: JobCreate, s: ServerDep) -> dict[str, Any]:
    """Create a job of a pipeline on payloads; ``start: true`` queues it at once."""
    if not spec.payloads and s.pipelines.needs_payload(spec.pipeline):
        raise ValueError(f"pipeline '{spec.pipeline}' reads a payload: name one in "
                         "'payloads' (upload it first with POST /v1/payloads)")
    return s.jobs.create(spec.pipeline, spec.payloads, name=spec.name, priority=spec.priority,
                         variables=spec.variables, timeout=spec.timeout, start=spec.start,
                         device=spec.device)


@router.get("/v1/jobs", response_model=JobsOut, responses=ERRORS)
def list_jobs(s: ServerDep, state: JobStateName | None = None,
              status: JobStatusName | None = None, pipeline: str | None = None,
              priority: PriorityName | None = None, since: float | None = None,
              until: float | None = None,
              limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict[str, Any]:
    """Jobs, newest first; filters: state, status, pipeline (id or name), priority,
    created since/until (Unix seconds)."""
    return {"jobs": s.jobs.find(state=state, status=status, pipeline=pipeline,
                                priority=priority, since=since, until=until, limit=limit)}


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
def job_status(job_id: str, s: ServerDep) -> dict[str, Any]:
    """State, status, per-operator state and timings, history."""
    return s.jobs.status(job_id)


@router.post("/v1/jobs/{job_id}/start", response_model=JobOut, dependencies=WRITE,
             responses=ERRORS)
def start_job(job_id: str, s: ServerDep) -> dict[str, Any]:
    return s.jobs.start(job_id)


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, dependencies=WRITE,
             responses=ERRORS)
def cancel_job(job_id: str, s: ServerDep) -> dict[str, Any]:
    return s.jobs.cancel(job_id)


@router.delete("/v1/jobs/{job_id}", status_code=204, dependencies=WRITE, responses=ERRORS)
def delete_job(job_id: str, s: ServerDep) -> Response:
    s.jobs.delete(job_id)
    return Response(status_code=204)


@router.get("/v1/jobs/{job_id}/logs/{operator}", response_class=PlainTextResponse,
            responses=ERRORS)
def job_logs(job_id: str, operator: str, s: ServerDep) -> Response:
    """What the operator logged in this job (empty until it runs)."""
    path = s.jobs.log_path(job_id, operator)
    try:
        size, chunks = open_snapshot(path)  # capped on disk (CLARA_RT_LOG_LIMIT)
    except OSError:
        return PlainTextResponse("")
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8",
                             headers={"Content-Length": str(size)})


@router.get("/v1/jobs/{job_id}/events", responses=ERRORS, response_class=StreamingResponse)
async def job_events(job_id: str, request: Request, s: ServerDep) -> StreamingResponse:
    """Server-Sent Events: the job's record now and at every change, until it stops."""
    first = await anyio.to_thread.run_sync(s.jobs.status, job_id)
    return sse_response(request, first, job_id)


@router.get("/v1/events", response_class=StreamingResponse)
async def all_events(request: Request) -> StreamingResponse:
    """Server-Sent Events: every job's record at every change."""
    return sse_response(request, None, None)

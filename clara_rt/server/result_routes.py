"""Routes of results: a job's result files (list, one file, all as tar) and exports, Clara's
results service (a result file recorded for a destination, then its progress reported)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, StreamingResponse

from clara_rt.errors import NotFound
from clara_rt.server.deps import WRITE, ServerDep
from clara_rt.server.http_errors import ERRORS
from clara_rt.server.models import ExportCreate, ExportOut, ExportsOut, ExportUpdate, FilesOut
from clara_rt.server.payload_routes import archive_response, file_response
from clara_rt.server.payloads import safe_relative
from clara_rt.server.store import new_id

__all__ = ["router"]

router = APIRouter(tags=["results"])


@router.get("/v1/jobs/{job_id}/results", response_model=FilesOut, responses=ERRORS)
def job_results(job_id: str, s: ServerDep) -> dict[str, Any]:
    _, files = s.jobs.results(job_id)
    return {"files": [{"path": p, "size": n} for p, n in files]}


@router.get("/v1/jobs/{job_id}/results/archive", responses=ERRORS,
            response_class=StreamingResponse)
def job_results_archive(job_id: str, s: ServerDep, compress: bool = False
                        ) -> StreamingResponse:
    """The job's output folder as a tar stream (gzip with ``compress=true``)."""
    output, files = s.jobs.results(job_id)
    if not files:
        raise NotFound(f"job {job_id} has no results (yet)")
    return archive_response(output, f"job-{job_id}", compress)


@router.get("/v1/jobs/{job_id}/results/files/{path:path}", response_class=FileResponse,
            responses=ERRORS)
def job_result_file(job_id: str, path: str, s: ServerDep) -> StreamingResponse:
    output, _ = s.jobs.results(job_id)
    return file_response(output, path)


# --- exports: the results service ---------------------------------------------------------


@router.post("/v1/jobs/{job_id}/exports", status_code=201, response_model=ExportOut,
             dependencies=WRITE, responses=ERRORS)
def create_export(job_id: str, spec: ExportCreate, s: ServerDep) -> dict[str, Any]:
    """Record a result file to be sent to a destination (state ``pending``)."""
    _, files = s.jobs.results(job_id)
    rel = safe_relative(spec.file).as_posix()
    if rel not in {p for p, _ in files}:
        raise NotFound(f"job {job_id} has no result file '{spec.file}'")
    now = time.time()
    record = {"id": new_id(), "job_id": job_id, "file": rel, "destination": spec.destination,
              "state": "pending", "retries": 0, "error": None, "created": now, "updated": now}
    s.store.add_export(record)
    return _export(record)


@router.get("/v1/jobs/{job_id}/exports", response_model=ExportsOut, responses=ERRORS)
def job_exports(job_id: str, s: ServerDep) -> dict[str, Any]:
    s.jobs.status(job_id)
    return {"exports": [_export(e) for e in s.store.exports(job_id=job_id)]}


@router.get("/v1/exports", response_model=ExportsOut)
def list_exports(s: ServerDep, state: str | None = None, job: str | None = None
                 ) -> dict[str, Any]:
    return {"exports": [_export(e) for e in s.store.exports(job_id=job, state=state)]}


@router.patch("/v1/exports/{export_id}", response_model=ExportOut, dependencies=WRITE,
              responses=ERRORS)
def update_export(export_id: str, spec: ExportUpdate, s: ServerDep) -> dict[str, Any]:
    """Report progress of an export (pending, in-progress, succeeded, failed)."""
    if s.store.export(export_id) is None:
        raise NotFound(f"no export with id '{export_id}'")
    fields: dict[str, Any] = {"state": spec.state, "error": spec.error}
    if spec.retries is not None:
        fields["retries"] = spec.retries
    s.store.update_export(export_id, **fields)
    record = s.store.export(export_id)
    assert record is not None
    return _export(record)


def _export(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], "job": record["job_id"], "file": record["file"],
            "destination": record["destination"], "state": record["state"],
            "retries": record["retries"], "error": record["error"],
            "created": record["created"], "updated": record["updated"]}

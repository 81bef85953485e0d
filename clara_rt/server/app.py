"""The platform server's HTTP API (FastAPI); the OpenAPI schema is at ``/openapi.json``.

Every route is under ``/v1``. Errors answer ``{"detail": "..."}`` with 400 (bad upload),
401 (missing or wrong token on a write), 404 (unknown id), 409 (state conflict), 413 (upload
too large), 422 (invalid definition or request), 507 (data disk full). The token and the body
size are checked by :class:`~clara_rt.server.guard.RequestGuard` before any route reads a byte.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    StreamingResponse,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clara_rt import __version__
from clara_rt.definition.logtail import open_snapshot
from clara_rt.errors import NotFound
from clara_rt.runner.logs import OperatorLogs
from clara_rt.runner.protocol import Runner
from clara_rt.server import metrics_routes, payload_routes
from clara_rt.server.apidocs import render_api_docs
from clara_rt.server.config import ServerConfig
from clara_rt.server.datalock import DataLock
from clara_rt.server.environ import forget_secret
from clara_rt.server.events import EventHub
from clara_rt.server.guard import TOKEN_HINT, RequestGuard
from clara_rt.server.http_errors import ERRORS, add_error_handlers
from clara_rt.server.jobs import JobManager
from clara_rt.server.models import (
    ExportCreate,
    ExportOut,
    ExportsOut,
    ExportUpdate,
    FilesOut,
    JobCreate,
    JobOut,
    JobsOut,
    JobStateName,
    JobStatusName,
    PipelineCreate,
    PipelineOut,
    PriorityName,
)
from clara_rt.server.payload_routes import archive_response, content_type, file_response
from clara_rt.server.payloads import (
    PayloadTooLarge,
    safe_relative,
)
from clara_rt.server.pipelines import PipelineRegistry
from clara_rt.server.retention import Retention
from clara_rt.server.runners import LocalRunner
from clara_rt.server.sse import sse_response
from clara_rt.server.store import Store, new_id

__all__ = ["Server", "create_app"]

_YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
               "text/plain"}
_BEARER = HTTPBearer(auto_error=False)


class Server:
    """The server's parts for one data directory: records, pipelines, jobs, retention."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        config.data.mkdir(parents=True, exist_ok=True)
        self.lock = DataLock(config.data)  # before anything is touched: one server per folder
        forget_secret(config.token)  # not in /proc/<pid>/environ for commands to read (16.2)
        for folder in (config.tmp_dir, config.payloads_dir, config.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        _clear_tmp(config.tmp_dir)  # uploads a dead server left half-received
        self.store = Store(config.db_path)
        self.events = EventHub()
        self.operator_logs = OperatorLogs()
        self.pipelines = PipelineRegistry(config, self.store)
        self.monitor = metrics_routes.start_monitor(self)  # before jobs: it counts every end
        self.runner = _runner(config, self.pipelines, self.operator_logs)
        self.jobs = JobManager(_job_limits(config), self.store, self.pipelines, self.events,
                               self.runner)
        self.monitor.runtime.running = self.jobs.running_operator_starts
        self.retention = Retention(config, self.store)
        self.started = time.time()

    def close(self) -> None:
        self.monitor.close()
        self.retention.stop()
        self.jobs.close()
        self.store.close()
        self.lock.release()


def _runner(config: ServerConfig, pipelines: PipelineRegistry, logs: OperatorLogs) -> Runner:
    """This process's runtime, or a Ray cluster's node runtimes with ``--cluster``."""
    if config.cluster is None:
        return LocalRunner(config, pipelines, logs)  # logs observe this process's runtime
    from clara_rt.cluster.ray_runner import RayRunner  # imports no Ray: its driver is a child

    return RayRunner.for_server(config, pipelines)


def _job_limits(config: ServerConfig) -> ServerConfig:
    """On a cluster, the default limits (this machine's memory and GPUs, 2 x its workers) do not
    describe where jobs run: the runner's per-node capacity does. Explicit limits still apply."""
    if config.cluster is None:
        return config
    return dataclasses.replace(
        config, max_running=config.max_running or 1 << 30,
        memory_budget=None if config.memory_budget == -1 else config.memory_budget,
        gpu_jobs=None if config.gpu_jobs == -1 else config.gpu_jobs)


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI application; the server's parts start and stop with its lifespan."""
    import logging

    holder: dict[str, Server] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server = await anyio.to_thread.run_sync(Server, config)
        holder["server"] = server
        app.state.server = server
        logging.getLogger().addHandler(server.operator_logs)
        server.retention.start()
        try:
            yield
        finally:
            logging.getLogger().removeHandler(server.operator_logs)
            await anyio.to_thread.run_sync(server.close)

    app = FastAPI(title="clara-rt platform server", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Pipelines, payloads, jobs and results of clara-rt "
                              "(Clara Deploy's platform server in one process).")

    def srv() -> Server:
        return holder["server"]

    def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if config.token is None:
            return
        if credentials is None or not secrets.compare_digest(
                credentials.credentials.encode(), config.token.encode()):
            raise HTTPException(401, TOKEN_HINT, headers={"WWW-Authenticate": "Bearer"})

    write = [Depends(authorised)]
    add_error_handlers(app)
    app.add_middleware(RequestGuard, token=config.token, max_payload=config.max_payload_bytes)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        """The API reference (rendered here from the OpenAPI schema; works offline)."""
        return render_api_docs(app.openapi(), token_required=config.token is not None)

    @app.get("/health", tags=["server"])
    def health() -> dict[str, Any]:
        s = srv()
        return {"status": "ok", "version": __version__, "uptime_s": time.time() - s.started,
                "running_jobs": s.jobs.running, "queued_jobs": s.jobs.queue_depth()}

    # --- pipelines ----------------------------------------------------------------------

    @app.post("/v1/pipelines", status_code=201, response_model=PipelineOut, tags=["pipelines"],
              dependencies=write, responses=ERRORS, openapi_extra=_yaml_or_json_body())
    async def create_pipeline(request: Request, replace: bool = False,
                              filename: str = "pipeline.yaml") -> dict[str, Any]:
        """Register a Clara pipeline definition (JSON ``{definition}`` or a raw YAML body)."""
        body = await _read_limited(request, 1 << 20)
        ctype = content_type(request)
        if ctype == "application/json":
            try:
                spec = PipelineCreate.model_validate_json(body)
            except ValueError as exc:
                raise HTTPException(422, f"bad pipeline request: {exc}") from exc
            text, filename, replace = spec.definition, spec.filename, spec.replace or replace
        elif ctype in _YAML_TYPES or not ctype:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HTTPException(400, "the definition is not UTF-8 text") from exc
        else:
            raise HTTPException(400, f"send the definition as YAML "
                                f"(Content-Type: application/yaml) or JSON, not {ctype}")
        return await anyio.to_thread.run_sync(
            lambda: srv().pipelines.create(text, filename, replace=replace))

    @app.get("/v1/pipelines", response_model=list[PipelineOut], tags=["pipelines"])
    def list_pipelines() -> list[dict[str, Any]]:
        return srv().pipelines.all()

    @app.get("/v1/pipelines/{ref}", response_model=PipelineOut, tags=["pipelines"],
             responses=ERRORS)
    def describe_pipeline(ref: str) -> dict[str, Any]:
        """The pipeline (by id or name) with its jobs per state."""
        return srv().pipelines.describe(ref)

    @app.get("/v1/pipelines/{ref}/definition", response_class=PlainTextResponse,
             tags=["pipelines"], responses=ERRORS)
    def pipeline_definition(ref: str) -> str:
        return srv().pipelines.definition_text(ref)

    @app.delete("/v1/pipelines/{ref}", status_code=204, tags=["pipelines"],
                dependencies=write, responses=ERRORS)
    def delete_pipeline(ref: str) -> Response:
        srv().pipelines.delete(ref)
        return Response(status_code=204)

    payload_routes.add(app, srv, write)

    # --- jobs ---------------------------------------------------------------------------

    @app.post("/v1/jobs", status_code=201, response_model=JobOut, tags=["jobs"],
              dependencies=write, responses=ERRORS)
    def create_job(spec: JobCreate) -> dict[str, Any]:
        """Create a job of a pipeline on payloads; ``start: true`` queues it at once."""
        if not spec.payloads and srv().pipelines.needs_payload(spec.pipeline):
            raise ValueError(f"pipeline '{spec.pipeline}' reads a payload: name one in "
                             "'payloads' (upload it first with POST /v1/payloads)")
        return srv().jobs.create(spec.pipeline, spec.payloads, name=spec.name,
                                 priority=spec.priority, variables=spec.variables,
                                 timeout=spec.timeout, start=spec.start, device=spec.device)

    @app.get("/v1/jobs", response_model=JobsOut, tags=["jobs"], responses=ERRORS)
    def list_jobs(state: JobStateName | None = None, status: JobStatusName | None = None,
                  pipeline: str | None = None, priority: PriorityName | None = None,
                  since: float | None = None, until: float | None = None,
                  limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict[str, Any]:
        """Jobs, newest first; filters: state, status, pipeline (id or name), priority,
        created since/until (Unix seconds)."""
        return {"jobs": srv().jobs.find(state=state, status=status, pipeline=pipeline,
                                        priority=priority, since=since, until=until,
                                        limit=limit)}

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=ERRORS)
    def job_status(job_id: str) -> dict[str, Any]:
        """State, status, per-operator state and timings, history."""
        return srv().jobs.status(job_id)

    @app.post("/v1/jobs/{job_id}/start", response_model=JobOut, tags=["jobs"],
              dependencies=write, responses=ERRORS)
    def start_job(job_id: str) -> dict[str, Any]:
        return srv().jobs.start(job_id)

    @app.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"],
              dependencies=write, responses=ERRORS)
    def cancel_job(job_id: str) -> dict[str, Any]:
        return srv().jobs.cancel(job_id)

    @app.delete("/v1/jobs/{job_id}", status_code=204, tags=["jobs"], dependencies=write,
                responses=ERRORS)
    def delete_job(job_id: str) -> Response:
        srv().jobs.delete(job_id)
        return Response(status_code=204)

    @app.get("/v1/jobs/{job_id}/logs/{operator}", response_class=PlainTextResponse,
             tags=["jobs"], responses=ERRORS)
    def job_logs(job_id: str, operator: str) -> Response:
        """What the operator logged in this job (empty until it runs)."""
        path = srv().jobs.log_path(job_id, operator)
        try:
            size, chunks = open_snapshot(path)  # capped on disk (CLARA_RT_LOG_LIMIT)
        except OSError:
            return PlainTextResponse("")
        return StreamingResponse(chunks, media_type="text/plain; charset=utf-8",
                                 headers={"Content-Length": str(size)})

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"], responses=ERRORS,
             response_class=StreamingResponse)
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events: the job's record now and at every change, until it stops."""
        first = await anyio.to_thread.run_sync(srv().jobs.status, job_id)
        return sse_response(request, first, job_id)

    @app.get("/v1/events", tags=["jobs"], response_class=StreamingResponse)
    async def all_events(request: Request) -> StreamingResponse:
        """Server-Sent Events: every job's record at every change."""
        return sse_response(request, None, None)

    # --- results ------------------------------------------------------------------------

    @app.get("/v1/jobs/{job_id}/results", response_model=FilesOut, tags=["results"],
             responses=ERRORS)
    def job_results(job_id: str) -> dict[str, Any]:
        _, files = srv().jobs.results(job_id)
        return {"files": [{"path": p, "size": n} for p, n in files]}

    @app.get("/v1/jobs/{job_id}/results/archive", tags=["results"], responses=ERRORS,
             response_class=StreamingResponse)
    def job_results_archive(job_id: str, compress: bool = False) -> StreamingResponse:
        """The job's output folder as a tar stream (gzip with ``compress=true``)."""
        output, files = srv().jobs.results(job_id)
        if not files:
            raise NotFound(f"job {job_id} has no results (yet)")
        return archive_response(output, f"job-{job_id}", compress)

    @app.get("/v1/jobs/{job_id}/results/files/{path:path}", response_class=FileResponse,
             tags=["results"], responses=ERRORS)
    def job_result_file(job_id: str, path: str) -> StreamingResponse:
        output, _ = srv().jobs.results(job_id)
        return file_response(output, path)

    # --- exports: the results service ---------------------------------------------------

    @app.post("/v1/jobs/{job_id}/exports", status_code=201, response_model=ExportOut,
              tags=["results"], dependencies=write, responses=ERRORS)
    def create_export(job_id: str, spec: ExportCreate) -> dict[str, Any]:
        """Record a result file to be sent to a destination (state ``pending``)."""
        s = srv()
        _, files = s.jobs.results(job_id)
        rel = safe_relative(spec.file).as_posix()
        if rel not in {p for p, _ in files}:
            raise NotFound(f"job {job_id} has no result file '{spec.file}'")
        now = time.time()
        record = {"id": new_id(), "job_id": job_id, "file": rel,
                  "destination": spec.destination, "state": "pending", "retries": 0,
                  "error": None, "created": now, "updated": now}
        s.store.add_export(record)
        return _export(record)

    @app.get("/v1/jobs/{job_id}/exports", response_model=ExportsOut, tags=["results"],
             responses=ERRORS)
    def job_exports(job_id: str) -> dict[str, Any]:
        srv().jobs.status(job_id)
        return {"exports": [_export(e) for e in srv().store.exports(job_id=job_id)]}

    @app.get("/v1/exports", response_model=ExportsOut, tags=["results"])
    def list_exports(state: str | None = None, job: str | None = None) -> dict[str, Any]:
        return {"exports": [_export(e) for e in srv().store.exports(job_id=job, state=state)]}

    @app.patch("/v1/exports/{export_id}", response_model=ExportOut, tags=["results"],
               dependencies=write, responses=ERRORS)
    def update_export(export_id: str, spec: ExportUpdate) -> dict[str, Any]:
        """Report progress of an export (pending, in-progress, succeeded, failed)."""
        s = srv()
        if s.store.export(export_id) is None:
            raise NotFound(f"no export with id '{export_id}'")
        fields: dict[str, Any] = {"state": spec.state, "error": spec.error}
        if spec.retries is not None:
            fields["retries"] = spec.retries
        s.store.update_export(export_id, **fields)
        record = s.store.export(export_id)
        assert record is not None
        return _export(record)

    # Route groups of their own modules: monitoring (/metrics, /v1/monitor) and the console.
    from clara_rt.server import console_routes

    metrics_routes.add(app, srv, config)
    console_routes.add(app, srv, config)
    return app


# --- helpers ------------------------------------------------------------------------------


async def _read_limited(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return bytes(body)


def _export(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], "job": record["job_id"], "file": record["file"],
            "destination": record["destination"], "state": record["state"],
            "retries": record["retries"], "error": record["error"],
            "created": record["created"], "updated": record["updated"]}


def _clear_tmp(tmp: Path) -> None:
    import shutil

    for entry in tmp.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _yaml_or_json_body() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": PipelineCreate.model_json_schema()},
    }}}

"""Routes of the web console: ``/`` redirects to ``/console``; everything else is under it.

=================================  =====================================================
``/console``                       pipelines: operators, queued/running jobs, last job
``/console/pipelines/{ref}``       one pipeline: operator graph (SVG), operators, jobs
``/console/jobs``                  jobs, newest first; ``state``, ``status``, ``priority``,
                                   ``pipeline``, ``limit``, ``before`` (older pages)
``/console/jobs/{id}``             one job: state, cancel, timeline, logs, results, history
``/console/jobs/{id}/live``        the job page's live part alone (the script swaps it in)
``/console/jobs/{id}/viewer``      axial / coronal / sagittal / MIP views with the overlay
``/console/jobs/{id}/view.png``    one view: ``plane``, ``index``, ``window`` or ``wl=W,L``,
                                   ``overlay``, ``labels``, ``alpha``
``/console/metrics``               GPU, host and runtime charts from ``/v1/monitor``
``/console/static/{name}``         ``console.css``, ``console.js``
=================================  =====================================================

The pages are rendered on the server (:mod:`clara_rt.server.console`) and work offline: no CDN,
no external fonts, a Content-Security-Policy that allows this server only. Reads need no token;
the cancel button sends the token the page asks for once (kept in the browser's localStorage).
The console's routes are left out of the OpenAPI schema: it documents the HTTP API only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from clara_rt.errors import NotFound
from clara_rt.server.console import job_page, pages
from clara_rt.server.console.markup import static_file
from clara_rt.server.console.render import ViewError, plane_length, render_png, resolve_window
from clara_rt.server.console.segments import segment_names
from clara_rt.server.console.viewer import viewer_info
from clara_rt.server.console.volumes import JobVolumes, NoVolume, VolumeCache, load_job_volumes
from clara_rt.server.deps import ConfigDep, ServerDep
from clara_rt.server.metrics_routes import cluster_snapshot

__all__ = ["router"]

_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
_TRUE = ("1", "true", "yes", "on")


class _BadRequest(ValueError):
    """A console request with a parameter out of range (answered 422)."""


async def _token_required(config: ConfigDep) -> bool:
    return config.token is not None


async def _volume_cache(request: Request) -> VolumeCache:
    """The application's cache of decoded job volumes (made at the first viewer request)."""
    cache: VolumeCache | None = getattr(request.app.state, "console_volumes", None)
    if cache is None:
        cache = request.app.state.console_volumes = VolumeCache()
    return cache


_Token = Annotated[bool, Depends(_token_required)]
_Volumes = Annotated[VolumeCache, Depends(_volume_cache)]

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/console", status_code=307)


@router.get("/console", response_class=HTMLResponse)
@router.get("/console/pipelines", response_class=HTMLResponse)
def pipelines_view(s: ServerDep, token: _Token) -> HTMLResponse:
    return _html(lambda: pages.pipelines_page(_pipeline_rows(s), token_required=token,
                                              cluster=cluster_snapshot(s)), token)


@router.get("/console/pipelines/{ref}", response_class=HTMLResponse)
def pipeline_view(ref: str, s: ServerDep, token: _Token) -> HTMLResponse:
    def render() -> str:
        record = s.pipelines.describe(ref)
        return pages.pipeline_page(record, s.jobs.find(pipeline=record["id"], limit=50),
                                   token_required=token)
    return _html(render, token)


@router.get("/console/jobs", response_class=HTMLResponse)
def jobs_view(s: ServerDep, token: _Token, state: str | None = None,
              status: str | None = None, priority: str | None = None,
              pipeline: str | None = None, limit: str | None = None,
              before: str | None = None) -> HTMLResponse:
    def render() -> str:
        filters = _job_filters(state=state, status=status, priority=priority,
                               pipeline=pipeline, limit=limit, before=before)
        jobs, older = _job_page(s, filters)
        names = [p["name"] for p in s.pipelines.all()]
        return pages.jobs_page(jobs, filters, names, older=older, token_required=token)
    return _html(render, token)


@router.get("/console/jobs/{job_id}", response_class=HTMLResponse)
def job_view(job_id: str, s: ServerDep, token: _Token) -> HTMLResponse:
    def render() -> str:
        job, ops, results = _job_parts(s, job_id)
        return job_page.job_page(job, ops, results, token_required=token)
    return _html(render, token)


@router.get("/console/jobs/{job_id}/live", response_class=HTMLResponse)
def job_live(job_id: str, s: ServerDep, token: _Token) -> HTMLResponse:
    return _html(lambda: job_page.live_parts(*_job_parts(s, job_id)), token)


@router.get("/console/jobs/{job_id}/viewer", response_class=HTMLResponse)
def viewer(job_id: str, s: ServerDep, token: _Token, volumes: _Volumes) -> HTMLResponse:
    def render() -> str:
        job = s.jobs.status(job_id)
        found = _job_volumes(s, volumes, job)
        return job_page.viewer_page(job, viewer_info(found, job["pipeline"]),
                                    token_required=token)
    return _html(render, token)


@router.get("/console/jobs/{job_id}/view.png")
def view_png(job_id: str, s: ServerDep, volumes: _Volumes, plane: str = "axial",
             index: str | None = None, window: str = "auto", wl: str | None = None,
             overlay: str = "1", labels: str | None = None, alpha: str = "0.4") -> Response:
    try:
        job = s.jobs.status(job_id)
        found = _job_volumes(s, volumes, job)
        png = _png(found, plane, index, window, wl, overlay.lower() in _TRUE, labels, alpha)
    except (NotFound, NoVolume) as exc:
        return JSONResponse({"detail": _message(exc)}, status_code=404)
    except (_BadRequest, ViewError) as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/console/metrics", response_class=HTMLResponse)
def metrics_view(s: ServerDep, token: _Token) -> HTMLResponse:
    return _html(lambda: pages.metrics_page(token_required=token,
                                            cluster=cluster_snapshot(s)), token)


@router.get("/console/static/{name}")
def static(name: str) -> Response:
    try:
        data, media, _ = static_file(name)
    except KeyError:
        return JSONResponse({"detail": f"no console file '{name}'"}, status_code=404)
    return Response(data, media_type=media, headers={
        "Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})


def _html(render: Callable[[], str], token: bool) -> HTMLResponse:
    """The page ``render()`` makes, or an error page (404 unknown, 422 bad parameter)."""
    try:
        return HTMLResponse(render(), headers=_HEADERS)
    except (NotFound, NoVolume) as exc:
        return HTMLResponse(pages.error_page(404, _message(exc), token_required=token),
                            status_code=404, headers=_HEADERS)
    except (_BadRequest, ViewError) as exc:
        return HTMLResponse(pages.error_page(422, str(exc), token_required=token),
                            status_code=422, headers=_HEADERS)


# --- data for the pages ------------------------------------------------------------------------


def _pipeline_rows(s: Any) -> list[dict[str, Any]]:
    rows = []
    for record in s.pipelines.all():
        last = s.jobs.find(pipeline=record["id"], limit=1)
        rows.append({**record, "jobs": s.store.count_jobs_of(record["id"]),
                     "last_job": last[0] if last else None})
    return rows


def _job_filters(**given: str | None) -> dict[str, Any]:
    """Checked filters of the jobs page (empty values dropped). Raises :class:`_BadRequest`."""
    filters: dict[str, Any] = {k: v for k, v in given.items() if v}
    for name, valid in pages.FILTERS.items():
        if name in filters and filters[name] not in valid:
            raise _BadRequest(f"unknown {name} '{filters[name]}'; {name}s are: "
                              f"{', '.join(valid)}")
    try:
        filters["limit"] = int(filters.get("limit", 50))
        if "before" in filters:
            filters["before"] = float(filters["before"])
    except ValueError as exc:
        raise _BadRequest(f"limit must be a whole number and before a time: {exc}") from None
    if not 1 <= filters["limit"] <= 1000:
        raise _BadRequest(f"limit must be between 1 and 1000, not {filters['limit']}")
    return filters


def _job_page(s: Any, filters: dict[str, Any]) -> tuple[list[dict[str, Any]], float | None]:
    """Up to ``limit`` jobs created before ``before``, and the cursor of the next page."""
    limit, before = filters["limit"], filters.get("before")
    found = s.jobs.find(state=filters.get("state"), status=filters.get("status"),
                        priority=filters.get("priority"), pipeline=filters.get("pipeline"),
                        until=before, limit=limit + 11)  # +10: jobs created in the same tick
    if before is not None:
        found = [job for job in found if job["created"] < before]
    older = found[limit - 1]["created"] if len(found) > limit else None
    return found[:limit], older


def _job_parts(s: Any, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                             list[tuple[str, int]] | None]:
    """The job's record, its pipeline's operators and its results (``None``: deleted)."""
    job = s.jobs.status(job_id)
    try:
        operators = list(s.pipelines.get(job["pipeline_id"])["operators"])
    except NotFound:  # the pipeline was deleted: show the operators the job ran
        operators = [{"name": row["name"], "description": "", "inputs": [], "outputs": []}
                     for row in job.get("operators") or []]
    try:
        _, results = s.jobs.results(job_id)
    except NotFound:
        results = None
    return job, operators, results


def _job_volumes(s: Any, cache: VolumeCache, job: dict[str, Any]) -> JobVolumes:
    version = (job["state"], job["stopped"], job["results_deleted"], tuple(job["payloads"]))

    def load() -> JobVolumes:
        output = s.jobs.folder(job["id"]) / "output"
        results = [] if job["results_deleted"] else s.jobs.results(job["id"])[1]
        folders = [s.config.payloads_dir / p for p in job["payloads"]]
        found = load_job_volumes(folders, output, results)
        found.names = segment_names(_definition(s, job), output, results, found.labels)
        return found

    return cache.get((job["id"], version), load)


def _definition(s: Any, job: dict[str, Any]) -> Any:
    """The job's pipeline definition (``None`` when the pipeline is gone or unreadable)."""
    from clara_rt.definition import parse_definition
    from clara_rt.errors import ClaraRTError

    try:
        text = s.pipelines.definition_text(job["pipeline_id"])
        return parse_definition(f"{job['pipeline']}.yaml", text=text, environ={},
                                allow_undefined=True)
    except (NotFound, OSError, ClaraRTError):
        return None


def _png(found: JobVolumes, plane: str, index: str | None, window: str, wl: str | None,
         overlay: bool, labels: str | None, alpha: str) -> bytes:
    n = plane_length(found.image.shape, plane)
    try:
        slice_index = int(index) if index else None
        opacity = float(alpha)
    except ValueError:
        raise _BadRequest(f"index must be a whole number (0..{n - 1}) and alpha a number "
                          f"in [0, 1]; got index={index!r}, alpha={alpha!r}") from None
    if not 0.0 <= opacity <= 1.0:
        raise _BadRequest(f"alpha must be in [0, 1], not {alpha}")
    mask = None
    if overlay and labels:
        if labels not in found.labels:
            raise NoVolume(f"no segmentation '{labels}' for this job; segmentations: "
                           f"{', '.join(found.labels) or 'none'}")
        mask = found.labels[labels]
    elif overlay and found.labels:
        mask = next(iter(found.labels.values()))
    level_width = resolve_window(window, wl, found.auto)
    return render_png(found.image, mask, found.spacing, plane, slice_index, level_width,
                      head_up=found.head_up, alpha=opacity)


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


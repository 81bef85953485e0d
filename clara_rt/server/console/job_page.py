"""The job page (state, cancel, operator timeline, logs, results, history) and the viewer page.

The job page's live part (:func:`live_parts`: timeline, graph coloured by operator state,
results, history) is also served alone, so the page's script can swap it in when
``/v1/events`` reports a change, while the state and status cells are updated from the event
itself. Per-operator logs are fetched from ``/v1/jobs/{id}/logs/{op}`` when asked for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from clara_rt.server.console.graph import pipeline_svg
from clara_rt.server.console.markup import (
    badge,
    duration,
    e,
    facts,
    page,
    path_url,
    table,
    when,
)
from clara_rt.server.console.render import PLANES, WINDOWS

__all__ = ["job_page", "live_parts", "viewer_page"]

_TRACK = 1000  # width of the timeline's SVG coordinate system


def job_page(job: dict[str, Any], operators: Sequence[dict[str, Any]],
             results: Sequence[tuple[str, int]] | None, *, token_required: bool) -> str:
    """The whole job page.

    Args:
        job: The job's record with ``operators`` rows and ``history`` (GET /v1/jobs/{id}).
        operators: The pipeline's operators (name, description, inputs, outputs).
        results: ``(path, size)`` of each result file, or ``None`` when they were deleted.
        token_required: Whether cancelling needs the server's token.
    """
    jid = path_url(job["id"])
    ran = None if job["started"] is None else (job["stopped"] or time.time()) - job["started"]
    payloads = ", ".join(f'<a href="/v1/payloads/{path_url(p)}"><code>{e(p[:8])}</code></a>'
                         for p in job["payloads"]) or "none"
    info = facts([
        ("State", badge(job["state"])), ("Status", badge(job["status"])),
        ("Priority", badge(job["priority"])),
        ("Pipeline", f'<a href="/console/pipelines/{path_url(job["pipeline_id"])}">'
                     f'{e(job["pipeline"])}</a>'),
        ("Id", f"<code>{e(job['id'])}</code>"), ("Created", when(job["created"])),
        ("Started", when(job["started"])), ("Stopped", when(job["stopped"])),
        ("Ran for", e(duration(ran))),
        ("Timeout", e(duration(job["timeout"])) if job["timeout"] else "none"),
        ("Attempts", str(job["attempts"])), ("Payloads", payloads),
        ("Error", f'<span class="error">{e(job["error"])}</span>' if job["error"] else
                  '<span class="muted">none</span>'),
    ], ident="job-facts")
    cancel = (f'<button type="button" id="cancel" class="danger" data-job="{e(job["id"])}"'
              f'{" hidden" if job["state"] == "stopped" else ""}>Cancel job</button>')
    logs = "".join(
        f'<div class="log" data-op="{e(op["name"])}"><button type="button" class="show-log" '
        f'data-op="{e(op["name"])}" aria-expanded="false">{e(op["name"])}</button>'
        f'<pre class="log-text" hidden></pre></div>' for op in operators)
    # Nothing to open for a job without results (cancelled, failed early, results deleted);
    # the script shows the link once the live part lists results.
    view = (f'<a class="button" id="open-viewer" href="/console/jobs/{jid}/viewer"'
            f'{"" if results else " hidden"}>Open in viewer</a>')
    main = (f'<h1>Job <span class="name">{e(job["name"])}</span></h1>'
            f'<div class="actions">{cancel}{view}'
            f'<span id="action-message" role="status"></span></div>{info}'
            f'<div id="live-parts">{live_parts(job, operators, results)}</div>'
            '<section><h2>Operator logs</h2><p class="hint">Select an operator to load what '
            f'it logged in this job.</p><div class="logs">{logs}</div></section>')
    return page(f"Job {job['name']}", main, active="jobs",
                data={"job": job["id"], "job-state": job["state"],
                      "job-version": str(len(job.get("history") or []))},
                token_required=token_required)


def live_parts(job: dict[str, Any], operators: Sequence[dict[str, Any]],
               results: Sequence[tuple[str, int]] | None) -> str:
    """Timeline, state-coloured graph, results and history of the job (swapped in live)."""
    rows = _operator_rows(job, operators)
    states = {row["name"]: row["state"] for row in rows}
    return (f'<section data-state="{e(job["state"])}"><h2>Operators</h2>'
            f"{_timeline(job, rows)}"
            f'<details class="graph-details" open><summary>Graph</summary><div class="graph-box">'
            f"{pipeline_svg(operators, states)}</div></details></section>"
            f"<section><h2>Results</h2>{_results(job, results)}</section>"
            f"<section><h2>History</h2>{_history(job)}</section>")


def viewer_page(job: dict[str, Any], info: dict[str, Any], *, token_required: bool) -> str:
    """Four views (axial, coronal, sagittal, MIP) of the job's volume with window controls.

    Args:
        job: The job's record.
        info: :func:`clara_rt.server.console.viewer.viewer_info`: ``shape`` ``(k, j, i)``,
            ``spacing``, ``source``, ``modality``, ``labels`` (``[(path, [label values],
            [(r, g, b)...], [segment names])]``), ``window`` (the initial preset), ``marks``
            (plane -> orientation letters) and ``patient`` (``[(label, text, identifying)]``).
        token_required: Whether the server needs a token for writes.
    """
    jid = path_url(job["id"])
    shape, spacing = info["shape"], info["spacing"]
    first_labels = info["labels"][0][0] if info["labels"] else ""
    params = {"window": info["window"], "labels": first_labels}
    marks = info.get("marks") or {}
    views = "".join(_view(jid, plane, shape, params, marks.get(plane)) for plane in PLANES)
    main = (f'<h1>Viewer <a class="name" href="/console/jobs/{jid}">{e(job["name"])}</a></h1>'
            f'{_patient(info.get("patient") or [])}'
            f'<p class="muted">Image: {e(info["source"])} &middot; '
            f'{" &times; ".join(str(n) for n in shape)} voxels (slices &times; rows &times; '
            f'columns) &middot; spacing {" &times; ".join(f"{s:g}" for s in spacing)} mm'
            f'{" &middot; " + e(info["modality"]) if info["modality"] else ""}</p>'
            + _viewer_controls(info) + f'<div class="views">{views}</div>')
    return page(f"Viewer {job['name']}", main, active="jobs",
                data={"job": job["id"], "viewer": "1"}, token_required=token_required)


# --- job page parts ----------------------------------------------------------------------------


def _operator_rows(job: dict[str, Any], operators: Sequence[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """The job's operator rows, or the pipeline's operators as ``not_run`` before it runs."""
    if job.get("operators"):
        return list(job["operators"])
    return [{"name": op["name"], "state": "not_run", "start_ms": None, "duration_ms": None}
            for op in operators]


def _timeline(job: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    """One horizontal bar per operator, from its start to its end, on a common time axis."""
    now_ms = None
    if job["state"] == "running" and job["started"] is not None:
        now_ms = (time.time() - job["started"]) * 1000.0
    spans = []
    for row in rows:
        start, length = row.get("start_ms"), row.get("duration_ms")
        if start is not None and length is None and now_ms is not None:
            length = max(now_ms - start, 0.0)
        spans.append((row, start, length))
    total = max([s + (n or 0.0) for _, s, n in spans if s is not None] or [0.0]) or 1.0
    lines = []
    for row, start, length in spans:
        bar = ""
        if start is not None:
            x = start / total * _TRACK
            w = max((length or 0.0) / total * _TRACK, 3.0)
            bar = (f'<rect class="tl-bar s-{_token(row["state"])}" x="{min(x, _TRACK - w):.1f}" '
                   f'y="0" width="{w:.1f}" height="10"><title>{e(row["name"])}: '
                   f"{e(_ms(length))}</title></rect>")
        took = ("" if start is None else
                _ms(length) if row.get("duration_ms") is not None else f"{_ms(length)} so far")
        tip = "" if start is None else f' title="started {_ms(start)} after the job"'
        lines.append(
            f'<div class="tl-row" data-op="{e(row["name"])}" data-state="{e(row["state"])}"'
            f'{tip}><code class="tl-name">{e(row["name"])}</code>'
            f'<svg class="tl-track" viewBox="0 0 {_TRACK} 10" preserveAspectRatio="none" '
            f'aria-hidden="true">{bar}</svg><span class="tl-time">{badge(row["state"])} '
            f"{e(took)}</span></div>")
    axis = ('<div class="tl-row tl-axis"><span></span><div class="ticks"><span>0</span>'
            f'<span>{e(_ms(total))}</span></div><span></span></div>'
            if any(s is not None for _, s, _ in spans) else "")
    return f'<div class="timeline">{"".join(lines)}{axis}</div>'


def _results(job: dict[str, Any], results: Sequence[tuple[str, int]] | None) -> str:
    if results is None:
        return (f'<p class="muted">The results were deleted by the retention policy '
                f"({when(job['results_deleted'])}).</p>")
    if not results:
        return ('<p class="muted">No results yet: they appear here when the job has finished.'
                "</p>" if job["state"] != "stopped" else '<p class="muted">No results.</p>')
    jid = path_url(job["id"])
    rows = [f'<tr><td><a href="/v1/jobs/{jid}/results/files/{path_url(rel)}" download>'
            f"{e(rel)}</a></td><td class=\"num\">{e(_size(size))}</td></tr>"
            for rel, size in results]
    total = sum(size for _, size in results)
    return (f'<p class="downloads"><a class="button" href="/v1/jobs/{jid}/results/archive" '
            f'download>Download all (.tar)</a> <a href="/v1/jobs/{jid}/results/archive'
            f'?compress=true" download>as .tar.gz</a> <span class="muted">{len(results)} files, '
            f"{e(_size(total))}</span></p>" + table(["File", "Size"], rows, cls="results"))


def _history(job: dict[str, Any]) -> str:
    rows = [f"<tr><td>{when(h['time'])}</td><td>{badge(h['state'])}</td>"
            f"<td>{badge(h['status'])}</td><td>{e(h.get('note') or '')}</td></tr>"
            for h in job.get("history") or []]
    return table(["Time", "State", "Status", "Note"], rows, cls="history")


# --- viewer parts ------------------------------------------------------------------------------


def _viewer_controls(info: dict[str, Any]) -> str:
    presets = [*WINDOWS, "auto", "custom"]
    opts = "".join(f'<option value="{p}"{" selected" if p == info["window"] else ""}>{p}'
                   "</option>" for p in presets)
    level, width = WINDOWS.get(info["window"], info["auto"])
    labels = "".join(
        f'<option value="{e(rel)}"{" selected" if i == 0 else ""}>{e(rel)}</option>'
        for i, (rel, *_) in enumerate(info["labels"]))
    legend = "".join(_legend(rel, values, colors, names[0] if names else [""] * len(values),
                             hidden=i > 0)
                     for i, (rel, values, colors, *names) in enumerate(info["labels"]))
    presets_attr = e(";".join(f"{k}:{w:g},{lv:g}" for k, (lv, w) in
                              [*WINDOWS.items(), ("auto", info["auto"])]))
    return ('<form class="viewer-controls" id="viewer-controls" data-presets="'
            f'{presets_attr}"><label>Window <select name="window">{opts}</select></label>'
            f'<label>W <input type="number" name="ww" value="{width:g}" step="any" '
            f'min="1" inputmode="decimal"></label><label>L <input type="number" name="wl" '
            f'value="{level:g}" step="any" inputmode="decimal"></label><label>Overlay '
            f'<select name="labels"><option value="">none</option>{labels}</select></label>'
            f"{legend}</form>")


def _legend(rel: str, values: Sequence[int], colors: Sequence[tuple[int, int, int]],
            names: Sequence[str], *, hidden: bool) -> str:
    swatches = "".join(
        f'<span class="swatch" data-label="{value}" title="label {value}"><svg width="12" '
        f'height="12" aria-hidden="true"><rect width="12" height="12" fill="rgb({r},{g},{b})"/>'
        f"</svg> {e(name) if name else value}</span>"
        for value, (r, g, b), name in zip(values, colors, names, strict=True))
    return (f'<span class="legend" data-labels="{e(rel)}"{" hidden" if hidden else ""}>'
            f"labels {swatches or 'none in this volume'}</span>")


def _patient(items: Sequence[tuple[str, str, bool]]) -> str:
    """The patient/study line; identifying values carry ``phi`` (hidden by the switch)."""
    if not items:
        return ""
    parts = " &middot; ".join(
        f'{e(label)} <span class="{"phi" if identifying else "fact"}">{e(value)}</span>'
        for label, value, identifying in items)
    switch = ('<label class="hide-ids"><input type="checkbox" id="hide-ids"> Hide identifiers'
              "</label>" if any(identifying for *_, identifying in items) else "")
    return f'<p class="patient" id="patient">{parts} {switch}</p>'


def _marks(marks: dict[str, str] | None) -> str:
    if not marks:
        return ""
    return "".join(f'<span class="mark {side}" data-side="{side}">{e(letter)}</span>'
                   for side, letter in marks.items() if letter)


def _view(jid: str, plane: str, shape: Sequence[int], params: dict[str, str],
          marks: dict[str, str] | None = None) -> str:
    count = 1 if plane == "mip" else int(shape[{"axial": 0, "coronal": 1, "sagittal": 2}[plane]])
    middle = count // 2
    src = _view_url(jid, plane, middle, params)
    slider = ("" if plane == "mip" else
              f'<input type="range" min="0" max="{count - 1}" value="{middle}" '
              f'aria-label="{plane} slice">')
    where = ('<output>maximum intensity projection</output>' if plane == "mip" else
             f"<output>{middle + 1} / {count}</output>")
    return (f'<figure class="view" data-plane="{plane}" data-count="{count}">'
            f"<figcaption>{plane.title() if plane != 'mip' else 'MIP'} {where}</figcaption>"
            f'<div class="frame"><img src="{e(src)}" alt="{plane} view">{_marks(marks)}</div>'
            f"{slider}</figure>")


def _view_url(jid: str, plane: str, index: int, params: dict[str, str]) -> str:
    overlay = f"&overlay=1&labels={path_url(params['labels'])}" if params["labels"] else \
        "&overlay=0"
    return (f"/console/jobs/{jid}/view.png?plane={plane}&index={index}"
            f"&window={params['window']}{overlay}")


def _ms(value: float | None) -> str:
    if value is None:
        return "\u2013"
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _size(n: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, step = float(n), 0
    while value >= 1024 and step < len(units) - 1:
        value, step = value / 1024, step + 1
    return f"{n} B" if step == 0 else f"{value:.1f} {units[step]}"


def _token(state: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in state)

"""Console pages: pipelines, one pipeline, the jobs table, metrics and error pages.

Each function takes plain records (as the HTTP API returns them) and returns a whole HTML page;
the job page and the viewer are in :mod:`.job_page`. Live parts (job states, metrics charts) are
filled in by ``console.js`` from ``/v1/events`` and ``/v1/monitor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clara_rt.job import PRIORITY_NAMES
from clara_rt.server.console.graph import pipeline_svg
from clara_rt.server.console.markup import (
    badge,
    e,
    facts,
    job_link,
    jobs_table,
    page,
    path_url,
    query,
    table,
    when,
)

__all__ = ["FILTERS", "cluster_line", "error_page", "jobs_page", "metrics_page", "pipeline_page",
           "pipelines_page"]

FILTERS: dict[str, tuple[str, ...]] = {
    "state": ("pending", "running", "stopped"),
    "status": ("healthy", "faulted", "canceled", "timed-out"),
    "priority": PRIORITY_NAMES,
}
LIMITS = (25, 50, 100, 250, 1000)


def cluster_line(cluster: dict[str, Any] | None) -> str:
    """Where jobs run, as one paragraph: the Ray cluster's state (empty without a cluster)."""
    if cluster is None:
        return ""
    where = f"Jobs run on the Ray cluster <code>{e(cluster['address'])}</code>"
    if not cluster["available"]:
        return (f'<p class="notice" id="cluster">{where}: <strong>unavailable</strong> '
                f"({e(cluster['reason'] or 'no answer')}); new jobs wait.</p>")
    return (f'<p class="hint" id="cluster">{where}: {cluster["nodes"]} node(s), '
            f'{cluster["node_runtimes"]} runtime(s), {cluster["running"]} of '
            f'{cluster["capacity"]} job slot(s) busy.</p>')


def pipelines_page(pipelines: Sequence[dict[str, Any]], *, token_required: bool,
                   cluster: dict[str, Any] | None = None) -> str:
    """All pipelines: operators, jobs queued / running / finished, the last job; ``cluster``
    (:func:`cluster_line`) when jobs run on a Ray cluster."""
    rows = []
    for p in pipelines:
        counts, last = p["jobs"], p.get("last_job")
        last_cell = '<span class="muted">never run</span>'
        if last:
            shown = last["status"] if last["state"] == "stopped" else last["state"]
            last_cell = f"{job_link(last)} {badge(shown)}<br>{when(last['created'])}"
        rows.append(
            f'<tr data-pipeline="{e(p["id"])}"><td><a href="/console/pipelines/'
            f'{path_url(p["id"])}">{e(p["name"])}</a></td>'
            f'<td class="num">{len(p["operators"])}</td><td class="num">{counts["pending"]}</td>'
            f'<td class="num">{counts["running"]}</td><td class="num">{counts["stopped"]}</td>'
            f"<td>{last_cell}</td><td class=\"registered\">{when(p['created'])}</td>"
            f'<td class="replaced">{_replaced(p)}</td></tr>')
    main = ("<h1>Pipelines</h1>" + cluster_line(cluster)
            + table(["Pipeline", "Operators", "Queued", "Running", "Finished", "Last job",
                     "Registered", "Replaced"], rows, cls="pipelines",
                    empty="No pipelines yet: register one with `clara-rt create pipeline "
                          "FILE.yaml` or POST /v1/pipelines.")
            + '<p class="hint">Queued counts jobs created or waiting for a worker.</p>')
    return page("Pipelines", main, active="pipelines", token_required=token_required)


def _replaced(record: dict[str, Any]) -> str:
    """When the definition was last replaced (``never`` when it is the first one)."""
    if record["updated"] <= record["created"]:
        return '<span class="muted">never</span>'
    return when(record["updated"])


def pipeline_page(record: dict[str, Any], jobs: Sequence[dict[str, Any]], *,
                  token_required: bool) -> str:
    """One pipeline: facts, the operator graph, its operators and its latest jobs."""
    counts = record.get("jobs") or {}
    ref = path_url(record["id"])
    info = facts([
        ("Id", f"<code>{e(record['id'])}</code>"),
        ("API version", e(record["api_version"])),
        ("Operators", str(len(record["operators"]))),
        ("Jobs", f"{counts.get('pending', 0)} queued, {counts.get('running', 0)} running, "
                 f"{counts.get('stopped', 0)} finished"),
        ("Registered", when(record["created"])), ("Replaced", _replaced(record)),
        ("Definition", f'<a href="/v1/pipelines/{ref}/definition">YAML</a>'),
    ])
    ops = [f'<tr data-op="{e(op["name"])}"><td><code>{e(op["name"])}</code></td>'
           f'<td>{e(op.get("description") or "")}</td>'
           f'<td>{e(", ".join(op.get("inputs") or [])) or "payload"}</td>'
           f'<td>{e(", ".join(o for o in op.get("outputs") or [] if o))}</td></tr>'
           for op in record["operators"]]
    main = (f"<h1>Pipeline <span class=\"name\">{e(record['name'])}</span></h1>{info}"
            f'<section><h2>Graph</h2><div class="graph-box">{pipeline_svg(record["operators"])}'
            f"</div></section><section><h2>Operators</h2>"
            + table(["Operator", "Description", "Inputs from", "Outputs"], ops, cls="ops")
            + "</section><section><h2>Latest jobs</h2>"
            + '<p id="new-jobs" class="notice" hidden>New jobs arrived: '
              '<a href="">reload the page</a>.</p>'
            + jobs_table(jobs, pipeline_column=False, empty="No jobs of this pipeline yet.")
            + f'<p><a href="/console/jobs{query(pipeline=record["name"])}">All jobs of this '
              f"pipeline</a></p></section>")
    return page(f"Pipeline {record['name']}", main, active="pipelines",
                data={"pipeline": record["id"]}, token_required=token_required)


def jobs_page(jobs: Sequence[dict[str, Any]], filters: dict[str, Any],
              pipelines: Sequence[str], *, older: float | None,
              token_required: bool) -> str:
    """The jobs table (newest first) with its filter form and an "older" link.

    Args:
        jobs: The jobs to show.
        filters: ``state``, ``status``, ``priority``, ``pipeline``, ``limit``, ``before``.
        pipelines: Pipeline names for the pipeline filter.
        older: ``created`` of the last job shown when older ones exist (the next page's
            ``before``), else ``None``.
        token_required: Whether the server needs a token for writes.
    """
    selects = [_select(name, name.title(), FILTERS[name], filters.get(name))
               for name in ("state", "status", "priority")]
    selects.append(_select("pipeline", "Pipeline", tuple(pipelines), filters.get("pipeline")))
    selects.append(_select("limit", "Show", tuple(str(n) for n in LIMITS),
                           str(filters.get("limit")), blank=None))
    form = ('<form class="filters" method="get" action="/console/jobs">' + "".join(selects)
            + '<button type="submit">Filter</button> <a href="/console/jobs">Reset</a></form>')
    kept = {k: v for k, v in filters.items() if k != "before"}
    pager = []
    if filters.get("before") is not None:
        pager.append(f'<a href="/console/jobs{query(**kept)}">&larr; Newest</a>')
    if older is not None:
        pager.append(f'<a rel="next" href="/console/jobs{query(**kept, before=repr(older))}">'
                     "Older &rarr;</a>")
    main = ("<h1>Jobs</h1>" + form
            + '<p id="new-jobs" class="notice" hidden>New jobs arrived: '
              '<a href="">reload the page</a>.</p>'
            + jobs_table(jobs, empty="No jobs match these filters.")
            + f'<nav class="pager">{" ".join(pager)}</nav>')
    return page("Jobs", main, active="jobs", token_required=token_required)


def metrics_page(*, token_required: bool, cluster: dict[str, Any] | None = None) -> str:
    """GPU, host and runtime charts, drawn by the script from ``/v1/monitor`` every few s."""
    def chart(key: str, caption: str) -> str:
        return (f'<figure class="chart-box"><figcaption>{e(caption)} <span class="now" '
                f'data-now="{key}"></span></figcaption><div class="chart" data-chart="{key}">'
                "</div></figure>")

    main = ("<h1>Metrics</h1>" + cluster_line(cluster)
            + '<p id="monitor-status" class="muted">Loading <code>/v1/monitor</code>&hellip;</p>'
            '<div id="monitor" hidden>'
            '<section><h2>Runtime</h2><dl class="cards" id="runtime-facts"></dl>'
            f'<div class="charts">{chart("busy", "Busy workers (%)")}</div></section>'
            '<section><h2>Host</h2><dl class="cards" id="host-facts"></dl><div class="charts">'
            f'{chart("cpu", "CPU (%)")}{chart("memory", "Memory used (GiB)")}</div></section>'
            '<section><h2>GPU</h2><p id="gpu-reason" class="notice" hidden></p>'
            '<div id="gpu-devices"></div><div class="charts" id="gpu-charts">'
            f'{chart("gpu-util", "GPU utilisation (%)")}'
            f'{chart("gpu-memory", "GPU memory used (GiB)")}</div></section></div>')
    return page("Metrics", main, active="metrics", token_required=token_required)


def error_page(status: int, message: str, *, token_required: bool = False) -> str:
    main = (f'<h1>{status}</h1><p class="error">{e(message)}</p>'
            '<p><a href="/console">Pipelines</a> &middot; <a href="/console/jobs">Jobs</a></p>')
    return page(f"Error {status}", main, token_required=token_required)


def _select(name: str, label: str, options: Sequence[str], current: Any, *,
            blank: str | None = "any") -> str:
    first = f'<option value="">{e(blank)}</option>' if blank is not None else ""
    opts = "".join(f'<option value="{e(o)}"{" selected" if str(current) == o else ""}>'
                   f"{e(o)}</option>" for o in options)
    return f'<label>{e(label)} <select name="{e(name)}">{first}{opts}</select></label>'

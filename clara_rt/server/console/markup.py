"""HTML building blocks of the console: the page shell, static files, tables, times, badges.

Pages are Python string templates (``page.html``, :class:`string.Template`) filled with
fragments built here; every value that comes from a record goes through :func:`e`
(:func:`html.escape`), including attributes, which are always double-quoted. Static files
(``console.css``, ``console.js``) are read once from the package and served with
a content hash in their URL, so browsers may cache them for long.
"""

from __future__ import annotations

import hashlib
import html
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from clara_rt import __version__

__all__ = ["NAV", "badge", "duration", "e", "facts", "job_link", "jobs_table", "page", "path_url",
           "query", "static_file", "table", "when"]

NAV = (("pipelines", "/console", "Pipelines"), ("jobs", "/console/jobs", "Jobs"),
       ("metrics", "/console/metrics", "Metrics"))
STATIC_TYPES = {"console.css": "text/css; charset=utf-8",
                "console.js": "text/javascript; charset=utf-8"}


def e(value: Any) -> str:
    """Escape ``value`` (``str()`` of it) for HTML text and double-quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


@cache
def static_file(name: str) -> tuple[bytes, str, str]:
    """``(content, media type, short content hash)`` of a static file of the console.

    Raises:
        KeyError: Not one of the console's static files.
    """
    media = STATIC_TYPES[name]
    data = resources.files("clara_rt.server.console").joinpath(name).read_bytes()
    return data, media, hashlib.sha256(data).hexdigest()[:12]


@cache
def _template() -> Template:
    text = resources.files("clara_rt.server.console").joinpath("page.html")
    return Template(text.read_text(encoding="utf-8"))


def page(title: str, main: str, *, active: str = "", data: dict[str, str] | None = None,
         token_required: bool = False) -> str:
    """A whole console page around ``main`` (HTML); ``data`` become ``data-*`` of ``<body>``."""
    nav = "".join(f'<a href="{href}"{" aria-current=page" if key == active else ""}>{label}</a>'
                  for key, href, label in NAV)
    attrs = {"page": active, **(data or {})}
    if token_required:
        attrs["token"] = "required"
    footer = (' &middot; <button type="button" class="link" id="forget-token">forget the '
              "saved token</button>" if token_required else "")
    return _template().substitute(
        title=e(title), main=main, nav=nav, version=e(__version__), footer=footer,
        body_attrs=" ".join(f'data-{k}="{e(v)}"' for k, v in attrs.items()),
        css_version=static_file("console.css")[2], js_version=static_file("console.js")[2])


def facts(items: Sequence[tuple[str, str]], *, ident: str = "") -> str:
    """A definition list of ``(label, HTML)``: labels are escaped here, values by the caller.

    Each ``<dd>`` gets the class of its label's first word, lowercased (``state``, ``status``).
    """
    ident_attr = f' id="{e(ident)}"' if ident else ""
    return (f'<dl class="facts"{ident_attr}>'
            + "".join(f'<dt>{e(k)}</dt><dd class="{e(k.split()[0].lower())}">{v}</dd>'
                      for k, v in items) + "</dl>")


def table(headers: Sequence[str], rows: Iterable[str], *, cls: str = "",
          empty: str = "Nothing here yet.") -> str:
    """A table in its own horizontally scrolling box; ``rows`` are ``<tr>`` strings."""
    body = "".join(rows)
    if not body:
        return f'<p class="muted empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return (f'<div class="scroll"><table class="{e(cls)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def when(ts: float | None) -> str:
    """A ``<time>`` element (server-local text; the page's script shows browser-local time)."""
    if ts is None:
        return '<span class="muted">&ndash;</span>'
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    return f'<time datetime="{iso}" data-ts="{ts:.3f}">{text}</time>'


def duration(seconds: float | None) -> str:
    """``1.25 s``, ``3 min 4 s``, ``2 h 5 min``; an en dash when unknown."""
    if seconds is None or seconds < 0:
        return "\u2013"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def badge(value: str) -> str:
    """A coloured label for a state, status or priority (CSS class ``b-<value>``)."""
    token = "".join(c if c.isalnum() else "-" for c in value)
    return f'<span class="badge b-{e(token)}">{e(value)}</span>'


def job_link(job: dict[str, Any]) -> str:
    return f'<a href="/console/jobs/{path_url(job["id"])}">{e(job["name"])}</a>'


def jobs_table(jobs: Sequence[dict[str, Any]], *, pipeline_column: bool = True,
               empty: str = "No jobs.") -> str:
    """Jobs as rows that the page's script updates from ``/v1/events``."""
    headers = ["Job", "State", "Status", *(["Pipeline"] if pipeline_column else []),
               "Priority", "Created", "Ran for", "Id"]
    rows = []
    for job in jobs:
        ran = None
        if job.get("started") is not None:
            ran = (job.get("stopped") or time.time()) - job["started"]
        pipeline = (f'<td><a href="/console/pipelines/{path_url(job["pipeline_id"])}">'
                    f'{e(job["pipeline"])}</a></td>' if pipeline_column else "")
        rows.append(
            f'<tr data-job="{e(job["id"])}"><td>{job_link(job)}</td>'
            f'<td class="state">{badge(job["state"])}</td>'
            f'<td class="status">{badge(job["status"])}</td>{pipeline}'
            f'<td>{badge(job["priority"])}</td><td>{when(job["created"])}</td>'
            f'<td class="ran">{e(duration(ran))}</td>'
            f'<td><code title="{e(job["id"])}">{e(job["id"][:8])}</code></td></tr>')
    return table(headers, rows, cls="jobs", empty=empty)


def path_url(value: str) -> str:
    """``value`` quoted for a URL path (``/`` kept, as in result file paths)."""
    return urllib.parse.quote(value, safe="/")


def query(**params: Any) -> str:
    """``?a=1&b=2`` of the parameters that are not ``None`` or empty."""
    kept = {k: v for k, v in params.items() if v is not None and v != ""}
    return "?" + urllib.parse.urlencode(kept) if kept else ""

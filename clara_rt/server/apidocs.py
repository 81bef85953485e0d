"""``/docs``: the API reference rendered on the server from its OpenAPI schema.

Served as one self-contained HTML page (no JavaScript, no CDN), so it works on an offline edge
box; the machine-readable schema is ``/openapi.json``.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_api_docs"]

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc}
.op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
.GET{color:#0a6}.POST{color:#06c}.DELETE{color:#c22}.PATCH{color:#a60}.PUT{color:#a60}
code{font-family:ui-monospace,monospace;overflow-wrap:anywhere}table{border-collapse:collapse}
td,th{text-align:left;padding:.1rem .6rem .1rem 0;vertical-align:top}.lock{color:#a60}
p{margin:.3rem 0}
"""


def render_api_docs(schema: dict[str, Any], *, token_required: bool) -> str:
    """HTML for ``schema`` (an OpenAPI 3 document), grouped by tag."""
    info = schema.get("info", {})
    groups: dict[str, list[str]] = {}
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            tag = (op.get("tags") or ["other"])[0]
            groups.setdefault(tag, []).append(_operation(path, method.upper(), op,
                                                         token_required))
    e = html.escape
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'>"
             f"<title>{e(info.get('title', 'API'))}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{e(info.get('title', 'API'))} <small>{e(info.get('version', ''))}</small>"
             f"</h1><p>{e(info.get('description', ''))}</p>",
             "<p>Machine-readable schema: <a href='/openapi.json'>/openapi.json</a>. "
             + ("Writes (<span class=lock>&#128274;</span>) need "
                "<code>Authorization: Bearer &lt;token&gt;</code>." if token_required
                else "This server accepts writes without a token.") + "</p>"]
    for tag, ops in groups.items():
        parts.append(f"<h2>{e(tag)}</h2>")
        parts.extend(ops)
    parts.append("</body></html>")
    return "".join(parts)


def _operation(path: str, method: str, op: dict[str, Any], token_required: bool) -> str:
    e = html.escape
    lock = " <span class=lock title='needs the token'>&#128274;</span>" if (
        token_required and op.get("security")) else ""
    out = [f"<div class=op><span class='m {method}'>{method}</span> <code>{e(path)}</code>"
           f"{lock}"]
    text = op.get("description") or op.get("summary") or ""
    if text:
        out.append(f"<p>{e(text)}</p>")
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p.get('in', ''))}</td>"
            f"<td>{_type(p.get('schema', {}))}</td>"
            f"<td>{'required' if p.get('required') else ''}</td></tr>" for p in params)
        out.append(f"<table>{rows}</table>")
    body = op.get("requestBody", {}).get("content", {})
    if body:
        out.append("<p>Body: " + ", ".join(f"<code>{e(t)}</code>" for t in body) + "</p>")
    codes = ", ".join(f"{e(code)} {e(r.get('description', ''))}"
                      for code, r in op.get("responses", {}).items())
    out.append(f"<p>Answers: {codes}</p></div>")
    return "".join(out)


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return html.escape(" | ".join(map(str, schema["enum"])))
    return html.escape(str(schema.get("type", "")))

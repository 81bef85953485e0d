"""Draw a pipeline definition as Graphviz DOT or Mermaid text.

Nodes are the operators, plus one ``payload`` node for the job's input folder when some input
has no ``from``; edges carry the port they move (``output name → input path``). Services are
drawn as dashed nodes attached to the operators that use them.
"""

from __future__ import annotations

import re

from clara_rt.definition.schema import OperatorDef, PipelineDefinition

__all__ = ["to_dot", "to_mermaid"]

_PAYLOAD = "payload"


def to_dot(definition: PipelineDefinition) -> str:
    """Return a Graphviz ``digraph`` of ``definition`` (render with ``dot -Tpng``)."""
    lines = [f"digraph {_quote(definition.name)} {{", "  rankdir=LR;",
             "  node [shape=box, style=rounded, fontname=Helvetica];"]
    if _has_payload(definition):
        lines.append(f'  {_quote(_PAYLOAD)} [shape=folder, label="job input"];')
    for op in definition.operators:
        lines.append(f"  {_quote(op.name)} [label={_quote(_label(op))}];")
        for service in op.services:
            sid = f"{op.name}/{service.name}"
            lines.append(f"  {_quote(sid)} [shape=component, style=dashed, "
                         f"label={_quote('service ' + service.name)}];")
            lines.append(f"  {_quote(op.name)} -> {_quote(sid)} [style=dashed, arrowhead=none];")
    for src, dst, label in _edges(definition):
        lines.append(f"  {_quote(src)} -> {_quote(dst)} [label={_quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(definition: PipelineDefinition) -> str:
    """Return a Mermaid ``flowchart`` of ``definition`` (renders in GitHub Markdown)."""
    ids = {op.name: f"op{i}" for i, op in enumerate(definition.operators)}
    ids[_PAYLOAD] = "payload"
    lines = ["flowchart LR"]
    if _has_payload(definition):
        lines.append('  payload[("job input")]')
    for op in definition.operators:
        lines.append(f'  {ids[op.name]}["{_mermaid_text(_label(op))}"]')
        for k, service in enumerate(op.services):
            sid = f"{ids[op.name]}s{k}"
            lines.append(f'  {sid}{{{{"service {_mermaid_text(service.name)}"}}}}')
            lines.append(f"  {ids[op.name]} -.- {sid}")
    for src, dst, label in _edges(definition):
        lines.append(f'  {ids[src]} -->|"{_mermaid_text(label)}"| {ids[dst]}')
    return "\n".join(lines) + "\n"


def _edges(definition: PipelineDefinition) -> list[tuple[str, str, str]]:
    edges = []
    for op in definition.operators:
        for entry in op.inputs:
            src = entry.from_ or _PAYLOAD
            what = entry.name if entry.from_ else (entry.name or "input")
            label = f"{what or 'output'} → {entry.path}" if entry.path else (what or "output")
            edges.append((src, op.name, label))
    return edges


def _has_payload(definition: PipelineDefinition) -> bool:
    return any(entry.from_ is None for op in definition.operators for entry in op.inputs)


def _label(op: OperatorDef) -> str:
    image = op.container.image if op.container is not None else None
    if op.clara_rt is not None and op.clara_rt.operator:
        return f"{op.name}\n{op.clara_rt.operator}"
    return f"{op.name}\n{image}" if image else op.name


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _mermaid_text(text: str) -> str:
    return re.sub(r'["<>]', "'", text).replace("\n", "<br/>")

"""A pipeline's operator graph as inline SVG, laid out on the server (no graphviz at run time).

Layered layout, top to bottom (Sugiyama's scheme, kept small):

1. **Layers.** An operator's layer is its depth: 0 without upstream operators, else one more
   than its deepest upstream.
2. **Long edges.** An edge that skips layers gets a virtual point in every layer it crosses, so
   it runs through the gaps between boxes instead of through them.
3. **Order.** Layer 0 starts in the definition's order; then layers are sorted by the mean
   position of their members' upstreams (downward sweeps) or downstreams (upward sweeps), a
   few times over (barycentre heuristic: enough for the fan-out / fan-in shape of imaging
   pipelines), each layer centred.
4. **Drawing.** Boxes with the operator's name and its outputs (or its state in a job); edges are
   cubic curves leaving the bottom of a box and entering the top of the next, their ends spread
   along the box edge, with an arrow head.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

__all__ = ["Layout", "layout", "pipeline_svg"]

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 176, 46, 26, 58, 12
LANE_W = 12  # width a virtual point of a long edge takes in its layer
_CHARS = 22  # what fits in a box at the console's font size
_SPREAD = 12  # distance between the ends of edges on one box side


@dataclass
class _Node:
    key: str
    layer: int
    real: bool
    ups: list[str] = field(default_factory=list)
    x: float = 0.0  # left edge

    @property
    def width(self) -> float:
        return BOX_W if self.real else LANE_W


@dataclass
class Layout:
    """Where everything goes: ``boxes`` name -> (x, y) of the top-left corner; ``edges``
    (source, target, [(x, y) of each virtual point's centre, top to bottom])."""

    width: float
    height: float
    boxes: dict[str, tuple[float, float]]
    edges: list[tuple[str, str, list[tuple[float, float]]]]
    rows: list[list[str]]


def layout(operators: Sequence[dict[str, Any]]) -> Layout:
    """Lay out ``operators`` (``[{name, inputs: [upstream names]}]``)."""
    names = [str(op["name"]) for op in operators]
    upstream = {str(op["name"]): list(dict.fromkeys(u for u in op.get("inputs") or []
                                                    if u in names)) for op in operators}
    depth = _depths(names, upstream)
    nodes = {name: _Node(name, depth[name], True) for name in names}
    chains: list[tuple[str, str, list[str]]] = []
    for name in names:
        for up in upstream[name]:
            previous, lanes = up, []
            for layer in range(depth[up] + 1, depth[name]):
                lane = f"\0{up}\0{name}\0{layer}"
                nodes[lane] = _Node(lane, layer, False, [previous])
                previous = lane
                lanes.append(lane)
            nodes[name].ups.append(previous)
            chains.append((up, name, lanes))
    rows: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in nodes.values():
        rows[node.layer].append(node.key)
    width = max((_row_width([nodes[k] for k in row]) for row in rows), default=0.0) + 2 * PAD
    _order(rows, nodes, width)
    boxes = {n: (nodes[n].x, _top(depth[n])) for n in names}
    edges = [(up, name, [(_centre(nodes[k]), _top(nodes[k].layer) + BOX_H / 2) for k in lanes])
             for up, name, lanes in chains]
    height = 2 * PAD + len(rows) * BOX_H + max(len(rows) - 1, 0) * GAP_Y
    return Layout(width, height, boxes, edges, [[k for k in row if nodes[k].real]
                                                for row in rows])


def pipeline_svg(operators: Sequence[dict[str, Any]],
                 states: dict[str, str] | None = None) -> str:
    """The graph of ``operators`` (``[{name, description, inputs, outputs}]``) as an ``<svg>``.

    Args:
        operators: The pipeline record's operators; ``inputs`` name upstream operators.
        states: Operator name -> state (``succeeded``, ``running``...), shown in each box and
            as its CSS class ``s-<state>``; without it each box lists its outputs.
    """
    if not operators:
        return '<p class="muted">This pipeline has no operators.</p>'
    plan = layout(operators)
    exits, entries = _ends(plan)
    edges = [_edge(source, target, (exits[(source, target)], plan.boxes[source][1] + BOX_H),
                   lanes, (entries[(source, target)], plan.boxes[target][1] - 1))
             for source, target, lanes in plan.edges]
    boxes = [_box(op, *plan.boxes[str(op["name"])], states) for op in operators]
    w, h = round(plan.width), round(plan.height)
    label = html.escape(f"operator graph: {len(boxes)} operators, {len(edges)} connections")
    return (f'<svg class="graph" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{label}"><defs><marker id="clara-arrow" viewBox="0 0 10 10" '
            'refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
            '<path d="M0,0L10,5L0,10z"/></marker></defs>' + "".join(edges) + "".join(boxes)
            + "</svg>")


# --- layout steps ------------------------------------------------------------------------------


def _depths(names: list[str], upstream: dict[str, list[str]]) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(name: str, seen: frozenset[str]) -> int:
        if name not in depth:  # ``seen`` only guards against cycles the parser refuses anyway
            ups = [u for u in upstream[name] if u not in seen]
            depth[name] = 1 + max((visit(u, seen | {name}) for u in ups), default=-1)
        return depth[name]

    for name in names:
        visit(name, frozenset())
    return depth


def _order(rows: list[list[str]], nodes: dict[str, _Node], width: float) -> None:
    downs: dict[str, list[str]] = {key: [] for key in nodes}
    for node in nodes.values():
        for up in node.ups:
            downs[up].append(node.key)

    def sort(row: list[str], links: dict[str, list[str]]) -> None:
        row.sort(key=lambda k: sum(_centre(nodes[n]) for n in links[k]) / len(links[k])
                 if links[k] else _centre(nodes[k]))
        _place([nodes[k] for k in row], width)

    ups = {key: node.ups for key, node in nodes.items()}
    for row in rows:
        _place([nodes[k] for k in row], width)
    for _ in range(2):
        for row in rows[1:]:
            sort(row, ups)
        for row in reversed(rows[:-1]):
            sort(row, downs)
    for row in rows[1:]:
        sort(row, ups)


def _row_width(row: list[_Node]) -> float:
    return sum(n.width for n in row) + sum(_gap(a, b) for a, b in pairwise(row))


def _place(row: list[_Node], width: float) -> None:
    x = (width - _row_width(row)) / 2
    for index, node in enumerate(row):
        if index:
            x += _gap(row[index - 1], node)
        node.x = x
        x += node.width


def _gap(a: _Node, b: _Node) -> float:
    return GAP_X if a.real and b.real else GAP_X / 2


def _centre(node: _Node) -> float:
    return node.x + node.width / 2


def _top(layer: int) -> float:
    return PAD + layer * (BOX_H + GAP_Y)


def _ends(plan: Layout) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """x of each edge's start (under its source) and end (over its target), spread apart and
    ordered by where the edge goes to or comes from, so that edges do not cross at a box."""
    def toward(edge: tuple[str, str, list[tuple[float, float]]], end: int) -> float:
        source, target, lanes = edge
        if lanes:
            return lanes[0][0] if end == 1 else lanes[-1][0]
        return plan.boxes[target if end == 1 else source][0]

    exits: dict[tuple[str, str], float] = {}
    entries: dict[tuple[str, str], float] = {}
    for side, which, found in ((0, 1, exits), (1, 0, entries)):
        groups: dict[str, list[tuple[str, str, list[tuple[float, float]]]]] = {}
        for edge in plan.edges:
            groups.setdefault(edge[0] if side == 0 else edge[1], []).append(edge)
        for name, group in groups.items():
            group.sort(key=lambda edge: toward(edge, which))
            centre = plan.boxes[name][0] + BOX_W / 2
            for index, edge in enumerate(group):
                found[(edge[0], edge[1])] = centre + (index - (len(group) - 1) / 2) * _SPREAD
    return exits, entries


# --- drawing -----------------------------------------------------------------------------------


def _edge(source: str, target: str, start: tuple[float, float],
          lanes: list[tuple[float, float]], end: tuple[float, float]) -> str:
    """A path from ``start`` through the edge's virtual points to ``end``: curves between
    layers, straight down through each layer it crosses."""
    (x0, y0), d = start, f"M{start[0]:.1f},{start[1]:.1f}"
    for x, centre in lanes:
        top, bottom = centre - BOX_H / 2, centre + BOX_H / 2
        d += _curve(x0, y0, x, top) + f" L{x:.1f},{bottom:.1f}"
        x0, y0 = x, bottom
    d += _curve(x0, y0, *end)
    e = html.escape
    return (f'<path class="edge" data-from="{e(source)}" data-to="{e(target)}" d="{d}" '
            'marker-end="url(#clara-arrow)"/>')


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = max((y2 - y1) / 2, 10.0)
    return f" C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"


def _box(op: dict[str, Any], x: float, y: float, states: dict[str, str] | None) -> str:
    e = html.escape
    name = str(op["name"])
    if states is not None:
        state = states.get(name) or "pending"
        sub, css = state, f"op s-{_token(state)}"
    else:
        outputs = [str(o) for o in op.get("outputs") or [] if o]
        sub, css = ("\u2192 " + ", ".join(outputs) if outputs else "no outputs"), "op"
    tip = name + (f": {op['description']}" if op.get("description") else "")
    cx = x + BOX_W / 2
    return (f'<g class="{css}" data-op="{e(name)}"><title>{e(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text class="name" x="{cx:.1f}" y="{y + 19:.1f}">{e(_fit(name))}</text>'
            f'<text class="sub" x="{cx:.1f}" y="{y + 36:.1f}">{e(_fit(sub))}</text></g>')


def _fit(text: str) -> str:
    return text if len(text) <= _CHARS else text[: _CHARS - 1] + "\u2026"


def _token(state: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in state)

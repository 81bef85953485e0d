"""The console's operator graph layout and page markup, without a server."""

from __future__ import annotations

import time
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from clara_rt.definition.schema import parse_definition
from clara_rt.server.console.graph import BOX_W, layout, pipeline_svg
from clara_rt.server.console.job_page import job_page, viewer_page
from clara_rt.server.console.markup import jobs_table, page, query
from clara_rt.server.console.pages import jobs_page, pipelines_page
from clara_rt.server.pipelines import _operators

ROOT = Path(__file__).resolve().parents[2]
EVIL = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def lung_ops() -> list[dict[str, Any]]:
    path = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
    return _operators(parse_definition(str(path), text=path.read_text(), environ={},
                                       allow_undefined=True))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(markup: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(markup)
    return [attrs for tag, attrs in parser.tags if tag == name]


def test_layers_follow_the_depth_of_each_operator(lung_ops: list[dict[str, Any]]) -> None:
    plan = layout(lung_ops)
    assert [sorted(row) for row in plan.rows] == [
        ["dicom-reader"], ["lung-seg"], ["largest", "render", "volumes"],
        ["nifti-writer", "seg-writer"]]
    ys = {name: y for name, (_, y) in plan.boxes.items()}
    assert ys["dicom-reader"] < ys["lung-seg"] < ys["largest"] < ys["seg-writer"]


def test_long_edges_go_around_the_boxes(lung_ops: list[dict[str, Any]]) -> None:
    plan = layout(lung_ops)
    long_edges = [(s, t, lanes) for s, t, lanes in plan.edges if lanes]
    assert {(s, t) for s, t, _ in long_edges} == {
        ("dicom-reader", "render"), ("dicom-reader", "volumes"), ("dicom-reader", "seg-writer"),
        ("dicom-reader", "nifti-writer")}
    for _, _, lanes in long_edges:
        for x, y in lanes:
            for bx, by in plan.boxes.values():
                assert not (bx <= x <= bx + BOX_W and by <= y <= by + 46), (x, y)
    for row in plan.rows:  # boxes of a layer do not overlap
        xs = sorted(plan.boxes[name][0] for name in row)
        assert all(b - a > BOX_W for a, b in pairwise(xs))


def test_svg_has_a_box_per_operator_and_a_path_per_connection(lung_ops: list[dict[str, Any]]
                                                              ) -> None:
    svg = pipeline_svg(lung_ops)
    boxes = [a["data-op"] for a in tags(svg, "g")]
    assert sorted(boxes) == sorted(op["name"] for op in lung_ops)
    edges = {(a["data-from"], a["data-to"]) for a in tags(svg, "path") if a.get("class") == "edge"}
    assert len(edges) == 10 and ("largest", "seg-writer") in edges
    assert "xmlns" not in svg and "http" not in svg  # inline, nothing fetched
    states = pipeline_svg(lung_ops, {"dicom-reader": "succeeded", "lung-seg": "running"})
    classes = {a["data-op"]: a["class"] for a in tags(states, "g")}
    assert classes["dicom-reader"] == "op s-succeeded"
    assert classes["lung-seg"] == "op s-running" and classes["render"] == "op s-pending"


def test_operator_names_and_descriptions_are_escaped() -> None:
    svg = pipeline_svg([{"name": EVIL, "description": EVIL, "inputs": [], "outputs": [EVIL]}])
    assert "<img" not in svg and "&lt;img" in svg
    assert pipeline_svg([]) == '<p class="muted">This pipeline has no operators.</p>'


def _job(**fields: Any) -> dict[str, Any]:
    now = time.time()
    job = {"id": "a" * 32, "name": EVIL, "pipeline": EVIL, "pipeline_id": "p" * 32,
           "payloads": ["b" * 32], "priority": "high", "state": "stopped", "status": "faulted",
           "queued": False, "error": EVIL, "created": now - 5, "started": now - 4,
           "stopped": now - 1, "timeout": None, "variables": {}, "attempts": 1,
           "operators": [{"name": "first", "state": "failed", "start_ms": 0.5,
                          "duration_ms": 20.0},
                         {"name": "second", "state": "not_run", "start_ms": None,
                          "duration_ms": None}],
           "results_deleted": None, "history": [{"time": now, "state": "stopped",
                                                 "status": "faulted", "note": EVIL}]}
    job.update(fields)
    return job


def test_pages_escape_every_record_value() -> None:
    job = _job()
    ops = [{"name": "first", "description": EVIL, "inputs": [], "outputs": []},
           {"name": "second", "description": "", "inputs": ["first"], "outputs": []}]
    markup = [
        job_page(job, ops, [(EVIL, 3)], token_required=True),
        jobs_page([job], {"limit": 50, "state": EVIL}, [EVIL], older=None, token_required=False),
        pipelines_page([{"id": EVIL, "name": EVIL, "operators": ops, "created": 0.0, "updated": 0.0,
                         "jobs": {"pending": 0, "running": 0, "stopped": 1},
                         "last_job": job}], token_required=False),
        page(EVIL, jobs_table([job])),
    ]
    for html in markup:
        assert "<img" not in html, html[:2000]
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_job_page_timeline_has_a_bar_per_operator_that_ran() -> None:
    html = job_page(_job(), [{"name": "first", "inputs": []}, {"name": "second",
                                                                "inputs": ["first"]}],
                    [], token_required=True)
    bars = [a for a in tags(html, "rect") if "tl-bar" in (a.get("class") or "")]
    assert len(bars) == 1 and bars[0]["class"] == "tl-bar s-failed"
    assert float(bars[0]["width"] or 0) == pytest.approx(1000 * 20 / 20.5, rel=1e-3)
    body = tags(html, "body")[0]
    assert body["data-token"] == "required" and body["data-job"] == "a" * 32
    cancel = next(a for a in tags(html, "button") if a.get("id") == "cancel")
    assert "hidden" in cancel  # a stopped job cannot be cancelled
    running = job_page(_job(state="running", stopped=None, operators=[]),
                       [{"name": "first", "inputs": []}], None, token_required=False)
    assert "hidden" not in next(a for a in tags(running, "button") if a.get("id") == "cancel")
    assert "deleted by the retention policy" in running


def test_viewer_page_links_each_view_with_its_slider() -> None:
    info = {"shape": (24, 64, 48), "spacing": (2.5, 0.7, 0.7), "source": "input DICOM series",
            "modality": "CT", "window": "soft", "auto": (0.0, 100.0),
            "labels": [("seg/mask.nii.gz", [1, 2], [(255, 0, 0), (0, 200, 0)])]}
    html = viewer_page(_job(), info, token_required=False)
    images = {a["alt"]: a["src"] for a in tags(html, "img")}
    assert images["axial view"] == ("/console/jobs/" + "a" * 32 + "/view.png?plane=axial&index="
                                    "12&window=soft&overlay=1&labels=seg/mask.nii.gz")
    assert "plane=mip" in (images["mip view"] or "")
    sliders = {a["aria-label"]: a["max"] for a in tags(html, "input") if a["type"] == "range"}
    assert sliders == {"axial slice": "23", "coronal slice": "63", "sagittal slice": "47"}
    assert [a["value"] for a in tags(html, "option") if "selected" in a] == [
        "soft", "seg/mask.nii.gz"]


def test_query_keeps_only_given_parameters() -> None:
    assert query(state="stopped", status=None, pipeline="", limit=50) == "?state=stopped&limit=50"
    assert query() == ""
    assert query(pipeline="a b&c") == "?pipeline=a+b%26c"

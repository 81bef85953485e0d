"""The web console in a real headless Chromium (Playwright) against a real ``clara-rt serve``.

The server holds the ct-lung-seg pipeline with a finished job on a generated chest CT series and
a slow job (30 s) that a test cancels from the job page. Every page is loaded, its content
checked, and nothing may be fetched from anywhere but the server. Screenshots of the job page and
the viewer go to ``test-artifacts/console/`` (ignored by git).
"""

from __future__ import annotations

import html
import http.client
import importlib.util
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_peer
from tests.data.chest_dicom import write_chest_series
from tests.integration.test_server_api import folder_pipeline
from tests.server_process import ServerProcess

pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "console-token"
LUNG_OPS = {"dicom-reader", "lung-seg", "largest", "seg-writer", "nifti-writer", "render",
            "volumes"}
# Draws an <img> on a canvas: size, a checksum of its pixels, and how many pixels are red.
PIXELS = """img => {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d"); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, red = 0;
  for (let i = 0; i < d.length; i += 4) {
    sum = (sum * 31 + d[i] + 3 * d[i + 1] + 7 * d[i + 2]) % 1000000007;
    if (d[i] > d[i + 1] + 60) red++;
  }
  return {w: c.width, h: c.height, sum, red};
}"""


@dataclass
class Console:
    server: ServerProcess
    lungs: dict[str, Any]
    slow: dict[str, Any]

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    need_peer(importlib.util.find_spec("playwright") is not None and Path(CHROMIUM).is_file(),
              "Chromium + Playwright")
    root = tmp_path_factory.mktemp("console")
    write_chest_series(root / "chest", shape=(24, 64, 64))
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not an image")
    with ServerProcess(root / "data", "--workers", "2", token=TOKEN) as server:
        client = server.client()
        client.create_pipeline(ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml")
        time.sleep(1.1)  # the replacement's time differs from the registration's in seconds
        client.create_pipeline(ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml", replace=True)
        client.create_pipeline(folder_pipeline("slow-console", seconds=30))
        chest = client.create_payload(root / "chest", name="chest")
        lungs = client.create_job("ct-lung-seg", [chest["id"]], name="lungs", priority="high",
                                  start=True)
        lungs = client.wait_job(lungs["id"], timeout=120)
        assert lungs["status"] == "healthy", lungs
        notes = client.create_payload(root / "notes")
        slow = client.create_job("slow-console", [notes["id"]], name="slow", start=True)
        yield Console(server, lungs, slow)


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def problems() -> list[str]:
    """What went wrong in :func:`page` (a test expecting an error answer removes it)."""
    return []


@pytest.fixture
def page(browser: Any, console: Console, problems: list[str]) -> Iterator[Any]:
    """A page at 1280x800 that fails the test on script errors, console errors (failed
    requests) or requests to other hosts."""
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  base_url=console.url)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    tab.on("console", lambda msg: problems.append(f"console: {msg.text}")
           if msg.type == "error" else None)
    tab.on("request", lambda req: None if req.url.startswith((console.url, "data:"))
           else problems.append(f"request elsewhere: {req.url}"))
    yield tab
    context.close()
    assert not problems, problems


def visit(tab: Any, path: str) -> None:
    tab.goto(path)
    tab.wait_for_selector("body[data-ready]")


def raw(console: Console, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", console.server.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        conn.close()


# --- pipelines ---------------------------------------------------------------------------------


def test_pipelines_page_and_the_pipeline_graph(page: Any, console: Console) -> None:
    visit(page, "/")
    assert page.url == f"{console.url}/console"
    rows = {row.get_attribute("data-pipeline"): row.inner_text()
            for row in page.locator("table.pipelines tbody tr").all()}
    text = "\n".join(rows.values())
    assert "ct-lung-seg" in text and "slow-console" in text
    lung_row = page.locator("table.pipelines tr", has_text="ct-lung-seg")
    assert lung_row.locator("td.num").all_inner_texts() == ["7", "0", "0", "1"]
    assert "lungs" in lung_row.inner_text()
    # Issue 17.8: "Registered" is the first registration, "Replaced" the last replacement.
    records = {p["name"]: p for p in console.server.client().list_pipelines()}
    lung = records["ct-lung-seg"]
    assert lung["updated"] >= lung["created"] + 1
    registered = lung_row.locator("td.registered time").get_attribute("data-ts")
    replaced = lung_row.locator("td.replaced time").get_attribute("data-ts")
    assert registered is not None and abs(float(registered) - lung["created"]) < 1e-3
    assert replaced is not None and abs(float(replaced) - lung["updated"]) < 1e-3
    slow_row = page.locator("table.pipelines tr", has_text="slow-console")
    assert slow_row.locator("td.replaced").inner_text() == "never"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "pipelines.png"), full_page=True)
    page.get_by_role("link", name="ct-lung-seg").click()
    page.wait_for_selector("svg.graph")
    boxes = page.locator("svg.graph g.op")
    assert {boxes.nth(i).get_attribute("data-op") for i in range(boxes.count())} == LUNG_OPS
    assert set(page.locator("svg.graph g.op text.name").all_text_contents()) == LUNG_OPS
    assert page.locator("svg.graph path.edge").count() == 10
    assert page.locator("svg.graph path.edge[data-from=largest][data-to=seg-writer]").count() == 1
    assert page.locator(f"table.jobs tr[data-job='{console.lungs['id']}']").count() == 1
    assert page.locator("table.ops tbody tr").count() == 7


# --- jobs ---------------------------------------------------------------------------------------


def test_jobs_list_filters_and_pages(page: Any, console: Console) -> None:
    lungs, slow = console.lungs["id"], console.slow["id"]

    def shown() -> list[str | None]:
        return [r.get_attribute("data-job") for r in page.locator("table.jobs tbody tr").all()]

    visit(page, "/console/jobs")
    assert shown() == [slow, lungs]  # newest first
    page.select_option("select[name=state]", "stopped")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/console/jobs?state=stopped*")
    assert shown() == [lungs]
    visit(page, "/console/jobs?priority=high")
    assert shown() == [lungs]
    visit(page, "/console/jobs")
    page.select_option("select[name=pipeline]", "slow-console")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("body[data-ready]")
    assert shown() == [slow]
    visit(page, "/console/jobs?limit=1")
    assert shown() == [slow]
    page.click("a[rel=next]")
    page.wait_for_selector("body[data-ready]")
    assert shown() == [lungs] and page.locator("a[rel=next]").count() == 0
    page.get_by_role("link", name="Newest").click()
    page.wait_for_selector("body[data-ready]")
    assert shown() == [slow]


def test_job_page_shows_the_timeline_logs_and_results(page: Any, console: Console) -> None:
    job = console.lungs["id"]
    visit(page, f"/console/jobs/{job}")
    assert page.inner_text("#job-facts dd.state") == "stopped"
    assert page.inner_text("#job-facts dd.status") == "healthy"
    assert page.inner_text("#job-facts dd.priority") == "high"
    assert page.locator("#cancel").is_hidden()
    assert page.locator("#open-viewer").is_visible()
    bars = page.locator(".timeline rect.tl-bar")
    assert bars.count() == 7
    assert {r.get_attribute("data-state") for r in page.locator(".tl-row[data-op]").all()} == {
        "succeeded"}
    for i in range(7):
        box = bars.nth(i).bounding_box()
        assert box is not None and box["width"] >= 1 and box["height"] > 0
    assert {b.get_attribute("data-op") for b in page.locator("svg.graph g.op.s-succeeded").all()
            } == LUNG_OPS
    page.click("button.show-log[data-op=dicom-reader]")
    log = page.locator(".log[data-op=dicom-reader] pre.log-text")
    log.wait_for(state="visible")
    page.wait_for_function("() => !document.querySelector("
                           "'.log[data-op=dicom-reader] pre').textContent.startsWith('Loading')")
    assert "operator 'dicom-reader' started" in log.inner_text()
    assert "finished in" in log.inner_text()
    links = {a.inner_text(): a.get_attribute("href")
             for a in page.locator("table.results a").all()}
    assert links["seg-writer/seg.dcm"] == f"/v1/jobs/{job}/results/files/seg-writer/seg.dcm"
    assert "nifti-writer/path.nii.gz" in links and "volumes/stats.json" in links
    stats = page.request.get(links["volumes/stats.json"])
    assert stats.ok and "left lung" in stats.text()
    archive = page.locator(".downloads a.button").get_attribute("href")
    assert archive == f"/v1/jobs/{job}/results/archive"
    assert page.request.get(archive).body()[257:262] == b"ustar"  # a tar stream
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job.png"), full_page=True)


def test_cancel_updates_the_job_page_and_the_jobs_list_live(browser: Any,
                                                            console: Console) -> None:
    job = console.slow["id"]
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  base_url=console.url)
    context.set_default_timeout(15_000)
    try:
        listing, detail, pipelines = context.new_page(), context.new_page(), context.new_page()
        visit(listing, "/console/jobs")
        visit(detail, f"/console/jobs/{job}")
        visit(pipelines, "/console/pipelines")
        counts = pipelines.locator("table.pipelines tr", has_text="slow-console").locator("td.num")
        assert counts.all_inner_texts() == ["2", "0", "1", "0"]  # operators, queued, running, done
        for tab in (listing, detail, pipelines):
            tab.wait_for_selector("#live:not([hidden])")  # the event stream is open
            tab.evaluate("window.stillTheSamePage = true")
        assert detail.inner_text("#job-facts dd.state") == "running"
        row = listing.locator(f"tr[data-job='{job}']")
        assert row.locator("td.state").inner_text() == "running"
        dialogs: list[str] = []

        def answer(dialog: Any) -> None:
            dialogs.append(dialog.type)
            if dialog.type == "prompt":
                dialog.accept(TOKEN)
            else:
                dialog.accept()

        detail.on("dialog", answer)
        detail.evaluate("localStorage.setItem('clara-rt-token', 'a-wrong-token')")
        detail.click("#cancel")
        detail.wait_for_function("() => document.querySelector('#job-facts dd.status')"
                                 ".textContent === 'canceled'")
        assert detail.inner_text("#job-facts dd.state") == "stopped"
        assert dialogs == ["confirm", "prompt"]  # the wrong token was refused, asked again
        assert detail.evaluate("localStorage.getItem('clara-rt-token')") == TOKEN
        assert detail.locator("#cancel").is_hidden()
        listing.wait_for_function(
            f"() => document.querySelector(\"tr[data-job='{job}'] td.status\")"
            ".textContent === 'canceled'")
        assert row.locator("td.state").inner_text() == "stopped"
        pipelines.wait_for_function(
            "() => Array.from(document.querySelectorAll('table.pipelines tr')).some(r => "
            "r.textContent.includes('slow-console') && Array.from(r.querySelectorAll('td.num'))"
            ".map(c => c.textContent).join() === '2,0,0,1')")
        assert "canceled" in pipelines.locator("table.pipelines tr",
                                               has_text="slow-console").inner_text()
        for tab in (listing, detail, pipelines):
            assert tab.evaluate("window.stillTheSamePage") is True  # updated, not reloaded
        detail.wait_for_function("() => document.querySelector('#live-parts section')"
                                 ".dataset.state === 'stopped'")
        assert detail.locator("#open-viewer").is_hidden()  # cancelled, no results: no viewer
        visit(detail, f"/console/jobs/{job}")
        assert detail.locator("#open-viewer").is_hidden()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        detail.screenshot(path=str(ARTIFACTS / "job-cancelled.png"), full_page=True)
    finally:
        context.close()
    assert console.server.client().get_job(job)["status"] == "canceled"


# --- viewer -------------------------------------------------------------------------------------


def test_viewer_draws_every_plane_and_follows_its_controls(page: Any, console: Console) -> None:
    visit(page, f"/console/jobs/{console.lungs['id']}/viewer")

    def pixels(plane: str, expect_in_src: str = "") -> dict[str, int]:
        img = f"figure[data-plane={plane}] img"
        page.wait_for_function(
            "([sel, part]) => { const i = document.querySelector(sel); return i.complete && "
            "i.naturalWidth > 0 && i.src.includes(part); }", arg=[img, expect_in_src])
        result: dict[str, int] = page.locator(img).evaluate(PIXELS)
        return result

    views = {plane: pixels(plane) for plane in ("axial", "coronal", "sagittal", "mip")}
    assert (views["axial"]["w"], views["axial"]["h"]) == (64, 64)
    assert (views["coronal"]["w"], views["coronal"]["h"]) == (64, 86)  # 2.5 mm slices, 0.7 mm
    assert (views["sagittal"]["w"], views["sagittal"]["h"]) == (64, 86)
    assert views["axial"]["red"] > 0 and views["mip"]["red"] > 0  # the lung mask is overlaid
    assert page.input_value("select[name=labels]") == "nifti-writer/path.nii.gz"
    assert page.inner_text("figure[data-plane=axial] output") == "13 / 24"

    page.focus("figure[data-plane=axial] input[type=range]")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    moved = pixels("axial", "index=15")
    assert page.inner_text("figure[data-plane=axial] output") == "16 / 24"
    assert moved["sum"] != views["axial"]["sum"]

    page.select_option("select[name=window]", "bone")
    bone = pixels("axial", "window=bone")
    assert bone["sum"] != moved["sum"]
    assert page.input_value("input[name=ww]") == "1800"
    page.fill("input[name=ww]", "700")
    page.fill("input[name=wl]", "-300")
    page.dispatch_event("input[name=wl]", "change")
    custom = pixels("coronal", "wl=700%2C-300")
    assert page.input_value("select[name=window]") == "custom"
    assert custom["sum"] != views["coronal"]["sum"]

    page.select_option("select[name=labels]", "")
    plain = pixels("axial", "overlay=0")
    assert plain["red"] == 0
    page.select_option("select[name=labels]", "lung-seg/body.npy")
    body = pixels("axial", "labels=lung-seg%2Fbody.npy")
    assert body["red"] > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.select_option("select[name=labels]", "nifti-writer/path.nii.gz")
    page.select_option("select[name=window]", "lung")
    pixels("mip", "window=lung")
    page.screenshot(path=str(ARTIFACTS / "viewer.png"), full_page=True)


def test_issue_17_8_viewer_marks_segment_names_lung_window_and_patient_line(
        page: Any, console: Console) -> None:
    visit(page, f"/console/jobs/{console.lungs['id']}/viewer")
    # Orientation from the series' direction cosines (axial slices, head first, supine).
    marks = {plane: {m.get_attribute("data-side"): m.inner_text()
                     for m in page.locator(f"figure[data-plane={plane}] .mark").all()}
             for plane in ("axial", "coronal", "sagittal", "mip")}
    assert marks["axial"] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert marks["coronal"] == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert marks["sagittal"] == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
    assert marks["mip"] == marks["coronal"]
    img = page.locator("figure[data-plane=axial] img").bounding_box()
    left = page.locator("figure[data-plane=axial] .mark.left").bounding_box()
    assert img and left and img["x"] <= left["x"] < img["x"] + img["width"] / 4  # on the image
    # The legend names the segment as the SEG written from the same mask does.
    legend = page.locator(".legend[data-labels='nifti-writer/path.nii.gz']")
    assert legend.locator(".swatch").all_inner_texts() == ["Lung"]
    assert legend.locator(".swatch").get_attribute("title") == "label 1"
    page.select_option("select[name=labels]", "lung-seg/body.npy")
    body = page.locator(".legend[data-labels='lung-seg/body.npy'] .swatch")
    assert body.all_inner_texts() == ["1"]  # no SEG was written from the body mask
    # A lung segmentation of a CT opens in the lung window.
    assert page.input_value("select[name=window]") == "lung"
    assert (page.input_value("input[name=ww]"), page.input_value("input[name=wl]")) == (
        "1500", "-600")
    assert "window=lung" in (page.locator("figure[data-plane=axial] img").get_attribute("src")
                             or "")
    # Patient and study, with a switch that hides the identifiers (remembered).
    line = page.locator("#patient")
    assert "Patient Phantom Chest" in line.inner_text()
    assert "ID PHANTOM01" in line.inner_text() and "Study date 2024-01-02" in line.inner_text()
    color = "el => getComputedStyle(el).color"
    assert page.locator("#patient .phi").first.evaluate(color) != "rgba(0, 0, 0, 0)"
    page.check("#hide-ids")
    assert {p.evaluate(color) for p in page.locator("#patient .phi").all()} == {
        "rgba(0, 0, 0, 0)"}
    assert page.locator("#patient .fact").first.evaluate(color) != "rgba(0, 0, 0, 0)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-hidden-ids.png"), full_page=True)
    visit(page, f"/console/jobs/{console.lungs['id']}/viewer")
    assert page.is_checked("#hide-ids")
    page.uncheck("#hide-ids")
    page.screenshot(path=str(ARTIFACTS / "viewer-marks.png"), full_page=True)


def test_bad_views_answer_404_or_422_never_500(console: Console) -> None:
    lungs, slow = console.lungs["id"], console.slow["id"]
    for path, status, message in [
        (f"/console/jobs/{lungs}/view.png?plane=oblique", 422, "unknown plane 'oblique'"),
        (f"/console/jobs/{lungs}/view.png?plane=axial&index=24", 422, "outside"),
        (f"/console/jobs/{lungs}/view.png?index=two", 422, "whole number"),
        (f"/console/jobs/{lungs}/view.png?wl=0,40", 422, "positive"),
        (f"/console/jobs/{lungs}/view.png?window=liver", 422, "unknown window"),
        (f"/console/jobs/{lungs}/view.png?labels=nope.nii", 404, "segmentations: nifti-writer"),
        (f"/console/jobs/{slow}/view.png", 404, "nothing to view"),
        (f"/console/jobs/{'0' * 32}/view.png", 404, "no job"),
    ]:
        code, ctype, body = raw(console, path)
        assert (code, ctype) == (status, "application/json"), (path, body)
        assert message in json.loads(body)["detail"], (path, body)
    code, ctype, body = raw(console, f"/console/jobs/{lungs}/view.png?plane=sagittal&index=0")
    assert (code, ctype) == (200, "image/png") and body.startswith(b"\x89PNG")
    for path, status, message in [
        (f"/console/jobs/{slow}/viewer", 404, "nothing to view"),
        (f"/console/jobs/{'0' * 32}", 404, "no job"),
        ("/console/pipelines/nope", 404, "no pipeline"),
        ("/console/jobs?state=lost", 422, "unknown state 'lost'"),
        ("/console/jobs?limit=0", 422, "between 1 and 1000"),
    ]:
        code, ctype, body = raw(console, path)
        assert code == status and ctype.startswith("text/html"), (path, code)
        assert message in html.unescape(body.decode()), (path, body[:500])
    assert raw(console, "/console/static/nope.js")[0] == 404


def test_console_pages_stay_out_of_the_api_schema(console: Console) -> None:
    paths = json.loads(raw(console, "/openapi.json")[2])["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/console")]


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_page_draws_what_v1_monitor_answers(page: Any, console: Console,
                                                   problems: list[str]) -> None:
    status = raw(console, "/v1/monitor")[0]
    visit(page, "/console/metrics")
    if status == 404:
        page.wait_for_selector("#monitor-status:has-text('Monitoring not available')")
        problems[:] = [p for p in problems if "404" not in p]
    else:
        page.wait_for_selector("#monitor:not([hidden]) #host-facts div")
        assert "CPU" in page.inner_text("#host-facts")
        page.wait_for_function("() => !document.querySelector('#gpu-reason').hidden || "
                               "document.querySelector('#gpu-devices table')")


def test_metrics_page_with_gpus_and_without_a_monitor(page: Any, problems: list[str]) -> None:
    gib = 1 << 30
    samples = [{"time": 1000.0 + 5 * i, "cpu_percent": 10.0 * i, "memory_used": 4 * gib,
                "gpu_utilization": [20.0 * i, 90.0], "gpu_memory_used": [gib, 2 * gib * i],
                "busy_fraction": 0.25 * i} for i in range(4)]
    answer = {"time": 1015.0, "gpu": {"available": True, "reason": None, "devices": [
        {"index": i, "name": f"NVIDIA H100 #{i}", "utilization": 60.0, "memory_used": 2 * gib,
         "memory_total": 80 * gib, "temperature": 41, "power_w": 120.5,
         "process_memory": gib} for i in range(2)]},
        "host": {"cpu_percent": 30.0, "memory_used": 4 * gib, "memory_total": 16 * gib,
                 "disk_used": 10 * gib, "disk_total": 100 * gib, "disk_free": 90 * gib,
                 "rss": gib // 4, "threads": 12},
        "runtime": {"running": 1, "queued": {"immediate": 0, "high": 2, "normal": 0, "low": 1},
                    "busy_fraction": 0.75, "jobs": {"pending": 3, "running": 1, "stopped": 9}},
        "history": samples}
    page.route("**/v1/monitor", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(answer)))
    visit(page, "/console/metrics")
    page.wait_for_selector("#gpu-devices table")
    assert page.locator("#gpu-devices tbody tr").count() == 2
    assert "NVIDIA H100 #1" in page.inner_text("#gpu-devices")
    assert page.locator("[data-chart=gpu-util] polyline").count() == 2
    assert page.locator("[data-chart=cpu] polyline").count() == 1
    assert "3 (2 high, 1 low)" in page.inner_text("#runtime-facts")
    assert page.inner_text("[data-now=busy]") == "75 %"
    page.unroute("**/v1/monitor")
    page.route("**/v1/monitor", lambda route: route.fulfill(status=404, body="{}"))
    visit(page, "/console/metrics")
    page.wait_for_selector("#monitor-status:has-text('Monitoring not available')")
    assert page.locator("#monitor").is_hidden()
    assert problems and all("404" in p for p in problems), problems
    problems.clear()


# --- small screens ------------------------------------------------------------------------------


def test_every_page_fits_a_375_px_wide_screen(browser: Any, console: Console) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800}, base_url=console.url)
    context.set_default_timeout(15_000)
    try:
        tab = context.new_page()
        lungs, slow = console.lungs["id"], console.slow["id"]
        for path in ["/console", f"/console/pipelines/{console.lungs['pipeline_id']}",
                     "/console/jobs", f"/console/jobs/{lungs}", f"/console/jobs/{slow}",
                     f"/console/jobs/{lungs}/viewer", "/console/metrics"]:
            visit(tab, path)
            width = tab.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (path, width)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.goto(f"/console/jobs/{lungs}")
        tab.screenshot(path=str(ARTIFACTS / "job-375.png"), full_page=True)
    finally:
        context.close()

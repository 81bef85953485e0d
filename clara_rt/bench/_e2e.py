"""The ``e2e`` scenario: the ``ct-lung-seg`` job in clara-rt vs MONAI Deploy App SDK 0.5.1.

Both systems run the same steps on the same chest phantom series (:func:`chest_series`): load
the DICOM series, segment the lungs by HU thresholds (the very same ``segment_lungs`` and
``keep_largest(count=2)`` functions), write a DICOM SEG.

* clara-rt: :data:`E2E_YAML` (the first four operators of ``examples/ct-lung-seg``:
  ``DicomSeriesLoaderOp -> LungThresholdOp -> KeepLargestOp -> DicomSegWriterOp``).
  **cold** = ``python -m clara_rt.cli run E2E.yaml`` as a new process, start to exit; **warm** =
  a job on an in-process ``Runtime`` that has already run one.
* MONAI Deploy: :data:`APP_SOURCE` (``DICOMDataLoaderOperator -> DICOMSeriesSelectorOperator ->
  DICOMSeriesToVolumeOperator -> LungThresholdOperator -> DICOMSegmentationWriterOperator``) in
  the venv of :func:`monai_venv` (created on first use). **cold** = the app script running one
  job, start to exit; **warm** = ``Application.run`` again in the same process.

Peak RSS is each cold process's ``ru_maxrss`` (``os.wait4``). The two SEG files are read back
with pydicom and their segmented voxel counts compared (they must agree within 1%).
``monai=False`` runs the clara-rt half only (the test suite does that).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.bench._chest import chest_series
from clara_rt.bench._monai_app import APP_SOURCE, MONAI_SDK, monai_venv
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import checkout_env
from clara_rt.executor import Runtime

__all__ = ["E2E_YAML", "e2e", "seg_voxels"]

_ROOT = Path(__file__).resolve().parents[2]

E2E_YAML = """\
api-version: 0.5.0
name: ct-lung-seg-e2e
operators:
- name: dicom-reader
  container: {image: clara-rt/dicom-reader, tag: "0.1"}
  clara-rt:
    operator: "clara_rt.operators.io.dicom_series:DicomSeriesLoaderOp"
    args: {modality: CT}
  input:
  - path: /input
  output:
  - {name: volume, type: array}
  - {name: meta}
- name: lung-seg
  container: {image: clara-rt/lung-threshold, tag: "0.1"}
  clara-rt:
    operator: "clara_rt.operators.segment.lung_threshold:LungThresholdOp"
    args: {sides: true}
  input:
  - {from: dicom-reader, name: volume, type: array}
  - {from: dicom-reader, name: meta}
  output:
  - {name: mask, type: array, element-type: uint8}
  - {name: labels, type: array, element-type: uint8}
  - {name: body, type: array, element-type: uint8}
  - {name: meta}
- name: largest
  container: {image: clara-rt/keep-largest, tag: "0.1"}
  clara-rt:
    operator: "clara_rt.operators.postprocess.components:KeepLargestOp"
    args: {count: 2}
  input:
  - {from: lung-seg, name: mask}
  output:
  - {name: mask, type: array}
- name: seg-writer
  container: {image: clara-rt/dicom-seg-writer, tag: "0.1"}
  clara-rt:
    operator: "clara_rt.operators.output.dicom_seg:DicomSegWriterOp"
    args: {labels: {1: Lung}, series_description: "clara-rt lung segmentation"}
  input:
  - {from: largest, name: mask}
  - {from: dicom-reader, name: meta}
  output:
  - {name: seg}
"""
"""``examples/ct-lung-seg`` up to the DICOM SEG (no NIfTI, PNG or volume outputs)."""


def e2e(shape: tuple[int, int, int] = (64, 128, 128), *, repeat: int = 3, monai: bool = True,
        progress: Progress | None = None) -> BenchRecord:
    """Run ``ct-lung-seg`` to a DICOM SEG in clara-rt and in MONAI Deploy App SDK 0.5.1.

    Args:
        shape: Chest phantom shape (slices, rows, columns).
        repeat: Cold processes per system, and warm jobs per system.
        monai: Also run MONAI Deploy (creates its venv on first use, about a minute).
        progress: Called with one-line progress messages.

    Raises:
        RuntimeError: a process failed, or the two SEGs disagree by more than 1%.
    """
    say = progress or _quiet
    folder = chest_series(shape)
    python = monai_venv(say) if monai else None
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="clara-rt-bench-e2e-") as tmp:
        work = Path(tmp)
        (work / "e2e.yaml").write_text(E2E_YAML)
        (work / "monai_app.py").write_text(APP_SOURCE)
        say(f"e2e: cold, {repeat} processes per system, shape {shape}")
        cold: dict[str, list[tuple[float, float]]] = {"clara": [], "monai": []}
        seg: dict[str, Path] = {}
        for i in range(repeat):
            out = work / f"clara-cold{i}"
            cold["clara"].append(_process(
                [sys.executable, "-m", "clara_rt.cli", "run", str(work / "e2e.yaml"),
                 "--input", str(folder), "--output", str(out), "--json"], work))
            seg["clara"] = _one_dcm(out)
            if python is not None:
                out = work / f"monai-cold{i}"
                cold["monai"].append(_process(
                    [str(python), str(work / "monai_app.py"), str(_ROOT), str(folder), str(out),
                     "1"], work))
                seg["monai"] = _one_dcm(out)
        say(f"e2e: warm, {repeat} jobs per system after a first one")
        first, warm = _clara_warm(folder, work / "clara-warm", repeat)
        figures["clara-rt: cold (clara-rt run, process)"] = _cold_fig(cold["clara"])
        figures["clara-rt: first job in-process"] = {"ms": first * 1e3}
        figures["clara-rt: warm job"] = _lat(warm)
        if python is not None:
            report = _monai_warm(python, work, folder, repeat)
            figures["MONAI Deploy: cold (app script, process)"] = _cold_fig(cold["monai"])
            figures["MONAI Deploy: first app.run in-process"] = {
                "ms": report["run_s"][0] * 1e3, "imports_ms": report["import_s"] * 1e3,
                "segment_lungs_import_ms": report["clara_import_s"] * 1e3}
            figures["MONAI Deploy: warm app.run"] = _lat(report["run_s"][1:])
            voxels = {name: seg_voxels(path) for name, path in seg.items()}
            figures["SEG voxels"] = {"clara_rt": float(voxels["clara"]),
                                     "monai_deploy": float(voxels["monai"])}
            if abs(voxels["clara"] - voxels["monai"]) > 0.01 * max(voxels.values()):
                raise RuntimeError(f"the SEGs disagree: clara-rt {voxels['clara']} voxels, "
                                   f"MONAI Deploy {voxels['monai']}")
        else:
            figures["SEG voxels"] = {"clara_rt": float(seg_voxels(seg["clara"]))}
    return _record(shape, repeat, figures, monai=python is not None)


def seg_voxels(path: Path) -> int:
    """Return the number of segmented voxels in a (binary) DICOM SEG, read with pydicom."""
    import pydicom

    ds = pydicom.dcmread(path)
    return int(np.count_nonzero(ds.pixel_array))


# --- private ------------------------------------------------------------------------------


def _record(shape: tuple[int, int, int], repeat: int, figures: dict[str, dict[str, float]], *,
            monai: bool) -> BenchRecord:
    ratios: dict[str, float] = {}
    targets: tuple[Target, ...] = ()
    c_cold, c_warm = figures["clara-rt: cold (clara-rt run, process)"], figures[
        "clara-rt: warm job"]
    if monai:
        m_cold, m_warm = figures["MONAI Deploy: cold (app script, process)"], figures[
            "MONAI Deploy: warm app.run"]
        ratios = {
            "MONAI / clara-rt, cold process": _ratio(m_cold["p50_ms"], c_cold["p50_ms"]),
            "MONAI / clara-rt, warm job": _ratio(m_warm["p50_ms"], c_warm["p50_ms"]),
            "MONAI / clara-rt, peak RSS (cold)": _ratio(m_cold["peak_rss_mb"],
                                                        c_cold["peak_rss_mb"]),
        }
        targets = (Target("MONAI / clara-rt, cold process", ratios[
            "MONAI / clara-rt, cold process"], 1.0, "x", higher_is_better=True),
                   Target("MONAI / clara-rt, peak RSS", ratios[
                       "MONAI / clara-rt, peak RSS (cold)"], 1.0, "x", higher_is_better=True))
    return BenchRecord(
        scenario="e2e",
        title=f"ct-lung-seg to DICOM SEG on a {shape[0]}x{shape[1]}x{shape[2]} chest phantom: "
              f"clara-rt vs MONAI Deploy App SDK {MONAI_SDK}; cold = new process start to "
              f"exit, warm = another job in the same process; medians",
        machine=machine_info(),
        params={"shape": list(shape), "repeat": repeat, "monai_deploy": MONAI_SDK if monai
                else None},
        figures=figures, ratios=ratios, targets=targets,
        notes="Same segmentation functions in both (clara-rt's segment_lungs + keep_largest, "
              "imported by the MONAI app from the checkout); peak_rss_mb is ru_maxrss of the "
              "cold process (os.wait4). MONAI cold includes importing monai (and torch, which "
              "its operators package imports). SEG voxel counts must agree within 1%.")



def _process(argv: list[str], work: Path) -> tuple[float, float]:
    """Run ``argv``; return (wall seconds start to exit, peak RSS in MB)."""
    log = work / "process.log"
    with log.open("wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=checkout_env(),
                                cwd=work)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{argv[0]} {' '.join(argv[1:3])} failed (exit {proc.returncode}):\n"
                           f"{log.read_text(errors='replace')[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def _one_dcm(folder: Path) -> Path:
    found = sorted(folder.rglob("*.dcm"))
    if len(found) != 1:
        raise RuntimeError(f"expected one SEG file under {folder}, found {len(found)}")
    return found[0]


def _clara_warm(folder: Path, scratch: Path, repeat: int) -> tuple[float, list[float]]:
    from clara_rt.definition import parse_definition
    from clara_rt.definition.build import build_pipeline

    built = build_pipeline(parse_definition("e2e.yaml", text=E2E_YAML))
    payload = built.payload_for(folder)
    times: list[float] = []
    try:
        with Runtime() as rt:
            for i in range(repeat + 1):
                t0 = time.perf_counter()
                rt.submit(built.pipeline, payload, workspace=scratch / str(i)).result()
                times.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return times[0], times[1:]


def _monai_warm(python: Path, work: Path, folder: Path, repeat: int) -> dict[str, Any]:
    out = work / "monai-warm"
    done = subprocess.run([str(python), str(work / "monai_app.py"), str(_ROOT), str(folder),
                           str(out), str(repeat + 1)], capture_output=True, text=True,
                          env=checkout_env(), cwd=work, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"the MONAI Deploy app failed (exit {done.returncode}):\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _cold_fig(samples: list[tuple[float, float]]) -> dict[str, float]:
    walls = np.asarray([s[0] for s in samples]) * 1e3
    return {"p50_ms": float(np.median(walls)), "min_ms": float(walls.min()),
            "peak_rss_mb": float(np.median([s[1] for s in samples]))}


def _lat(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1e3
    return {"p50_ms": float(np.median(arr)), "min_ms": float(arr.min()),
            "mean_ms": float(arr.mean()), "n": float(len(arr))}

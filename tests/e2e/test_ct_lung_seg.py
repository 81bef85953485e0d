"""The ct-lung-seg reference pipeline, run as a user runs it, on a generated chest CT series."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest

from clara_rt.bench import checkout_env
from tests.data.chest_dicom import ORIGIN, SPACING, write_chest_series

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
EXPECTED_ML = 4 / 3 * np.pi * 32 * 16.64 * 25.6 * SPACING[0] * SPACING[1] * SPACING[2] / 1000


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path], dict[str, str],
                                                            subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("ct")
    files = write_chest_series(root / "in")
    before = _fingerprint(root / "in")
    env = checkout_env()
    proc = subprocess.run([sys.executable, "-m", "clara_rt.cli", "run", str(PIPELINE), "--input",
                           str(root / "in"), "--output", str(root / "out"), "--json"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    return root / "in", root / "out", files, before, proc


def test_job_succeeds_and_input_is_untouched(run: tuple) -> None:  # type: ignore[type-arg]
    inputs, _, _, before, proc = run
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "succeeded"
    assert _fingerprint(inputs) == before  # nothing moved, changed or added in the input


def test_lung_volumes_match_the_phantom(run: tuple) -> None:  # type: ignore[type-arg]
    out = run[1]
    stats = json.loads((out / "volumes" / "stats.json").read_text())
    assert {s["name"] for s in stats.values()} == {"left lung", "right lung"}
    for lung in stats.values():
        assert abs(lung["volume_ml"] - EXPECTED_ML) / EXPECTED_ML < 0.05
        assert -900 < lung["mean"] < -800


def test_seg_references_the_source_series(run: tuple) -> None:  # type: ignore[type-arg]
    _, out, files, _, _ = run
    seg = pydicom.dcmread(out / "seg-writer" / "seg.dcm")
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    refs = seg.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == source.SeriesInstanceUID
    uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert {r.ReferencedSOPInstanceUID for r in refs.ReferencedInstanceSequence} <= uids
    assert seg.SegmentSequence[0].SegmentLabel == "Lung"


def test_nifti_mask_in_source_geometry(run: tuple) -> None:  # type: ignore[type-arg]
    image = nibabel.load(run[1] / "nifti-writer" / "path.nii.gz")
    assert image.shape == (128, 128, 64)
    expected = np.diag([-SPACING[2], -SPACING[1], SPACING[0], 1.0])
    expected[:3, 3] = [-ORIGIN[0], -ORIGIN[1], ORIGIN[2]]
    np.testing.assert_allclose(image.affine, expected, atol=1e-4)
    mask = np.asanyarray(image.dataobj)
    lungs_ml = int((mask > 0).sum()) * np.prod(SPACING) / 1000
    assert abs(lungs_ml - 2 * EXPECTED_ML) < 0.1 * EXPECTED_ML


def test_pngs_rendered(run: tuple) -> None:  # type: ignore[type-arg]
    for view in ("axial", "coronal", "sagittal", "mip"):
        data = (run[1] / "render" / "pngs" / f"{view}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # The folder honours the umask like every other output (it was 0700 from mkdtemp).
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in
             (run[1] / "render" / "pngs", run[1] / "render", run[1] / "nifti-writer")}
    assert len(set(modes.values())) == 1, {str(p): oct(m) for p, m in modes.items()}


def test_make_demo_script(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "examples/demo.py", "--work", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert re.search(r"job \S+ of 'ct-lung-seg': succeeded", proc.stdout), proc.stdout
    assert "left lung:" in proc.stdout and "right lung:" in proc.stdout
    assert len(list((tmp_path / "input").glob("*.dcm"))) == 64
    assert (tmp_path / "output" / "volumes" / "stats.json").is_file()
    assert (tmp_path / "output" / "render" / "pngs" / "axial.png").is_file()


def test_demo_help_does_not_run_the_demo(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "examples/demo.py", "--help", "--work", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: examples/demo.py")
    assert "--work WORK" in proc.stdout
    assert not any(tmp_path.iterdir()), "--help wrote files"

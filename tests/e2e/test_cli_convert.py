"""`clara-rt convert DICOM_DIR OUT.nii.gz` as a user runs it: a subprocess, real files, dcm2niix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML

from clara_rt.bench import checkout_env
from tests.conftest import need_peer
from tests.data.dicom_series import corpus, dcm2niix, make_series

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = checkout_env()
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_convert_equals_dcm2niix(tmp_path: Path) -> None:
    need_peer(shutil.which("dcm2niix") is not None, "dcm2niix")
    make_series(tmp_path / "in", slices=30, rows=48, cols=48, orientation="oblique")
    out = tmp_path / "out" / "ct.nii.gz"
    proc = _cli("convert", tmp_path / "in", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{out}: 48x48x30 int16, spacing 0.7 x 0.7 x 1.25 mm")
    ours = nib.as_closest_canonical(nib.load(out))
    theirs = nib.as_closest_canonical(nib.load(dcm2niix(tmp_path / "in", tmp_path / "d2n")[0]))
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)


def test_convert_json_rules_and_warnings(tmp_path: Path) -> None:
    c = corpus(tmp_path / "in")
    out = tmp_path / "head.nii"
    proc = _cli("convert", tmp_path / "in", out, "--description", "head", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["series_uid"] == c.series_uids["head"]
    assert record["shape_kji"] == [10, 32, 32] and record["files"] == 10
    assert len(record["warnings"]) == 2  # the damaged files, also printed on stderr
    for damaged in c.truncated:  # printed once: the logger's copy is kept off stderr
        assert f"clara-rt: warning: skipped {damaged}" in proc.stderr
        assert proc.stderr.count(f"skipped {damaged}") == 1
    assert nib.load(out).shape == (32, 32, 10)


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    make_series(tmp_path / "in", slices=4, rows=16, cols=16)
    out = tmp_path / "ct.nii.gz"
    out.write_bytes(b"keep me")
    proc = _cli("convert", tmp_path / "in", out)
    assert proc.returncode == 2
    assert "exists; pass --overwrite to replace it" in proc.stderr
    assert out.read_bytes() == b"keep me"
    proc = _cli("convert", tmp_path / "in", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert nib.load(out).shape == (16, 16, 4)


def test_bad_folder_and_bad_names_exit_2(tmp_path: Path) -> None:
    proc = _cli("convert", tmp_path / "nowhere", tmp_path / "x.nii.gz")
    assert proc.returncode == 2 and "no such folder" in proc.stderr
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("not DICOM")
    proc = _cli("convert", tmp_path / "junk", tmp_path / "x.nii.gz")
    assert proc.returncode == 2 and "no DICOM image series found in" in proc.stderr
    proc = _cli("convert", tmp_path / "junk", tmp_path / "x.png")
    assert proc.returncode == 2 and "must end in .nii or .nii.gz" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk"]


def test_failed_conversion_leaves_no_file(tmp_path: Path) -> None:
    """A series that cannot be decoded fails with 1 and writes nothing, not even a temp file."""
    [path] = make_series(tmp_path / "in", slices=1, rows=16, cols=16)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    (tmp_path / "out").mkdir()
    proc = _cli("convert", tmp_path / "in", tmp_path / "out" / "x.nii.gz")
    assert proc.returncode == 1
    assert "MPEG2 Main Profile / Main Level" in proc.stderr
    assert list((tmp_path / "out").iterdir()) == []
    old = tmp_path / "out" / "old.nii.gz"
    old.write_bytes(b"previous result")
    proc = _cli("convert", tmp_path / "in", old, "--overwrite")
    assert proc.returncode == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.nii.gz"]
    assert old.read_bytes() == b"previous result"

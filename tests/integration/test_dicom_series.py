"""DICOM series loading against dcm2niix on real files (generated and pydicom's test data).

Both sides end up as NIfTI: ours through ``write_nifti``, dcm2niix's from the real converter.
Both are loaded with nibabel and brought to the closest canonical orientation (dcm2niix flips
rows), then voxel values must be equal and affines equal within 1e-4.
"""

from __future__ import annotations

import logging
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, JPEGLosslessSV1, RLELossless

from clara_rt import Operator, OperatorError, Pipeline, Runtime
from clara_rt.operators.io import (
    DicomSeriesError,
    DicomSeriesLoaderOp,
    NoSeriesError,
    load_series,
    read_nifti,
    write_nifti,
)
from clara_rt.operators.io._dicom_pixels import check_decodable
from tests.conftest import need_peer
from tests.data.dicom_series import (
    add_header_clutter,
    corpus,
    dicomdir_series,
    make_series,
    ours_vs_dcm2niix,
    pydicom_file,
)
from tests.data.dicom_series import dcm2niix as run_dcm2niix

SMALL: dict[str, Any] = {"slices": 40, "rows": 64, "cols": 64}


def dcm2niix(src: Path, out: Path) -> list[Path]:
    """Run the real dcm2niix (skip locally, fail in CI when it is missing)."""
    need_peer(shutil.which("dcm2niix") is not None, "dcm2niix")
    return run_dcm2niix(src, out)


# --- generated series vs dcm2niix ------------------------------------------------------------


@pytest.mark.parametrize(("case", "kwargs"), [
    ("axial", {}),
    ("oblique", {"orientation": "oblique"}),
    ("ordered-names", {"shuffle": False}),
    ("scrambled-instance-numbers", {"scramble_instance_numbers": True}),
    ("missing-slices", {"missing": (10, 11, 12)}),
])
def test_generated_series_equals_dcm2niix(tmp_path: Path, case: str,
                                          kwargs: dict[str, Any]) -> None:
    make_series(tmp_path / "in", **SMALL, **kwargs)
    ours_vs_dcm2niix(tmp_path / "in", tmp_path)


def test_rescale_to_float32_equals_dcm2niix(tmp_path: Path) -> None:
    make_series(tmp_path / "in", **SMALL, slope=0.5, intercept=-1000.0)
    volume, _ = load_series(tmp_path / "in")
    assert volume.dtype == np.float32  # a fractional slope: float32
    ours_vs_dcm2niix(tmp_path / "in", tmp_path, exact=False)


def test_integral_rescale_stays_int16(tmp_path: Path) -> None:
    files = make_series(tmp_path, **SMALL, intercept=-1024.0)
    volume, meta = load_series(tmp_path)
    assert volume.dtype == np.int16 and volume.flags.c_contiguous
    assert volume.shape == (40, 64, 64)
    first = pydicom.dcmread(files[0])
    np.testing.assert_array_equal(volume[0], first.pixel_array.astype(np.int32) - 1024)
    assert meta.files == tuple(str(f) for f in files)
    assert meta.source["SOPInstanceUIDs"] == [pydicom.dcmread(f).SOPInstanceUID for f in files]
    assert meta.source["Rows"] == 64 and meta.source["Modality"] == "CT"
    assert meta.source["PatientName"] == "Phantom^Chest"
    assert meta.warnings == ()


def test_oblique_geometry_follows_volume_convention(tmp_path: Path) -> None:
    files = make_series(tmp_path, **SMALL, orientation="oblique", spacing=(2.0, 0.8, 0.6))
    _, meta = load_series(tmp_path)
    assert meta.spacing == pytest.approx((2.0, 0.8, 0.6), abs=1e-4)  # IPP has 4 decimals
    last = np.asarray(pydicom.dcmread(files[-1]).ImagePositionPatient, dtype=float)
    np.testing.assert_allclose(meta.affine_lps @ [0, 0, 39, 1], [*last, 1], atol=1e-3)
    iop = np.asarray(pydicom.dcmread(files[0]).ImageOrientationPatient, dtype=float)
    np.testing.assert_allclose(np.asarray(meta.direction)[:, 0], iop[:3], atol=1e-6)


def test_irregular_spacing_warns_and_uses_the_median(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    files = make_series(tmp_path / "in", **SMALL, irregular=True)
    with caplog.at_level(logging.WARNING, logger="clara_rt.dicom"):
        _, theirs = ours_vs_dcm2niix(tmp_path / "in", tmp_path, free_slice_spacing=True)
    z = np.array([float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files])
    _, meta = load_series(tmp_path / "in")
    assert meta.spacing[0] == pytest.approx(np.median(np.diff(z)), abs=1e-6)
    assert theirs.header.get_zooms()[2] == pytest.approx(z[1] - z[0], abs=1e-4)  # dcm2niix
    [warning] = meta.warnings
    assert warning.startswith("irregular slice spacing: median ")
    assert "max deviation" in warning and warning in caplog.messages


def test_missing_slices_warning_names_the_gap(tmp_path: Path) -> None:
    make_series(tmp_path, **SMALL, missing=(10, 11, 12), origin=(0.0, 0.0, 0.0))
    _, meta = load_series(tmp_path)
    [warning] = meta.warnings
    assert warning == ("missing slice(s): gap of 5.000 mm between positions 11.250 and "
                       "16.250 mm (slices 9 and 10, about 3 missing; median spacing 1.250 mm)")


def test_duplicate_positions_keep_one(tmp_path: Path) -> None:
    files = make_series(tmp_path, **SMALL, shuffle=False)
    shutil.copy(files[5], tmp_path / "zz_copy.dcm")
    volume, meta = load_series(tmp_path)
    assert volume.shape[0] == 40
    [warning] = meta.warnings
    assert "1 slice(s) duplicate another's position" in warning and "zz_copy.dcm" in warning


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_headers_with_sequences_and_long_private_data(tmp_path: Path, implicit: bool) -> None:
    """Undefined-length nested sequences, a 40 KB private element, implicit VR: same volume."""
    make_series(tmp_path / "plain", slices=8, rows=32, cols=32)
    plain, _ = load_series(tmp_path / "plain")
    files = make_series(tmp_path / "in", slices=8, rows=32, cols=32)
    add_header_clutter(files, implicit=implicit)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID.is_implicit_VR is implicit
    volume, meta = load_series(tmp_path / "in")
    np.testing.assert_array_equal(volume, plain)
    assert meta.warnings == ()
    ours_vs_dcm2niix(tmp_path / "in", tmp_path)


# --- pydicom's test files vs dcm2niix ----------------------------------------------------------


def test_pydicom_ct_series_equals_dcm2niix(tmp_path: Path) -> None:
    ours_vs_dcm2niix(dicomdir_series("98892001/CT5N"), tmp_path)


def test_pydicom_ct_series_with_a_gap(tmp_path: Path) -> None:
    """77654033/CT2: one slice at z=-99.48, three at 103.02..105.52 (1.25 mm apart)."""
    ours, theirs = ours_vs_dcm2niix(dicomdir_series("77654033/CT2"), tmp_path,
                                    free_slice_spacing=True)
    assert ours.header.get_zooms()[2] == pytest.approx(1.25)  # the median step
    assert theirs.header.get_zooms()[2] == pytest.approx(202.5)  # dcm2niix: the first step
    _, meta = load_series(dicomdir_series("77654033/CT2"))
    [warning] = meta.warnings
    assert "gap of 202.500 mm between positions -99.480 and 103.020 mm" in warning


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jp2klossless.dcm"])
def test_pydicom_single_files_equal_dcm2niix(tmp_path: Path, name: str) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(pydicom_file(name), tmp_path / "in")
    if name.endswith("jp2klossless.dcm"):
        _decodable_or_skip("1.2.840.10008.1.2.4.90")
    ours_vs_dcm2niix(tmp_path / "in", tmp_path)


def test_mixed_orientations_keep_the_largest_group(tmp_path: Path) -> None:
    """98892003/MR700: seven single images, each with its own orientation."""
    src = dicomdir_series("98892003/MR700")
    volume, meta = load_series(src)
    assert volume.shape == (1, 16, 16)
    [warning] = meta.warnings
    assert "mixes 7 orientations/sizes; kept the 1 slices" in warning
    ours = nib.as_closest_canonical(nib.load(write_nifti(volume, meta, tmp_path / "o.nii.gz")))
    kept = pydicom.dcmread(meta.files[0]).InstanceNumber
    theirs = [p for p in dcm2niix(src, tmp_path / "d2n") if p.name.endswith(f"_i{kept:05d}.nii.gz")]
    theirs_image = nib.as_closest_canonical(nib.load(theirs[0]))
    np.testing.assert_array_equal(ours.get_fdata(), theirs_image.get_fdata())
    np.testing.assert_allclose(ours.affine, theirs_image.affine, atol=1e-3)


# --- compressed syntaxes -------------------------------------------------------------------


def test_rle_series_equals_uncompressed(tmp_path: Path) -> None:
    plain = make_series(tmp_path / "plain", slices=6, rows=32, cols=32)
    make_series(tmp_path / "rle", slices=6, rows=32, cols=32, transfer_syntax=RLELossless)
    assert pydicom.dcmread(plain[0]).file_meta.TransferSyntaxUID != RLELossless
    a, meta_a = load_series(tmp_path / "plain")
    b, meta_b = load_series(tmp_path / "rle")
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype == np.int16
    assert meta_a == meta_b and meta_b.source["TransferSyntaxUID"] == RLELossless


def test_jpeg_ls_series_equals_uncompressed(tmp_path: Path) -> None:
    pytest.importorskip("jpeg_ls", reason="pyjpegls encodes and decodes JPEG-LS")
    make_series(tmp_path / "plain", slices=4, rows=32, cols=32)
    make_series(tmp_path / "jls", slices=4, rows=32, cols=32,
                transfer_syntax="1.2.840.10008.1.2.4.80")
    np.testing.assert_array_equal(load_series(tmp_path / "plain")[0],
                                  load_series(tmp_path / "jls")[0])


_HIDE_PLUGINS = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"libjpeg", "pylibjpeg", "openjpeg", "gdcm", "rle"}:
            raise ImportError(f"{name} hidden by the test")
        return None
sys.meta_path.insert(0, Hide())
from clara_rt.operators.io import load_series
try:
    load_series(sys.argv[1])
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_undecodable_syntax_error_names_it_and_the_fix(tmp_path: Path) -> None:
    """Without JPEG plugins the error names the syntax and the fix (plugins hidden when present,
    in a child process so that this one keeps them)."""
    import subprocess
    import sys

    from clara_rt.bench import checkout_env

    _write_with_syntax(tmp_path, JPEGLosslessSV1)
    env = checkout_env()
    proc = subprocess.run([sys.executable, "-c", _HIDE_PLUGINS, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^DicomSeriesError .*cannot decode transfer syntax 'JPEG Lossless, "
                     r".*\(1\.2\.840\.10008\.1\.2\.4\.70\).*pip install pylibjpeg "
                     r"pylibjpeg-libjpeg pylibjpeg-openjpeg \(or clara-rt\[dicom\]\)",
                     proc.stdout, re.S), proc.stdout


def test_syntax_without_any_decoder_is_named(tmp_path: Path) -> None:
    _write_with_syntax(tmp_path, MPEG2MPML)
    with pytest.raises(DicomSeriesError, match=r"transfer syntax 'MPEG2 Main Profile / Main "
                       r"Level' \(1\.2\.840\.10008\.1\.2\.4\.100\) is not supported"):
        load_series(tmp_path)


# --- folders with several series, junk and damage -----------------------------------------


def test_corpus_selects_largest_and_skips_junk(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    c = corpus(tmp_path)
    with caplog.at_level(logging.WARNING, logger="clara_rt.dicom"):
        volume, meta = load_series(tmp_path)
    assert volume.shape == (24, 32, 32) and meta.source["SeriesDescription"] == "chest"
    assert meta.files == tuple(str(f) for f in c.series["chest"])
    assert len(meta.warnings) == 2  # the truncated and the corrupt file; junk is silent
    for damaged in c.truncated:
        assert any(str(damaged) in w for w in meta.warnings)
        assert any(str(damaged) in m for m in caplog.messages)
    assert any("truncated file" in w for w in meta.warnings)
    assert not any(str(j) in w for j in c.junk for w in meta.warnings)


@pytest.mark.parametrize(("rules", "expected"), [
    ({"description": "HEAD"}, "head"),
    ({"description": "^sc"}, "scout"),
    ({"modality": "ct", "select": "first"}, None),
])
def test_corpus_rules(tmp_path: Path, rules: dict[str, Any], expected: str | None) -> None:
    c = corpus(tmp_path, truncate=False)
    _, meta = load_series(tmp_path, **rules)
    if expected is None:  # all three are series number 2: the lowest UID wins
        expected = min(c.series_uids, key=lambda d: c.series_uids[d])
    assert meta.source["SeriesInstanceUID"] == c.series_uids[expected]
    _, by_uid = load_series(tmp_path, series_uid=c.series_uids["scout"])
    assert by_uid.source["SeriesDescription"] == "scout"


def test_no_match_lists_the_series_found(tmp_path: Path) -> None:
    c = corpus(tmp_path, truncate=False)
    with pytest.raises(NoSeriesError, match=r"^no series matches modality='MR' ") as info:
        load_series(tmp_path, modality="MR")
    message = str(info.value)
    for desc, count in (("chest", 24), ("head", 10), ("scout", 3)):
        assert f"{c.series_uids[desc]} CT '{desc}' ({count} files)" in message
    with pytest.raises(NoSeriesError, match=r"^3 series match no rule \(select='only'\)"):
        load_series(tmp_path, select="only")


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    shutil.copy(pydicom_file("rtstruct.dcm"), tmp_path)
    with pytest.raises(NoSeriesError, match=r"^no DICOM image series found in .* \(2 files"):
        load_series(tmp_path)
    with pytest.raises(NoSeriesError, match=r"not a folder"):
        load_series(tmp_path / "missing")


# --- NIfTI and the operator in a pipeline ----------------------------------------------------


def test_nifti_round_trip_and_dcm2niix_output(tmp_path: Path) -> None:
    make_series(tmp_path / "in", **SMALL, orientation="oblique")
    volume, meta = load_series(tmp_path / "in")
    path = write_nifti(volume, meta, tmp_path / "v.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "v.nii.gz"]  # no temp left
    again, meta_again = read_nifti(path)
    np.testing.assert_array_equal(again, volume)
    np.testing.assert_allclose(meta_again.affine_lps, meta.affine_lps, atol=1e-4)
    theirs, _ = read_nifti(dcm2niix(tmp_path / "in", tmp_path / "d2n")[0])
    assert theirs.dtype == np.int16  # dcm2niix's int16 + scl_inter read back as int16
    assert theirs.shape == volume.shape


class VoxelCount(Operator):
    """Consumer: count voxels above a HU threshold and report the slice spacing."""

    def setup(self, spec: Any) -> None:
        spec.input("volume", shape=(-1, -1, -1))
        spec.input("meta", kind="object")
        spec.output("summary", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["summary"] = {"bone": int((inputs["volume"] > 500).sum()),
                              "dz": inputs["meta"].spacing[0]}


def test_operator_in_a_runtime_pipeline(tmp_path: Path) -> None:
    make_series(tmp_path / "series", **SMALL)
    (tmp_path / "empty").mkdir()
    p = Pipeline("dicom-load")
    load, count = p.add(DicomSeriesLoaderOp("load")), p.add(VoxelCount("count"))
    p.connect(load, "volume", count, "volume")
    p.connect(load, "meta", count, "meta")
    expected = int((load_series(tmp_path / "series")[0] > 500).sum())
    with Runtime(workers=2) as rt:
        bad = rt.submit(p, {"load.folder": tmp_path / "empty"}, timeout=30)
        good = rt.submit(p, {"load.folder": tmp_path / "series"}, timeout=30)
        with pytest.raises(OperatorError, match=r"operator 'load' failed .*no DICOM image "
                                                r"series found in .*empty") as info:
            bad.result()
        assert info.value.operator == "load"
        assert good.result()["count.summary"] == {"bone": expected, "dz": 1.25}


@pytest.mark.gpu
def test_operator_emits_on_the_gpu(tmp_path: Path) -> None:
    import cupy

    make_series(tmp_path, slices=8, rows=32, cols=32)
    p = Pipeline("dicom-gpu")
    p.add(DicomSeriesLoaderOp("load", device="cuda"))
    with Runtime(workers=1) as rt:
        out = rt.submit(p, {"load.folder": tmp_path}, timeout=30).result()
    assert isinstance(out["load.volume"], cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(out["load.volume"]), load_series(tmp_path)[0])


# --- helpers --------------------------------------------------------------------------------


def _decodable_or_skip(syntax: str) -> None:
    try:
        check_decodable(syntax)
    except DicomSeriesError as exc:
        pytest.skip(str(exc))


def _write_with_syntax(folder: Path, syntax: str) -> Path:
    """Write one CT slice whose (encapsulated) pixel data is labelled ``syntax``."""
    [path] = make_series(folder, slices=1, rows=16, cols=16)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(syntax)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + bytes(60) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_header_scanner_agrees_with_pydicom() -> None:
    """On every image among pydicom's test files the fast scanner reads what pydicom reads."""
    from clara_rt.operators.io._dicom_read import _pydicom_header, list_files, read_header

    checked = 0
    for path in list_files(pydicom_file("CT_small.dcm").parent):
        header, problem = read_header(path)
        if header is None or problem:
            continue
        with warnings.catch_warnings():  # pydicom warns about SC_rgb_jpeg's mislabelled VR
            warnings.simplefilter("ignore", UserWarning)
            assert header.tags == _pydicom_header(path).tags, path
            if header.pixel_offset is not None:
                data = Path(path).read_bytes()[header.pixel_offset:][:header.pixel_length]
                assert data == pydicom.dcmread(path).PixelData, path
        checked += 1
    assert checked > 50

"""convert_series (what ``clara-rt convert`` runs) writes load_series + write_nifti's file.

Two ways in (see :mod:`clara_rt.operators.io.convert`). The fast path (plain 16-bit series, no
NumPy) is checked on int16 and uint16 series, with and without rescale, axial, oblique and with a
gantry tilt: without rescale its file is the library's byte for byte; with one, the header is the
library's but for ``scl_slope`` / ``scl_inter`` and the real values are equal. The NumPy path is
checked on what the fast path refuses (8-bit, fractional or per-slice rescale, 12-bit signed,
big-endian, RLE, a uint16 value above 32767, a gap, two series, ``.nii.gz``): the library's file
byte for byte. dcm2niix gives the same voxels and affine as the fast path.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, RLELossless

from clara_rt.operators.io import NoSeriesError, convert_series, load_series, write_nifti
from clara_rt.operators.io import _convert_fast as fast
from tests.conftest import need_peer
from tests.data.dicom_series import dcm2niix, make_series

_SCL = slice(112, 120)  # scl_slope, scl_inter in the NIfTI-1 header


def _is_fast(src: Path) -> bool:
    headers, _ = fast.scan(str(src), 2, [])
    return fast.plan(headers, modality=None, description=None, series_uid=None,
                     select="largest") is not None


def _same_as_library(src: Path, out: Path) -> Any:
    """Convert ``src``; check the file against the library's; return what convert_series gave."""
    done = convert_series(src, out)
    volume, meta = load_series(src)
    reference = write_nifti(volume, meta, out.with_name("reference" + out.name[
        out.name.index("."):]))
    ours, theirs = out.read_bytes(), reference.read_bytes()
    if (done.scl_slope, done.scl_inter) == (1.0, 0.0):
        assert ours == theirs
        assert done.dtype == str(volume.dtype)
    else:  # stored values and scl_*: the same header otherwise, the same real values
        assert ours[:_SCL.start] + ours[_SCL.stop:352] == theirs[:_SCL.start] + theirs[
            _SCL.stop:352]
        stored = np.frombuffer(ours[352:], "<i2").reshape(volume.shape).astype(np.float64)
        np.testing.assert_array_equal(stored * done.scl_slope + done.scl_inter, volume)
        np.testing.assert_array_equal(nib.load(out).get_fdata(), nib.load(reference).get_fdata())
    assert done.shape == volume.shape
    assert done.meta == meta and done.meta.source == meta.source
    assert done.meta.files == meta.files and done.meta.warnings == meta.warnings
    assert done.affine_ras == meta.affine_ras.tolist()
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]  # no temporary left
    return done


def _rewrite(files: list[Path], change: Callable[[pydicom.Dataset, int], None]) -> None:
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        change(ds, k)
        big = ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=not big,
                         enforce_file_format=True)


def _unsigned(ds: pydicom.Dataset, _: int) -> None:
    ds.PixelRepresentation = 0  # the same bits, read as unsigned (stored = HU + 1024 >= 0)


def _tilted(ds: pydicom.Dataset, k: int) -> None:  # 15 degrees: each slice shifted along y
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, round(y + (z + 100.0) * math.tan(math.radians(15)), 4), z]


@pytest.mark.parametrize(("kwargs", "change", "scaled"), [
    ({"intercept": 0.0}, None, False),
    ({}, None, True),
    ({"slope": 2.0, "intercept": -1024.0}, None, True),
    ({"orientation": "axial", "intercept": -1024.0}, _unsigned, True),
    ({"orientation": "axial"}, _tilted, True),
], ids=["int16", "int16-rescaled", "int16-slope2", "uint16-rescaled", "gantry-tilt"])
def test_fast_path_writes_the_library_file(tmp_path: Path, kwargs: dict[str, Any],
                                           change: Callable[..., None] | None,
                                           scaled: bool) -> None:
    options = {"slices": 9, "rows": 20, "cols": 18, "orientation": "oblique", **kwargs}
    files = make_series(tmp_path / "in", **options)
    if change is not None:
        _rewrite(files, change)
    assert _is_fast(tmp_path / "in")
    done = _same_as_library(tmp_path / "in", tmp_path / "ct.nii")
    assert done.dtype == "int16"
    assert ((done.scl_slope, done.scl_inter) != (1.0, 0.0)) == scaled


def test_unsigned_without_rescale_is_the_library_file(tmp_path: Path) -> None:
    files = make_series(tmp_path / "in", slices=5, rows=16, cols=16, intercept=0.0)

    def shifted(ds: pydicom.Dataset, _: int) -> None:  # unsigned, 0..~1700, no rescale
        ds.PixelData = (np.frombuffer(ds.PixelData, "<i2") + 1024).astype("<u2").tobytes()
        ds.PixelRepresentation = 0

    _rewrite(files, shifted)
    assert _is_fast(tmp_path / "in")
    done = _same_as_library(tmp_path / "in", tmp_path / "ct.nii")
    assert (done.dtype, done.scl_slope, done.scl_inter) == ("int16", 1.0, 0.0)


def _eight_bit(ds: pydicom.Dataset, _: int) -> None:
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.frombuffer(ds.PixelData, "<i2") // 8 & 0xFF).astype("u1").tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0


def _twelve_bit_signed(ds: pydicom.Dataset, _: int) -> None:
    ds.BitsStored, ds.HighBit = 12, 11


def _per_slice_rescale(ds: pydicom.Dataset, k: int) -> None:
    ds.RescaleIntercept = -1024 if k % 2 else -1000


def _big_endian(ds: pydicom.Dataset, _: int) -> None:
    ds.PixelData = np.frombuffer(ds.PixelData, "<i2").astype(">i2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


def _zero_slope(ds: pydicom.Dataset, _: int) -> None:
    ds.RescaleSlope = 0  # scl_slope 0 would mean "unscaled" in NIfTI


def _above_32767(ds: pydicom.Dataset, _: int) -> None:
    ds.PixelRepresentation, ds.RescaleIntercept = 0, 0  # negative HU read as large unsigned


@pytest.mark.parametrize(("kwargs", "change", "dtype"), [
    ({}, _eight_bit, "int16"),
    ({"slope": 1.5, "intercept": -1000.0}, None, "float32"),
    ({"intercept": 0.0}, _twelve_bit_signed, "int16"),
    ({}, _per_slice_rescale, "int16"),
    ({"intercept": 0.0}, _big_endian, "int16"),
    ({"transfer_syntax": RLELossless}, None, "int16"),
    ({"intercept": 0.0}, _above_32767, "float32"),
    ({"missing": (3,)}, None, "int16"),
    ({}, _zero_slope, "int16"),
], ids=["8-bit", "fractional-slope", "12-bit-signed", "per-slice-rescale", "big-endian", "rle",
        "uint16-above-32767", "missing-slice", "zero-slope"])
def test_numpy_path_writes_the_library_file(tmp_path: Path, kwargs: dict[str, Any],
                                            change: Callable[..., None] | None,
                                            dtype: str) -> None:
    options = {"slices": 9, "rows": 20, "cols": 18, "orientation": "oblique", **kwargs}
    files = make_series(tmp_path / "in", **options)
    if change is not None:
        _rewrite(files, change)
    if change is not _above_32767:  # that one is refused while copying, not planning
        assert not _is_fast(tmp_path / "in")
    done = _same_as_library(tmp_path / "in", tmp_path / "ct.nii")
    assert (done.dtype, done.scl_slope, done.scl_inter) == (dtype, 1.0, 0.0)


def test_two_series_and_rules(tmp_path: Path) -> None:
    make_series(tmp_path / "in" / "a", slices=6, rows=16, cols=16, description="chest")
    make_series(tmp_path / "in" / "b", slices=4, rows=16, cols=16, description="head",
                intercept=0.0)
    done = _same_as_library(tmp_path / "in", tmp_path / "ct.nii")  # the largest: chest
    assert done.shape == (6, 16, 16)
    head = convert_series(tmp_path / "in", tmp_path / "head.nii", description="HEAD")
    assert head.shape == (4, 16, 16) and head.source["SeriesDescription"] == "head"
    single = tmp_path / "in" / "a"
    with pytest.raises(NoSeriesError, match="no series matches modality='MR'"):
        convert_series(single, tmp_path / "mr.nii", modality="MR")
    with pytest.raises(ValueError, match="select must be one of"):
        convert_series(single, tmp_path / "x.nii", select="newest")
    with pytest.raises(ValueError, match="description is not a valid regex"):
        convert_series(single, tmp_path / "x.nii", description="(")


def test_gzip_output_equals_the_library_file(tmp_path: Path) -> None:
    make_series(tmp_path / "in", slices=6, rows=16, cols=16)
    assert _same_as_library(tmp_path / "in", tmp_path / "ct.nii.gz").dtype == "int16"


def test_an_existing_file_is_replaced_and_errors_leave_it(tmp_path: Path) -> None:
    make_series(tmp_path / "in", slices=4, rows=16, cols=16)
    out = tmp_path / "ct.nii"
    out.write_bytes(b"old")
    convert_series(tmp_path / "in", out)
    assert out.stat().st_size == 352 + 4 * 16 * 16 * 2
    with pytest.raises(NoSeriesError, match="no series matches modality='MR'"):
        convert_series(tmp_path / "in", out, modality="MR")
    assert out.stat().st_size == 352 + 4 * 16 * 16 * 2
    with pytest.raises(ValueError, match=r"ct\.img: a NIfTI file name must end in"):
        convert_series(tmp_path / "in", tmp_path / "ct.img")


def test_unsigned_pixels_with_a_large_intercept(tmp_path: Path) -> None:
    """uint16 stored values above 32767 rescaled into int16 (16-bit wrap-around arithmetic)."""
    files = make_series(tmp_path / "in", slices=5, rows=16, cols=16, intercept=-32768.0,
                        shuffle=False)
    _rewrite(files, _unsigned)  # the same bits, read as unsigned: stored = HU + 32768
    assert _same_as_library(tmp_path / "in", tmp_path / "ct.nii").dtype == "int16"
    expected = np.stack([pydicom.dcmread(p).pixel_array.astype(np.int32) - 32768
                         for p in files])
    assert expected.max() > 0 and expected.min() < 0
    volume = np.frombuffer((tmp_path / "ct.nii").read_bytes()[352:], "<i2")
    np.testing.assert_array_equal(volume.reshape(expected.shape), expected)


@pytest.mark.parametrize("orientation", ["axial", "oblique"])
def test_fast_path_agrees_with_dcm2niix(tmp_path: Path, orientation: str) -> None:
    need_peer(shutil.which("dcm2niix") is not None, "dcm2niix")
    make_series(tmp_path / "in", slices=12, rows=24, cols=20, orientation=orientation)
    assert _is_fast(tmp_path / "in")
    convert_series(tmp_path / "in", tmp_path / "ours.nii")
    ours = nib.load(tmp_path / "ours.nii")
    theirs = nib.load(dcm2niix(tmp_path / "in", tmp_path / "d2n")[0])
    # dcm2niix stores the same values with the same scaling (-1024)
    assert (ours.dataobj.slope, ours.dataobj.inter) == (1.0, -1024.0)
    assert (theirs.dataobj.slope, theirs.dataobj.inter) == (1.0, -1024.0)
    ours, theirs = nib.as_closest_canonical(ours), nib.as_closest_canonical(theirs)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)

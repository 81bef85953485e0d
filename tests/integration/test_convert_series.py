"""convert_series (what ``clara-rt convert`` runs) writes load_series + write_nifti's file.

The uncompressed path streams slices into the file as they are read; these cases make it take
each branch: int16 in place, float32 (fractional slope), a slice that does not fit int16 (falls
back to the in-memory path), pydicom-decoded RLE slices, and ``.nii.gz`` (in-memory path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from clara_rt.operators.io import (
    NoSeriesError,
    convert_series,
    load_series,
    write_nifti,
)
from tests.data.dicom_series import make_series


def _same_as_library(src: Path, out: Path) -> str:
    done = convert_series(src, out)
    volume, meta = load_series(src)
    reference = write_nifti(volume, meta, out.with_name("reference" + out.name[
        out.name.index("."):]))
    assert out.read_bytes() == reference.read_bytes()
    assert done.shape == volume.shape and done.dtype == str(volume.dtype)
    assert done.meta.affine_ras.tolist() == meta.affine_ras.tolist()
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]  # no temporary left
    return done.dtype


@pytest.mark.parametrize(("kwargs", "dtype"), [
    ({}, "int16"),
    ({"slope": 1.5, "intercept": -1000.0}, "float32"),
    ({"transfer_syntax": RLELossless}, "int16"),
])
def test_streamed_file_equals_the_library_file(tmp_path: Path, kwargs: dict[str, object],
                                               dtype: str) -> None:
    make_series(tmp_path / "in", slices=11, rows=20, cols=18, orientation="oblique",
                **kwargs)  # type: ignore[arg-type]
    assert _same_as_library(tmp_path / "in", tmp_path / "ct.nii") == dtype


def test_a_slice_out_of_int16_falls_back_to_float32(tmp_path: Path) -> None:
    files = make_series(tmp_path / "in", slices=9, rows=16, cols=16)
    ds = pydicom.dcmread(files[4])
    ds.RescaleSlope = 100  # integral, but stored * 100 leaves int16
    ds.save_as(files[4], enforce_file_format=True)
    assert _same_as_library(tmp_path / "in", tmp_path / "ct.nii") == "float32"


def test_gzip_output_equals_the_library_file(tmp_path: Path) -> None:
    make_series(tmp_path / "in", slices=6, rows=16, cols=16)
    assert _same_as_library(tmp_path / "in", tmp_path / "ct.nii.gz") == "int16"


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
    for path in files:  # the same bits, read as unsigned: stored = HU + 32768
        ds = pydicom.dcmread(path)
        ds.PixelRepresentation = 0
        ds.save_as(path, enforce_file_format=True)
    assert _same_as_library(tmp_path / "in", tmp_path / "ct.nii") == "int16"
    expected = np.stack([pydicom.dcmread(p).pixel_array.astype(np.int32) - 32768
                         for p in files])
    assert expected.max() > 0 and expected.min() < 0
    volume = np.frombuffer((tmp_path / "ct.nii").read_bytes()[352:], "<i2")
    np.testing.assert_array_equal(volume.reshape(expected.shape), expected)

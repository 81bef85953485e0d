"""Multi-frame DICOM (issue 17.7): Enhanced CT built from a generated series, against dcm2niix.

:func:`enhanced_ct` turns a generated single-frame series into one Enhanced CT Image Storage file
(frames in shuffled order, geometry only in the functional groups, per-frame rescale). The loader
must give the same volume and geometry from both, and dcm2niix the same NIfTI; mixed
orientations and several stacks in one file are refused with a clear message. pydicom's own
multi-frame files are compared in ``test_dicom_real_files.py`` (part 3).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from clara_rt.bench import checkout_env
from clara_rt.operators.io import DicomSeriesError, load_series
from tests.data.dicom_series import make_series, ours_vs_dcm2niix

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
_MOVED = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
          "SpacingBetweenSlices", "RescaleSlope", "RescaleIntercept", "RescaleType",
          "InstanceNumber", "SliceLocation")


def enhanced_ct(files: list[Path], out: Path, *, order: list[int] | None = None,
                intercepts: list[float] | None = None) -> Path:
    """Write ``files`` (single-frame CT slices) as one Enhanced CT file; return its path.

    Frame ``n`` holds slice ``order[n]``; with ``intercepts``, slice ``k``'s stored values are
    shifted so that RescaleIntercept ``intercepts[k]`` gives the same HU, per frame.
    """
    slices = [pydicom.dcmread(f) for f in files]
    order = order if order is not None else list(range(len(slices)))
    first = slices[0]
    ds = Dataset()
    for element in first:
        if element.keyword not in (*_MOVED, "PixelData"):
            ds.add(element)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT, generate_uid()
    ds.NumberOfFrames = len(order)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([_item(
        ImageOrientationPatient=first.ImageOrientationPatient)])
    shared.PixelMeasuresSequence = Sequence([_item(PixelSpacing=first.PixelSpacing,
                                                   SliceThickness=first.SliceThickness)])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, groups = [], []
    for k in order:
        base = float(slices[k].RescaleIntercept)
        intercept = intercepts[k] if intercepts is not None else base
        stored = slices[k].pixel_array.astype(np.int32) + int(base - intercept)
        frames.append(stored.astype(slices[k].pixel_array.dtype))
        group = Dataset()
        group.PlanePositionSequence = Sequence([_item(
            ImagePositionPatient=slices[k].ImagePositionPatient)])
        group.PixelValueTransformationSequence = Sequence([_item(
            RescaleIntercept=intercept, RescaleSlope=slices[k].RescaleSlope, RescaleType="HU")])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    ds.PixelData = np.stack(frames).tobytes()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID, ds.SOPInstanceUID)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _shuffled(n: int) -> list[int]:
    return [int(k) for k in np.random.default_rng(7).permutation(n)]


@pytest.mark.parametrize("orientation", ["axial", "oblique"])
def test_enhanced_ct_equals_its_single_frame_series_and_dcm2niix(tmp_path: Path,
                                                                 orientation: str) -> None:
    files = make_series(tmp_path / "single", slices=12, rows=32, cols=40,
                        orientation=orientation)  # type: ignore[arg-type]
    enhanced_ct(files, tmp_path / "multi", order=_shuffled(12))
    enhanced_ct(files, tmp_path / "rescaled", order=_shuffled(12),
                intercepts=[-1024.0 + 8 * k for k in range(12)])
    single, meta_single = load_series(tmp_path / "single")
    for folder in ("multi", "rescaled"):
        multi, meta_multi = load_series(tmp_path / folder)
        np.testing.assert_array_equal(multi, single)
        assert multi.dtype == np.int16
        np.testing.assert_allclose(meta_multi.affine_lps, meta_single.affine_lps, atol=1e-6)
        assert meta_multi.warnings == ()
        assert "FrameNumbers" not in meta_single.source
        uids, numbers = meta_multi.source["SOPInstanceUIDs"], meta_multi.source["FrameNumbers"]
        assert len(set(uids)) == 1 and sorted(numbers) == list(range(1, 13))
        assert [_shuffled(12)[n - 1] for n in numbers] == list(range(12))  # slice k's frame
    # dcm2niix applies one frame's rescale (the last one's, here) to every frame: constant one
    ours_vs_dcm2niix(tmp_path / "multi", tmp_path)


def test_compressed_enhanced_ct_is_decoded_frame_by_frame(tmp_path: Path) -> None:
    files = make_series(tmp_path / "single", slices=6, rows=32, cols=32)
    path = enhanced_ct(files, tmp_path / "multi", order=_shuffled(6))
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    multi, meta = load_series(tmp_path / "multi")
    single, meta_single = load_series(tmp_path / "single")
    np.testing.assert_array_equal(multi, single)
    np.testing.assert_allclose(meta.affine_lps, meta_single.affine_lps, atol=1e-6)


def test_mixed_orientations_are_refused(tmp_path: Path) -> None:
    files = make_series(tmp_path / "single", slices=4, rows=16, cols=16)
    path = enhanced_ct(files, tmp_path / "multi")
    ds = pydicom.dcmread(path)
    ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence = Sequence([_item(
        ImageOrientationPatient=[1, 0, 0, 0, 0, -1])])  # a coronal localizer frame
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match=r"enhanced\.dcm: frames of this series have 2 "
                                               r"orientations \(\[1\.0, 0\.0, 0\.0, 0\.0, 1\.0, "
                                               r"0\.0\] .*; a volume needs one"):
        load_series(tmp_path / "multi")


def test_several_stacks_in_one_file_are_refused(tmp_path: Path) -> None:
    files = make_series(tmp_path / "single", slices=3, rows=16, cols=16)
    enhanced_ct([*files, *files], tmp_path / "multi")  # two echoes at the same positions
    with pytest.raises(DicomSeriesError, match=r"enhanced\.dcm: 6 frames at only 3 distinct "
                                               r"positions: several stacks in one file"):
        load_series(tmp_path / "multi")


def test_two_frames_at_one_position_are_refused_as_4d(tmp_path: Path) -> None:
    files = make_series(tmp_path / "single", slices=1, rows=16, cols=16)
    enhanced_ct([*files, *files], tmp_path / "multi")  # two echoes of one slice
    with pytest.raises(DicomSeriesError,
                       match=r"2 frames at only 1 distinct position: several stacks"):
        load_series(tmp_path / "multi")


def test_frames_without_positions_are_refused(tmp_path: Path) -> None:
    files = make_series(tmp_path / "single", slices=3, rows=16, cols=16)
    path = enhanced_ct(files, tmp_path / "multi")
    ds = pydicom.dcmread(path)
    for group in ds.PerFrameFunctionalGroupsSequence:
        del group.PlanePositionSequence
    ds.ImagePositionPatient = [0, 0, 0]
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match=r"3 frames without a position of their own"):
        load_series(tmp_path / "multi")


def test_convert_cli_writes_an_enhanced_ct(tmp_path: Path) -> None:
    files = make_series(tmp_path / "single", slices=8, rows=24, cols=24, orientation="oblique")
    enhanced_ct(files, tmp_path / "multi", order=_shuffled(8))
    out = tmp_path / "multi.nii.gz"
    done = subprocess.run([sys.executable, "-m", "clara_rt.cli", "convert",
                           str(tmp_path / "multi"), str(out)], capture_output=True, text=True,
                          timeout=120, env=checkout_env(), check=False)
    assert done.returncode == 0, done.stderr
    assert "24x24x8 int16" in done.stdout and "0 warning(s)" in done.stdout
    single, meta = load_series(tmp_path / "single")
    image = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), single.transpose(2, 1, 0))
    np.testing.assert_allclose(image.affine, meta.affine_ras, atol=1e-4)
    record = subprocess.run([sys.executable, "-m", "clara_rt.cli", "convert", "--json",
                             "--overwrite", str(tmp_path / "multi"), str(out)],
                            capture_output=True, text=True, timeout=120, env=checkout_env(),
                            check=True).stdout
    assert '"shape_kji": [8, 24, 24]' in record and '"files": 1,' in record
    shutil.rmtree(tmp_path / "single")


def test_header_ending_exactly_at_the_first_chunk_is_read_on(tmp_path: Path) -> None:
    """A header whose first 16 KiB end on an element boundary before Pixel Data (long private
    data, large functional groups) is an image, not a file without pixels."""
    [path] = make_series(tmp_path / "one", slices=1, rows=16, cols=16)
    pixels_at = path.read_bytes().index(b"\xe0\x7f\x10\x00O")
    ds = pydicom.dcmread(path)
    block = ds.private_block(0x0009, "CLARA-RT TEST", create=True)  # 8 + 14 bytes
    length = 16384 - (pixels_at + 8 + 14 + 12)
    block.add_new(0x10, "OB", b"\0" * length)
    ds.save_as(path, enforce_file_format=True)
    assert path.read_bytes().index(b"\xe0\x7f\x10\x00O") == 16384
    volume, _ = load_series(tmp_path / "one")
    assert volume.shape == (1, 16, 16)


def test_one_frame_enhanced_ct_takes_its_geometry_from_the_functional_groups(
        tmp_path: Path) -> None:
    """An Enhanced CT of NumberOfFrames 1 is placed where its PlanePositionSequence says."""
    files = make_series(tmp_path / "single", slices=3, rows=16, cols=20,
                        orientation="oblique")  # type: ignore[arg-type]
    for k, file in enumerate(files):
        enhanced_ct([file], tmp_path / f"one{k}")
        volume, meta = load_series(tmp_path / f"one{k}")
        reference = pydicom.dcmread(file)
        assert volume.shape == (1, 16, 20)
        np.testing.assert_allclose(meta.affine_lps[:3, 3],
                                   [float(v) for v in reference.ImagePositionPatient], atol=1e-6)
        assert not any("assuming" in w for w in meta.warnings), meta.warnings

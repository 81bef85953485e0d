"""``load_series`` on every real image series and compressed file of pydicom's test data.

The files come from pydicom's own ``test_files`` and the ``pydicom-data`` package (module
``data_store``; ``get_testdata_files`` lists both). Part 1 groups them by SeriesInstanceUID
(then by orientation and size) and compares every multi-slice CT/MR/PT series with dcm2niix as
``test_dicom_series.py`` does: both sides as NIfTI, nibabel's closest canonical orientation,
equal voxels, affines within 1e-4. Every group that is *not* such a series is listed with its
reason in :data:`NOT_A_SERIES`, and an inventory test keeps that list honest.

Part 2 loads single files in each compressed syntax (JPEG Baseline/Extended/Lossless, JPEG-LS,
JPEG 2000, RLE) through the pylibjpeg plugins: the volume must equal pydicom's own
``pixel_array`` with the modality rescale, and dcm2niix's output wherever dcm2niix decodes the
file (each exception is listed with the reason in :data:`SINGLE_FILES`).

Part 3 loads the multi-frame files (Enhanced CT with functional groups, Enhanced MR without
geometry in five encodings, RT Dose with GridFrameOffsetVector in three): voxels must equal
pydicom's frames sorted along the normal with their rescale, and dcm2niix's output as
:data:`MULTI_FRAME` says; the other encodings must equal their original.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.pixels import apply_rescale

from clara_rt.operators.io import DicomSeriesError, load_series
from tests.conftest import need_peer
from tests.data.dicom_series import ours_vs_dcm2niix

HAS_DATA_STORE = importlib.util.find_spec("data_store") is not None
HAS_PLUGINS = all(importlib.util.find_spec(m) is not None
                  for m in ("pylibjpeg", "libjpeg", "openjpeg", "rle"))
_SERIES_SYNTAXES = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",  # uncompressed
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",  # JPEG Baseline / Extended
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",  # JPEG Lossless
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG-LS
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
}

# --- part 1: every multi-slice series ----------------------------------------------------------

MULTI_SLICE_SERIES = {
    "98892001/CT5N": {},
    # one slice at z=-99.48, three at 103.02..105.52: we use the median step, dcm2niix the first
    # (test_dicom_series.py::test_pydicom_ct_series_with_a_gap checks both values)
    "77654033/CT2": {"free_slice_spacing": True},
}
"""Every group of >= 2 CT/MR/PT slices that share a series, orientation and size at distinct
positions (with per-series comparison options)."""

NOT_A_SERIES = {
    # the same image in several encodings: one position (part 2 compares the encodings)
    "CT/693_J2KI": "4 files, 1 position: encodings of one image",
    "MR/MR2_J2KI": "4 files, 1 position: encodings of one image",
    "MR/MR_small": "9 files, 1 position: encodings of one image",  # + MR_truncated.dcm
    # examples_overlay.dcm is a 300-row crop of MR-SIEMENS-DICOM-WithOverlays.dcm (484 rows)
    "MR/MR-SIEMENS-DICOM-WithOverlays": "2 files, 2 orientations/sizes: no two slices to stack",
    # dicomdirtests series whose slices each have their own orientation: the loader keeps one
    # (test_dicom_series.py::test_mixed_orientations_keep_the_largest_group)
    "98892001/CT2N": "2 files, 2 orientations/sizes: no two slices to stack",
    "98892003/MR2": "3 files, 3 orientations/sizes: no two slices to stack",
    "98892003/MR2#2": "3 files, 3 orientations/sizes: no two slices to stack",
    "98892003/MR700": "7 files, 7 orientations/sizes: no two slices to stack",
}
"""Every other series of >= 2 CT/MR/PT files with ImagePositionPatient in a stackable syntax,
and why it is no multi-slice series."""


@cache
def _testdata() -> dict[str, Path]:
    return {Path(f).name: Path(f) for f in get_testdata_files()}


@cache
def _discover() -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Group pydicom's test files into series; return (multi-slice series, the others + why)."""
    with warnings.catch_warnings():  # some test files carry invalid values on purpose
        warnings.simplefilter("ignore")
        return _group()


def _group() -> tuple[dict[str, list[Path]], dict[str, str]]:
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for path in sorted(set(_testdata().values())):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # DICOMDIRs, JSON, dumps, damaged files: not images
            continue
        syntax = str(getattr(ds.get("file_meta"), "TransferSyntaxUID", ""))
        if ("SeriesInstanceUID" not in ds or ds.get("Modality") not in ("CT", "MR", "PT")
                or "ImagePositionPatient" not in ds or syntax not in _SERIES_SYNTAXES
                or int(ds.get("NumberOfFrames", 1) or 1) != 1):
            continue
        series[ds.SeriesInstanceUID].append((path, ds))
    found: dict[str, list[Path]] = {}
    others: dict[str, str] = {}
    for uid in sorted(series):
        members = series[uid]
        if len(members) < 2:
            continue
        label = _label(members)
        while label in found or label in others:
            label = label.split("#")[0] + f"#{int(label.partition('#')[2] or 1) + 1}"
        stacks: dict[tuple[Any, ...], list[tuple[Path, Any]]] = defaultdict(list)
        for path, ds in members:
            iop = tuple(round(float(v), 4) for v in ds.ImageOrientationPatient)
            stacks[(iop, ds.Rows, ds.Columns)].append((path, ds))
        multi = [s for s in stacks.values() if len(_positions(s)) >= 2]
        if multi:
            assert len(multi) == 1, f"{label}: several stacks ({len(multi)}); name each one"
            found[label] = sorted(p for p, _ in multi[0])
        elif len(stacks) == 1:
            others[label] = (f"{len(members)} files, {len(_positions(members))} position: "
                             "encodings of one image")
        else:
            others[label] = (f"{len(members)} files, {len(stacks)} orientations/sizes: "
                             "no two slices to stack")
    return found, others


def _label(members: list[tuple[Path, Any]]) -> str:
    path, ds = min(members)
    if "dicomdirtests" in path.parts:
        return "/".join(path.parts[-3:-1])
    return f"{ds.Modality}/{min(p.stem for p, _ in members)}"


def _positions(members: list[tuple[Path, Any]]) -> set[tuple[float, ...]]:
    return {tuple(round(float(v), 3) for v in ds.ImagePositionPatient) for _, ds in members}


def test_series_inventory() -> None:
    """The discovered series and exclusions are exactly the documented ones."""
    need_peer(HAS_DATA_STORE, "pydicom-data (pip install pydicom-data)")
    found, others = _discover()
    assert sorted(found) == sorted(MULTI_SLICE_SERIES)
    assert others == NOT_A_SERIES


@pytest.mark.parametrize("label", sorted(MULTI_SLICE_SERIES))
def test_real_series_equals_dcm2niix(tmp_path: Path, label: str) -> None:
    need_peer(HAS_DATA_STORE, "pydicom-data (pip install pydicom-data)")
    files = _discover()[0].get(label)
    assert files, f"series {label} not found among pydicom's test files"
    src = tmp_path / "in"
    src.mkdir()
    for f in files:
        (src / f.name).symlink_to(f)
    volume, _ = load_series(src)
    assert volume.shape[0] == len(files)
    ours_vs_dcm2niix(src, tmp_path, **MULTI_SLICE_SERIES[label])


# --- part 2: compressed (and reference) single files ------------------------------------------

NO_GEOMETRY = "no ImagePositionPatient: the loader assumes the origin, dcm2niix does not"
SINGLE_FILES: dict[str, str | None] = {
    # name: None (compare with dcm2niix) or why dcm2niix is left out
    "MR_small.dcm": None,
    "MR_small_RLE.dcm": None,
    "MR_small_jp2klossless.dcm": None,
    "MR_small_jpeg_ls_lossless.dcm": "dcm2niix (Debian build) has no JPEG-LS decoder",
    "693_UNCR.dcm": None,
    "693_J2KR.dcm": None,
    "693_J2KI.dcm": None,  # lossy JPEG 2000: OpenJPEG on both sides, equal voxels
    "MR2_UNCR.dcm": None,  # float32 rescale
    "MR2_J2KR.dcm": "dcm2niix: 'Compressed image stored as 9 fragments'",
    "MR2_J2KI.dcm": "dcm2niix: 'Compressed image stored as 2 fragments'",
    "JPEG-LL.dcm": "dcm2niix: 'Compressed image stored as 2 fragments'",
    "JPGExtended.dcm": "dcm2niix: 'Unable to decode 16-bit images with Transfer Syntax "
                       "1.2.840.10008.1.2.4.51'",
    "J2K_pixelrep_mismatch.dcm": "signed header, unsigned J2K stream: pydicom corrects the "
                                 "sign, dcm2niix does not (values differ by 8192)",
    "JPEG2000.dcm": NO_GEOMETRY,
    "JPEG2000_UNC.dcm": NO_GEOMETRY,
    "JPGLosslessP14SV1_1s_1f_8b.dcm": NO_GEOMETRY,
}
LOSSLESS_TWINS = [  # (compressed, uncompressed original): the same volume and geometry
    ("MR_small_RLE.dcm", "MR_small.dcm"),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
    ("MR_small_expb.dcm", "MR_small.dcm"),
    ("MR_small_bigendian.dcm", "MR_small.dcm"),
    ("MR_small_implicit.dcm", "MR_small.dcm"),
    ("693_J2KR.dcm", "693_UNCR.dcm"),
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),
]  # JPEG-LL.dcm is not JPEG2000_UNC.dcm losslessly (that one is the lossy JPEG2000.dcm)


def _single(tmp_path: Path, name: str) -> Path:
    need_peer(HAS_PLUGINS, "pylibjpeg plugins (pip install 'clara-rt[dicom]')")
    path = _testdata().get(name)
    if path is None:  # only the pydicom-data files can be missing
        need_peer(HAS_DATA_STORE, "pydicom-data (pip install pydicom-data)")
        pytest.fail(f"{name} not among pydicom's test files")
    folder = tmp_path / name.removesuffix(".dcm")
    folder.mkdir()
    (folder / name).symlink_to(path)
    return folder


@pytest.mark.parametrize("name", list(SINGLE_FILES))
def test_single_file_equals_pydicom_and_dcm2niix(tmp_path: Path, name: str) -> None:
    folder = _single(tmp_path, name)
    volume, meta = load_series(folder)
    with warnings.catch_warnings():  # J2K_pixelrep_mismatch: pydicom warns it corrects the sign
        warnings.simplefilter("ignore", UserWarning)
        ds = pydicom.dcmread(folder / name)
        expected = apply_rescale(ds.pixel_array, ds)
    assert volume.shape == (1, *expected.shape)
    if volume.dtype == np.float32:  # float32 arithmetic vs pydicom's float64: 1 ulp
        np.testing.assert_allclose(volume[0], expected, rtol=1e-6)
    else:
        assert volume.dtype == np.int16
        np.testing.assert_array_equal(volume[0], expected)
    reason = SINGLE_FILES[name]
    if reason == NO_GEOMETRY:
        ours_vs_dcm2niix(folder, tmp_path, compare_affine=False)
        assert any("no ImagePositionPatient" in w for w in meta.warnings)
    elif reason is None:
        ours_vs_dcm2niix(folder, tmp_path, exact=volume.dtype != np.float32)


@pytest.mark.parametrize(("compressed", "original"), LOSSLESS_TWINS,
                         ids=[c.removesuffix(".dcm") for c, _ in LOSSLESS_TWINS])
def test_lossless_encodings_equal_the_original(tmp_path: Path, compressed: str,
                                               original: str) -> None:
    _assert_same_volume(tmp_path, compressed, original)


def test_undecodable_file_fails_like_pydicom(tmp_path: Path) -> None:
    """JPEG-lossy.dcm has a misplaced marker: pydicom's decoders reject it, so must we."""
    folder = _single(tmp_path, "JPEG-lossy.dcm")
    with pytest.raises(RuntimeError, match="misplaced marker"):
        _ = pydicom.dcmread(folder / "JPEG-lossy.dcm").pixel_array
    with pytest.raises(DicomSeriesError, match=r"JPEG-lossy\.dcm: cannot decode its pixel data"):
        load_series(folder)


# --- part 3: multi-frame files (issue 17.7) -----------------------------------------------------

NO_FRAME_GEOMETRY = ("no position, orientation or pixel spacing at all: frames stacked in file "
                     "order; dcm2niix writes the same array under a made-up affine")
MULTI_FRAME: dict[str, str | None] = {
    # name: None (voxels and affine equal dcm2niix's) or how the comparison differs, and why
    "eCT_Supplemental.dcm": None,  # Enhanced CT: per-frame PlanePosition, shared groups
    "emri_small.dcm": NO_FRAME_GEOMETRY,  # Enhanced MR stripped of its functional groups
    "emri_small_big_endian.dcm": NO_FRAME_GEOMETRY,
    "rtdose.dcm": "dcm2niix ignores GridFrameOffsetVector (1 mm steps); we place the frames at "
                  "its 5 mm offsets",
    "rtdose_expb.dcm": "dcm2niix ignores GridFrameOffsetVector (1 mm steps); we place the "
                       "frames at its 5 mm offsets",
}
MULTI_FRAME_TWINS = [  # (encoding, original): the same volume and geometry
    ("emri_small_big_endian.dcm", "emri_small.dcm"),
    ("emri_small_RLE.dcm", "emri_small.dcm"),  # dcm2niix: 'stored as 11 fragments'
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),  # dcm2niix decodes frame 1 only
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),  # dcm2niix: no JPEG-LS decoder
    ("rtdose_expb.dcm", "rtdose.dcm"),
    ("rtdose_rle.dcm", "rtdose.dcm"),  # dcm2niix decodes 32-bit RLE wrongly
]


@pytest.mark.parametrize("name", list(MULTI_FRAME))
def test_multi_frame_file_equals_pydicom_and_dcm2niix(tmp_path: Path, name: str) -> None:
    import nibabel as nib

    from clara_rt.operators.io import write_nifti
    from tests.data.dicom_series import dcm2niix

    folder = _single(tmp_path, name)
    volume, meta = load_series(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = pydicom.dcmread(folder / name)
        frames = np.asarray(ds.pixel_array, dtype=np.float64)
    assert volume.shape == frames.shape and volume.shape[0] == int(ds.NumberOfFrames) > 1
    order = _frame_order(ds)
    expected = frames[order] * _per_frame(ds, "RescaleSlope", 1.0)[order, None, None] + (
        _per_frame(ds, "RescaleIntercept", 0.0)[order, None, None])
    np.testing.assert_array_equal(volume, expected)  # int16, or float32 holding exact integers
    reason = MULTI_FRAME[name]
    if reason is None:
        ours_vs_dcm2niix(folder, tmp_path)
    elif reason == NO_FRAME_GEOMETRY:
        assert any("without position or orientation" in w for w in meta.warnings)
        ours = nib.load(write_nifti(volume, meta, tmp_path / "ours.nii.gz"))
        theirs = nib.load(dcm2niix(folder, tmp_path / "d2n")[0])
        np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(theirs.dataobj))
        assert meta.spacing == (1.2, 1.0, 1.0)  # SpacingBetweenSlices; no PixelSpacing
    else:
        ours_vs_dcm2niix(folder, tmp_path, free_slice_spacing=True)
        assert meta.spacing == (5.0, 10.0, 10.0)


@pytest.mark.parametrize(("encoded", "original"), MULTI_FRAME_TWINS,
                         ids=[c.removesuffix(".dcm") for c, _ in MULTI_FRAME_TWINS])
def test_multi_frame_encodings_equal_the_original(tmp_path: Path, encoded: str,
                                                  original: str) -> None:
    _assert_same_volume(tmp_path, encoded, original)


def _assert_same_volume(tmp_path: Path, encoded: str, original: str) -> None:
    """The two files load to the same voxels, dtype and geometry."""
    a, meta_a = load_series(_single(tmp_path, encoded))
    b, meta_b = load_series(_single(tmp_path, original))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype
    np.testing.assert_allclose(meta_a.affine_lps, meta_b.affine_lps, atol=1e-6)


def _frame_order(ds: pydicom.Dataset) -> np.ndarray:
    """Frames sorted along the slice normal, as the loader must sort them (file order if none)."""
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    if groups:
        positions = np.array([g.PlanePositionSequence[0].ImagePositionPatient for g in groups],
                             float)
        iop = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
        iop = np.asarray(iop.ImageOrientationPatient, float)
        return np.argsort(positions @ np.cross(iop[:3], iop[3:]), kind="stable")
    offsets = ds.get("GridFrameOffsetVector")
    return np.argsort(np.asarray(offsets, float), kind="stable") if offsets else np.arange(
        int(ds.NumberOfFrames))


def _per_frame(ds: pydicom.Dataset, keyword: str, default: float) -> np.ndarray:
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    count = int(ds.NumberOfFrames)
    for source in ([g for g in groups] if groups else None, [shared[0]] * count if shared else
                   None):
        if source and all("PixelValueTransformationSequence" in g for g in source):
            return np.array([float(g.PixelValueTransformationSequence[0].get(keyword, default))
                             for g in source])
    return np.full(count, float(ds.get(keyword, default)))


# --- helpers --------------------------------------------------------------------------------



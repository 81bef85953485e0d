"""Generated DICOM CT series (real files written with pydicom) for the loader tests and benchmark.

:func:`make_series` writes one CT Image Storage series: a deterministic phantom (body, lungs, spine
and a slice-dependent marker, so a mis-sorted slice shows), axial or oblique, regular or jittered
spacing, with slices left out, in shuffled file order, uncompressed or RLE Lossless. :func:`corpus`
writes a folder mixing several series with junk, non-image and truncated files.
:func:`pydicom_file` and :func:`dicomdir_series` point at pydicom's bundled test files;
:func:`dcm2niix` runs the reference converter.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

__all__ = ["Corpus", "add_header_clutter", "corpus", "dcm2niix", "dicomdir_series", "make_series",
           "oblique_cosines", "phantom_slice", "pydicom_file"]

Orientation = Literal["axial", "oblique"]


def make_series(folder: str | Path, *, slices: int = 300, rows: int = 512, cols: int = 512,
                orientation: Orientation = "axial",
                spacing: tuple[float, float, float] = (1.25, 0.7, 0.7),
                irregular: bool = False, missing: tuple[int, ...] | list[int] = (),
                shuffle: bool = True, slope: float = 1.0, intercept: float = -1024.0,
                series_uid: str | None = None, transfer_syntax: str = ExplicitVRLittleEndian,
                seed: int = 0, description: str = "generated phantom",
                study_uid: str | None = None, scramble_instance_numbers: bool = False,
                origin: tuple[float, float, float] = (-180.0, -170.0, -100.0)) -> list[Path]:
    """Write a CT series into ``folder`` and return the file paths in slice order.

    Args:
        folder: Created if missing.
        slices: Slices of the full grid (before ``missing`` ones are left out).
        rows: Rows per slice.
        cols: Columns per slice.
        orientation: ``"axial"`` (identity cosines) or ``"oblique"`` (rotated about two axes).
        spacing: ``(slice, row, column)`` spacing in mm, as :class:`VolumeMeta` orders it.
        irregular: Jitter each slice position by up to 10% of the slice spacing.
        missing: Slice indices left out (a gap in the series).
        shuffle: Random file names, so the directory order says nothing about slice order.
        slope: RescaleSlope.
        intercept: RescaleIntercept; stored values are ``round((HU - intercept) / slope)``.
        series_uid: SeriesInstanceUID (new one when ``None``).
        transfer_syntax: ``ExplicitVRLittleEndian`` or a syntax ``Dataset.compress`` can encode
            (``RLELossless``; JPEG-LS with pyjpegls).
        seed: Seeds the phantom noise and the shuffling.
        description: SeriesDescription.
        study_uid: StudyInstanceUID (new one when ``None``).
        scramble_instance_numbers: Give InstanceNumber in random order (the loader must not use it).
        origin: LPS position of the first voxel of the first slice.

    Returns:
        The written files, in slice order (missing slices excluded).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    row_cos, col_cos = (np.eye(3)[0], np.eye(3)[1]) if orientation == "axial" else oblique_cosines()
    normal = np.cross(row_cos, col_cos)
    offsets = np.arange(slices) * spacing[0]
    if irregular:
        offsets = offsets + rng.uniform(-0.1, 0.1, slices) * spacing[0]
    keep = [k for k in range(slices) if k not in set(missing)]
    names = rng.permutation(len(keep)) if shuffle else np.arange(len(keep))
    numbers = rng.permutation(len(keep)) + 1 if scramble_instance_numbers else np.arange(
        len(keep)) + 1
    base = _base_dataset(rows, cols, spacing, row_cos, col_cos, slope, intercept,
                         series_uid or generate_uid(), study_uid or generate_uid(), description)
    paths: list[Path] = []
    for n, k in enumerate(keep):
        hu = phantom_slice(k, slices, rows, cols, seed)
        stored = np.round((hu - intercept) / slope).astype(np.int16)
        position = np.asarray(origin) + offsets[k] * normal
        path = folder / (f"{names[n]:08x}.dcm" if shuffle else f"IM{n:05d}.dcm")
        _write_slice(base, path, stored, position, int(numbers[n]), transfer_syntax)
        paths.append(path)
    return paths


def add_header_clutter(files: list[Path], *, implicit: bool = False,
                       private_bytes: int = 40000) -> None:
    """Rewrite ``files`` with what real headers carry and the fast scanner must walk past.

    Adds nested sequences of undefined length (items of undefined length too), a private OB
    element of ``private_bytes`` before the pixel data (a header longer than the scanner's first
    read), and optionally re-encodes as Implicit VR Little Endian. Pixels and geometry unchanged.
    """
    for path in files:
        ds = pydicom.dcmread(path)
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113691", "DCM", "x"
        code.is_undefined_length_sequence_item = True
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CTImageStorage, generate_uid()
        ref.PurposeOfReferenceCodeSequence = Sequence([code, code])
        ref.PurposeOfReferenceCodeSequence.is_undefined_length = True
        ref.is_undefined_length_sequence_item = True
        ds.ReferencedImageSequence = Sequence([ref, Dataset()])
        ds.ReferencedImageSequence.is_undefined_length = True
        ds.add_new(0x00290010, "LO", "CLARA RT TEST")
        ds.add_new(0x00291010, "OB", bytes(range(256)) * (private_bytes // 256))
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        pydicom.dcmwrite(path, ds, enforce_file_format=True)


def phantom_slice(k: int, slices: int, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Return slice ``k`` of the phantom in HU (float64, ``rows x cols``), deterministic."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cy, cx = rows / 2, cols / 2
    hu = np.full((rows, cols), -1000.0)
    hu[((y - cy) / (0.45 * rows)) ** 2 + ((x - cx) / (0.42 * cols)) ** 2 <= 1] = 40.0
    zc = (k - slices / 2) / max(slices / 2, 1)
    for side in (-1, 1):
        lung = ((y - cy) / (0.25 * rows)) ** 2 + ((x - cx - side * 0.2 * cols) / (
            0.12 * cols)) ** 2 <= max(1 - zc**2, 0)
        hu[lung] = -850.0
    hu[(y - 0.8 * rows) ** 2 + (x - cx) ** 2 <= (0.05 * rows) ** 2] = 700.0
    hu[: max(rows // 16, 1), : min(k + 1, cols)] = 300.0  # marker: its length is the slice index
    noise = np.random.default_rng((seed, k)).integers(-20, 21, (rows, cols))
    return hu + noise


def oblique_cosines() -> tuple[np.ndarray, np.ndarray]:
    """Return the oblique series' (row, column) cosines: 20 deg about x, then 15 about y."""
    a, b = np.deg2rad(20.0), np.deg2rad(15.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rot = ry @ rx
    return rot[:, 0], rot[:, 1]


@dataclass
class Corpus:
    """What :func:`corpus` wrote: the series folders' files, and the odd files among them."""

    root: Path
    series: dict[str, list[Path]] = field(default_factory=dict)
    """Description -> files (slice order) of each generated image series."""
    series_uids: dict[str, str] = field(default_factory=dict)
    """Description -> SeriesInstanceUID."""
    junk: list[Path] = field(default_factory=list)
    """Non-DICOM files, DICOMDIR and non-image objects (skipped silently)."""
    truncated: list[Path] = field(default_factory=list)
    """Damaged files (skipped with a warning naming them)."""


def corpus(root: str | Path, *, size: int = 32, truncate: bool = True) -> Corpus:
    """Write a mixed folder: three series, junk and non-image files, and (optionally) damage.

    Series (descriptions): ``"chest"`` (CT, 24 slices of ``size``), ``"head"`` (CT, 10 slices),
    ``"scout"`` (CT, 3 slices of ``size // 2``), in nested sub-folders. Junk: a text file, an
    empty file, a DICOMDIR and an RTSTRUCT from pydicom's test data. With ``truncate``, one extra
    ``chest`` slice cut in half (its pixel data) and a file of random bytes after a DICM preamble.
    """
    root = Path(root)
    out = Corpus(root)
    study = generate_uid()
    for desc, n, rows, sub in (("chest", 24, size, "a/b"), ("head", 10, size, "c"),
                               ("scout", 3, size // 2, "c/d")):
        uid = generate_uid()
        out.series_uids[desc] = uid
        out.series[desc] = make_series(root / sub, slices=n, rows=rows, cols=rows,
                                       series_uid=uid, study_uid=study, description=desc,
                                       seed=len(desc))
    (root / "notes.txt").write_text("not a DICOM file\n")
    (root / "c" / "empty.dcm").write_bytes(b"")
    out.junk += [root / "notes.txt", root / "c" / "empty.dcm"]
    for name, target in (("dicomdirtests/DICOMDIR", "DICOMDIR"), ("rtstruct.dcm", "rs.dcm")):
        shutil.copy(pydicom_file(name), root / target)
        out.junk.append(root / target)
    if truncate:
        out.truncated += _damaged_files(root, out.series["chest"][0])
    return out


def dcm2niix(src: str | Path, out: str | Path) -> list[Path]:
    """Convert ``src`` with the real dcm2niix (``-z y -b n -f %s``); return its ``.nii.gz`` files.

    The plain conversion comes first, before any ``_Eq`` (equalised) extra. Raises
    ``FileNotFoundError`` when dcm2niix is not installed (``apt-get install dcm2niix``).
    """
    exe = shutil.which("dcm2niix")
    if exe is None:
        raise FileNotFoundError("dcm2niix is not installed (apt-get install dcm2niix)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-z", "y", "-b", "n", "-o", str(out), "-f", "%s", str(src)],
                   check=True, capture_output=True, timeout=60)
    return sorted(out.glob("*.nii.gz"), key=lambda p: ("_Eq" in p.name, p.name))


def pydicom_file(name: str) -> Path:
    """Return the path of one of pydicom's bundled test files (``"CT_small.dcm"``...)."""
    base = Path(get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
    path = base / name
    if not path.exists():
        raise FileNotFoundError(f"pydicom test file {name} not found under {base}")
    return path


def dicomdir_series(name: str) -> Path:
    """Return a series folder of pydicom's ``dicomdirtests`` (``"98892001/CT5N"``...)."""
    return pydicom_file(f"dicomdirtests/{name}")


# --- private ------------------------------------------------------------------------------


def _base_dataset(rows: int, cols: int, spacing: tuple[float, float, float],
                  row_cos: np.ndarray, col_cos: np.ndarray, slope: float, intercept: float,
                  series_uid: str, study_uid: str, description: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.StudyDate, ds.StudyTime, ds.Manufacturer = "20240102", "101500", "clara-rt tests"
    ds.SeriesDescription, ds.SeriesNumber = description, 2
    ds.PatientName, ds.PatientID, ds.PatientSex = "Phantom^Chest", "PHANTOM01", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_uid, "for"])
    ds.StudyID, ds.AccessionNumber = "1", "A1"
    ds.SliceThickness, ds.KVP = spacing[0], 120
    ds.PixelSpacing = [spacing[1], spacing[2]]
    ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row_cos, *col_cos)]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    return ds


def _write_slice(base: Dataset, path: Path, stored: np.ndarray, position: np.ndarray,
                 number: int, transfer_syntax: str) -> None:
    ds = base.copy()
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.PixelData = stored.astype("<i2").tobytes()
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _damaged_files(root: Path, template: Path) -> list[Path]:
    """Write a half-length copy of ``template`` and a corrupt file; return both paths."""
    data = template.read_bytes()
    ds = pydicom.dcmread(template)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImagePositionPatient = [v + 0.5 for v in ds.ImagePositionPatient]
    whole = root / "a" / "cut_in_half.dcm"
    pydicom.dcmwrite(whole, ds, enforce_file_format=True)
    whole.write_bytes(whole.read_bytes()[: len(data) - len(ds.PixelData) // 2])
    garbage = root / "a" / "garbage.dcm"
    garbage.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(7).bytes(2000))
    return [whole, garbage]


def ours_vs_dcm2niix(src: Path, tmp: Path, *, exact: bool = True, free_slice_spacing: bool = False,
                     compare_affine: bool = True) -> tuple[Any, Any]:
    """Load ``src`` with clara-rt and with dcm2niix; compare both NIfTIs in canonical orientation.

    Voxels must be equal (``exact``) or within float rounding; affines within 1e-4, all of it or,
    with ``free_slice_spacing``, all but the length of the slice axis (clara-rt uses the median
    slice step, dcm2niix the first). Fails in CI, skips elsewhere, when dcm2niix is missing.
    Returns both images (canonical orientation).
    """
    import nibabel as nib

    from clara_rt.operators.io import load_series, write_nifti
    from tests.conftest import need_peer

    need_peer(shutil.which("dcm2niix") is not None, "dcm2niix")
    volume, meta = load_series(src)
    ours = nib.as_closest_canonical(nib.load(write_nifti(volume, meta, tmp / "ours.nii.gz")))
    theirs = nib.as_closest_canonical(nib.load(dcm2niix(src, tmp / "d2n")[0]))
    assert ours.shape == theirs.shape
    if exact:
        np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    else:
        np.testing.assert_allclose(ours.get_fdata(), theirs.get_fdata(), rtol=1e-6, atol=1e-4)
    if not compare_affine:
        return ours, theirs
    keep = list(range(4))
    if free_slice_spacing:  # the canonical column that carries the slice normal is left out
        normal = np.asarray(meta.direction)[:, 2] * np.array([-1, -1, 1])  # LPS -> RAS
        cols = ours.affine[:3, :3] / np.linalg.norm(ours.affine[:3, :3], axis=0)
        keep.remove(int(np.argmax(np.abs(cols.T @ normal))))
    np.testing.assert_allclose(ours.affine[:, keep], theirs.affine[:, keep], atol=1e-4)
    return ours, theirs

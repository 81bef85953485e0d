"""A chest CT phantom written as a real DICOM series (for `make demo` and the ct-lung-seg tests).

The voxels are :func:`tests.data.phantom.ct_phantom` (body, two lungs, spine; HU); the files
are CT Image Storage instances written with pydicom, one per axial slice, with random names so
that nothing but the geometry orders them.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from tests.data.phantom import ct_phantom

SPACING = (2.5, 0.7, 0.7)  # (slice, row, column) mm, as VolumeMeta orders it
ORIGIN = (-44.8, -44.8, -80.0)  # LPS of voxel [0, 0, 0]


def write_chest_series(folder: str | Path, *, shape: tuple[int, int, int] = (64, 128, 128),
                       seed: int = 0) -> list[Path]:
    """Write the phantom as a DICOM series into ``folder``; return the files in slice order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume = ct_phantom(shape, seed=seed)
    study, series = generate_uid(), generate_uid()
    base = _base(shape, study, series)
    rng = random.Random(seed)
    files = []
    for k in range(shape[0]):
        path = folder / f"{rng.getrandbits(64):016x}.dcm"
        _write(base, path, volume[k], k)
        files.append(path)
    return files


def _base(shape: tuple[int, int, int], study: str, series: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.Modality = CTImageStorage, "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName, ds.PatientID, ds.PatientSex = "Demo^Chest", "DEMO0001", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "D1"
    ds.SeriesNumber, ds.SeriesDescription, ds.Manufacturer = 1, "chest phantom", "clara-rt"
    ds.SliceThickness, ds.PixelSpacing = SPACING[0], [SPACING[1], SPACING[2]]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.Rows, ds.Columns, ds.SamplesPerPixel = shape[1], shape[2], 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    return ds


def _write(base: Dataset, path: Path, pixels: np.ndarray, k: int) -> None:
    ds = base.copy()
    ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), k + 1
    ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], round(ORIGIN[2] + k * SPACING[0], 4)]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.PixelData = pixels.astype("<i2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)

"""A chest CT phantom (body, two air-filled lungs, spine) written as a DICOM series.

The bench scenarios that run the ``ct-lung-seg`` pipeline (``priority``, ``e2e``) need a series
with lungs in it; ``tests/data/chest_dicom.py`` is not importable from the package, so this is
the same phantom (``tests/data/phantom.py``) with a compact pydicom writer. Series are cached
under the system temp dir, keyed by shape.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

SPACING = (2.5, 0.7, 0.7)  # (slice, row, column) mm
_LAYOUT = 2  # bump when the generated files change, so stale caches are not reused


def chest_series(shape: tuple[int, int, int] = (64, 128, 128)) -> Path:
    """Return a cached folder holding the chest phantom of ``shape`` (z, y, x) as CT slices."""
    root = Path(tempfile.gettempdir()) / (
        f"clara-rt-bench-chest-v{_LAYOUT}-{shape[0]}x{shape[1]}x{shape[2]}")
    done = root / "complete"
    if done.exists():
        return root / "series"
    shutil.rmtree(root, ignore_errors=True)
    (root / "series").mkdir(parents=True)
    write_chest(root / "series", shape)
    done.write_text("ok\n")
    return root / "series"


def chest_phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Return the int16 HU phantom (same geometry as ``tests/data/phantom.ct_phantom``)."""
    z, y, x = np.indices(shape, dtype=np.float32)
    cz, cy, cx = (s / 2 for s in shape)
    vol = np.full(shape, -1000, dtype=np.int16)
    body = ((y - cy) / (0.45 * shape[1])) ** 2 + ((x - cx) / (0.45 * shape[2])) ** 2 <= 1
    vol[body] = 40
    for side in (-1, 1):
        lung = (((y - cy) / (0.25 * shape[1])) ** 2
                + ((x - cx - side * 0.2 * shape[2]) / (0.13 * shape[2])) ** 2
                + ((z - cz) / (0.4 * shape[0])) ** 2) <= 1
        vol[lung] = -850
    spine = ((y - cy - 0.3 * shape[1]) ** 2 + (x - cx) ** 2) <= (0.05 * shape[1]) ** 2
    vol[spine & body] = 700
    noise = np.random.default_rng(seed).normal(0, 15, shape).astype(np.int16)
    return vol + noise


def write_chest(folder: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """Write :func:`chest_phantom` into ``folder``: one CT Image Storage file per slice."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    volume = chest_phantom(shape, seed)
    base = Dataset()
    base.SOPClassUID, base.Modality, base.ImageType = CTImageStorage, "CT", [
        "ORIGINAL", "PRIMARY", "AXIAL"]
    base.StudyDate, base.StudyTime, base.Manufacturer = "20240102", "101500", "clara-rt bench"
    base.SeriesDescription, base.SeriesNumber = "chest phantom", 2
    base.PatientName, base.PatientID, base.PatientSex = "Phantom^Chest", "BENCH01", "O"
    base.StudyInstanceUID, base.SeriesInstanceUID = generate_uid(), generate_uid()
    base.FrameOfReferenceUID = generate_uid()
    base.StudyID, base.AccessionNumber = "1", "A1"
    base.PatientBirthDate, base.ReferringPhysicianName = "", ""  # type 2: present, may be empty
    base.SliceThickness, base.KVP = SPACING[0], 120
    base.PixelSpacing = [SPACING[1], SPACING[2]]
    base.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    base.SamplesPerPixel, base.PhotometricInterpretation = 1, "MONOCHROME2"
    base.Rows, base.Columns = shape[1], shape[2]
    base.BitsAllocated, base.BitsStored, base.HighBit, base.PixelRepresentation = 16, 16, 15, 1
    base.RescaleSlope, base.RescaleIntercept, base.RescaleType = 1, 0, "HU"
    base.WindowCenter, base.WindowWidth = 40, 400
    rng = np.random.default_rng(seed)
    for k in range(shape[0]):
        ds = base.copy()
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), k + 1
        ds.ImagePositionPatient = [-44.8, -44.8, -80.0 + k * SPACING[0]]
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = volume[k].astype("<i2").tobytes()
        pydicom.dcmwrite(folder / f"{int(rng.integers(2**62)):016x}.dcm", ds,
                         enforce_file_format=True)

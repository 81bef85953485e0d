"""A chest CT phantom written as a real DICOM series (for `make demo` and the ct-lung-seg tests).

The voxels are :func:`tests.data.phantom.ct_phantom` (body, two lungs, spine; HU); the files
are CT Image Storage instances written with pydicom, one per axial slice, with random names so
that nothing but the geometry orders them.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.data.dicom_series import _base_dataset, _write_slice
from tests.data.phantom import ct_phantom

SPACING = (2.5, 0.7, 0.7)  # (slice, row, column) mm, as VolumeMeta orders it
ORIGIN = (-44.8, -44.8, -80.0)  # LPS of voxel [0, 0, 0]


def write_chest_series(folder: str | Path, *, shape: tuple[int, int, int] = (64, 128, 128),
                       seed: int = 0) -> list[Path]:
    """Write the phantom as a DICOM series into ``folder``; return the files in slice order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume = ct_phantom(shape, seed=seed)
    base = _base_dataset(shape[1], shape[2], SPACING, np.array([1.0, 0.0, 0.0]),
                         np.array([0.0, 1.0, 0.0]), 1.0, 0.0, generate_uid(), generate_uid(),
                         "chest phantom")
    rng = random.Random(seed)
    files = []
    for k in range(shape[0]):
        path = folder / f"{rng.getrandbits(64):016x}.dcm"
        position = np.array([ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * SPACING[0]])
        _write_slice(base, path, volume[k], position, k + 1, ExplicitVRLittleEndian)
        files.append(path)
    return files

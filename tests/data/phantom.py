"""Synthetic CT phantom: a body cylinder with two air-filled 'lungs' and a dense 'spine'.

Deterministic (seeded), so tests and the demo can check exact voxel counts. The geometry lives
in one place, :func:`clara_rt.bench._chest.chest_phantom` (the benchmarks need it too and
cannot import the tests).
"""

from __future__ import annotations

import numpy as np

from clara_rt.bench._chest import chest_phantom


def ct_phantom(shape: tuple[int, int, int] = (64, 128, 128), seed: int = 0) -> np.ndarray:
    """Return an int16 volume in Hounsfield units, axes (z, y, x)."""
    return chest_phantom(shape, seed)

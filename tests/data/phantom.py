"""Synthetic CT phantom: a body cylinder with two air-filled 'lungs' and a dense 'spine'.

Deterministic (seeded), so tests and the demo can check exact voxel counts.
"""

from __future__ import annotations

import numpy as np


def ct_phantom(shape: tuple[int, int, int] = (64, 128, 128), seed: int = 0) -> np.ndarray:
    """Return an int16 volume in Hounsfield units, axes (z, y, x)."""
    z, y, x = np.indices(shape, dtype=np.float32)
    cz, cy, cx = (s / 2 for s in shape)
    vol = np.full(shape, -1000, dtype=np.int16)  # air around the body
    body = ((y - cy) / (0.45 * shape[1])) ** 2 + ((x - cx) / (0.45 * shape[2])) ** 2 <= 1
    vol[body] = 40  # soft tissue
    for side in (-1, 1):
        lung = (((y - cy) / (0.25 * shape[1])) ** 2
                + ((x - cx - side * 0.2 * shape[2]) / (0.13 * shape[2])) ** 2
                + ((z - cz) / (0.4 * shape[0])) ** 2) <= 1
        vol[lung] = -850
    spine = ((y - cy - 0.3 * shape[1]) ** 2 + (x - cx) ** 2) <= (0.05 * shape[1]) ** 2
    vol[spine & body] = 700
    noise = np.random.default_rng(seed).normal(0, 15, shape).astype(np.int16)
    return vol + noise

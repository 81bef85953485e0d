"""Write a NIfTI-1 file (``.nii`` or ``.nii.gz``) without nibabel: a 348-byte header and the data.

:func:`write_nifti1` writes what ``nibabel.Nifti1Image(data, affine)`` with ``set_qform(affine,
code=1)``, ``set_sform(affine, code=1)`` and ``set_xyzt_units("mm")`` writes: the same dims,
datatype, pixdim (``qfac`` in ``pixdim[0]``), quaternion (the rotation nearest the affine's, as
nibabel's polar decomposition and Bar-Itzhack ``mat2quat`` give it), ``srow`` rows and codes,
``scl_slope`` 1 and ``scl_inter`` 0: an uncompressed file is byte for byte nibabel's. The data is
written straight from the ``[k, j, i]`` C-ordered array: its bytes already are NIfTI's
``i``-fastest order, so nothing is copied or transposed. Importing nibabel costs about 0.3 s (it
pulls in pydicom).

:func:`nifti1_header` is plain Python (``math`` and ``struct``): ``clara-rt convert``'s fast path
(:mod:`._convert_fast`) builds the header without importing NumPy, and may set ``scl_slope`` /
``scl_inter`` when it copies stored DICOM values as they are.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HEADER_BYTES", "HEADER_FORMAT", "nifti1_header", "write_nifti1"]

HEADER_FORMAT = "<i10s18sihcb8h3fhhhh8f3fhbb4f2i80s24shh3f3f4f4f4f16s4s"
"""``struct`` layout of the NIfTI-1 header, field by field (348 bytes)."""
HEADER_BYTES = 352
"""Header plus the 4-byte extension flag: where the data starts (``vox_offset``)."""
_CODES = {"uint8": 2, "int16": 4, "int32": 8, "float32": 16, "float64": 64, "int8": 256,
          "uint16": 512, "uint32": 768, "int64": 1024, "uint64": 1280}
_BITS = {"uint8": 8, "int16": 16, "int32": 32, "float32": 32, "float64": 64, "int8": 8,
         "uint16": 16, "uint32": 32, "int64": 64, "uint64": 64}
_UNITS_MM = 2
_CHUNK = 16 << 20

Affine = Sequence[Sequence[float]]
"""A 4x4 (or 3x4) RAS affine as rows: a NumPy array or nested sequences of floats."""


def write_nifti1(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``data`` (``[k, j, i]``, C-contiguous or not) with the RAS ``affine`` to ``path``.

    Raises:
        ValueError: A dtype NIfTI-1 has no code for (bool is written as uint8 by the caller).
    """
    import numpy as np

    header = nifti1_header(data.shape, data.dtype, affine)
    little = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    with open(path, "wb") as raw:
        if not path.name.endswith(".gz"):
            raw.write(header)
            _write_data(raw, little)
            return
        import gzip  # only here: an uncompressed write (clara-rt convert) does without it

        with gzip.GzipFile("", "wb", 1, raw, mtime=0) as f:  # no name: same bytes anywhere
            f.write(header)
            _write_data(f, little)  # type: ignore[arg-type]


def nifti1_header(shape_kji: Sequence[int], dtype: Any, affine: Affine | np.ndarray, *,
                  scl_slope: float = 1.0, scl_inter: float = 0.0) -> bytes:
    """The first :data:`HEADER_BYTES` bytes of a NIfTI-1 file (header, no extensions).

    Args:
        shape_kji: The volume's ``[k, j, i]`` shape.
        dtype: The stored dtype: a NumPy dtype (any byte order) or its name (``"int16"``).
        affine: RAS affine of ``(i, j, k)``.
        scl_slope: Stored values times this, plus ``scl_inter``, are the real values.
        scl_inter: See ``scl_slope``.

    Raises:
        ValueError: A dtype NIfTI-1 has no code for.
    """
    name = dtype if isinstance(dtype, str) else str(getattr(dtype, "name", dtype))
    code = _CODES.get(name)
    if code is None:
        raise ValueError(f"NIfTI-1 cannot store dtype {dtype}")
    rows = [[float(v) for v in affine[r]] for r in range(3)]
    zooms, qfac, quat = _qform([row[:3] for row in rows])
    dims = [3, *(int(n) for n in shape_kji[::-1]), 1, 1, 1, 1]
    pixdim = [qfac, *zooms, 1.0, 1.0, 1.0, 1.0]
    return struct.pack(
        HEADER_FORMAT, 348, b"", b"", 0, 0, b"\0", 0, *dims, 0.0, 0.0, 0.0, 0, code, _BITS[name],
        0, *pixdim, float(HEADER_BYTES), scl_slope, scl_inter, 0, 0, _UNITS_MM, 0.0, 0.0, 0.0,
        0.0, 0, 0, b"", b"", 1, 1, *quat[1:], *(row[3] for row in rows), *rows[0], *rows[1],
        *rows[2], b"", b"n+1\0") + b"\0\0\0\0"


def _write_data(f: BinaryIO, data: np.ndarray) -> None:
    flat = memoryview(data.reshape(-1)).cast("B")  # type: ignore[arg-type]
    for start in range(0, len(flat), _CHUNK):  # chunks: gzip would copy the whole at once
        f.write(flat[start:start + _CHUNK])


def _qform(rzs: list[list[float]]) -> tuple[list[float], float, list[float]]:
    """Zooms, ``qfac`` and quaternion ``(a, b, c, d)`` of the 3x3 ``rzs``, as nibabel has them."""
    zooms = [math.sqrt(rzs[0][c] * rzs[0][c] + rzs[1][c] * rzs[1][c] + rzs[2][c] * rzs[2][c])
             for c in range(3)]
    m = [[rzs[r][c] / zooms[c] for c in range(3)] for r in range(3)]
    det = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
           - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
           + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))
    qfac = 1.0
    if det <= 0:
        qfac = -1.0
        for r in range(3):
            m[r][2] = -m[r][2]
    return zooms, qfac, _mat2quat(m)


_H = 0.7071067811865475
_AXIS_ALIGNED: dict[tuple[int, ...], tuple[float, ...]] = {
    # nibabel's quaternion (w, x, y, z) of each of the 24 axis-aligned rotations (rows of m
    # flattened), as LAPACK's eigh gives it: for a half turn (w = 0) q and -q are the same
    # rotation and the sign is LAPACK's choice, as are the signs of zero components
    (-1, 0, 0, 0, -1, 0, 0, 0, 1): (0.0, 0.0, 0.0, 1.0),
    (-1, 0, 0, 0, 1, 0, 0, 0, -1): (0.0, 0.0, 1.0, 0.0),
    (1, 0, 0, 0, -1, 0, 0, 0, -1): (0.0, 1.0, 0.0, 0.0),
    (1, 0, 0, 0, 1, 0, 0, 0, 1): (1.0, 0.0, 0.0, 0.0),
    (-1, 0, 0, 0, 0, -1, 0, -1, 0): (0.0, 0.0, -_H, _H),
    (-1, 0, 0, 0, 0, 1, 0, 1, 0): (0.0, 0.0, _H, _H),
    (1, 0, 0, 0, 0, 1, 0, -1, 0): (_H, -_H, 0.0, 0.0),
    (1, 0, 0, 0, 0, -1, 0, 1, 0): (_H, _H, -0.0, -0.0),
    (0, -1, 0, -1, 0, 0, 0, 0, -1): (0.0, -_H, _H, 0.0),
    (0, 1, 0, -1, 0, 0, 0, 0, 1): (_H, 0.0, 0.0, -_H),
    (0, -1, 0, 1, 0, 0, 0, 0, 1): (_H, 0.0, 0.0, _H),
    (0, 1, 0, 1, 0, 0, 0, 0, -1): (0.0, _H, _H, 0.0),
    (0, 0, 1, -1, 0, 0, 0, -1, 0): (0.5, -0.5, 0.5, -0.5),
    (0, 0, -1, -1, 0, 0, 0, 1, 0): (0.5, 0.5, -0.5, -0.5),
    (0, 0, -1, 1, 0, 0, 0, -1, 0): (0.5, -0.5, -0.5, 0.5),
    (0, 0, 1, 1, 0, 0, 0, 1, 0): (0.5, 0.5, 0.5, 0.5),
    (0, -1, 0, 0, 0, 1, -1, 0, 0): (0.5, -0.5, 0.5, 0.5),
    (0, 1, 0, 0, 0, -1, -1, 0, 0): (0.5, 0.5, 0.5, -0.5),
    (0, -1, 0, 0, 0, -1, 1, 0, 0): (0.5, 0.5, -0.5, 0.5),
    (0, 1, 0, 0, 0, 1, 1, 0, 0): (0.5, -0.5, -0.5, -0.5),
    (0, 0, -1, 0, -1, 0, -1, 0, 0): (0.0, -_H, 0.0, _H),
    (0, 0, 1, 0, 1, 0, -1, 0, 0): (_H, -0.0, _H, -0.0),
    (0, 0, 1, 0, -1, 0, 1, 0, 0): (0.0, -_H, 0.0, -_H),
    (0, 0, -1, 0, 1, 0, 1, 0, 0): (_H, 0.0, -_H, 0.0),
}


def _mat2quat(m: list[list[float]]) -> list[float]:
    """The unit quaternion ``(w, x, y, z)``, ``w >= 0``, of the rotation nearest ``m``.

    nibabel takes the eigenvector of Bar-Itzhack's symmetric matrix ``K`` with the largest
    eigenvalue (for a rotation: 1, the others -1/3); that vector is also the quaternion of the
    rotation nearest ``m``. Here: the table of nibabel's answers for the axis-aligned rotations
    (axial, coronal, sagittal...: where LAPACK picks signs), else Shepperd's closed form as a
    start, then power iterations on ``K + I`` (ratio 1/3 per step) until the vector stops
    changing.
    """
    flat = [v for row in m for v in row]
    if all(v in (-1.0, 0.0, 1.0) for v in flat):
        known = _AXIS_ALIGNED.get(tuple(int(v) for v in flat))
        if known is not None:
            return list(known)
    (qxx, qyx, qzx), (qxy, qyy, qzy), (qxz, qyz, qzz) = m  # nibabel's names for m.flat
    k = [[(qxx - qyy - qzz) / 3, (qyx + qxy) / 3, (qzx + qxz) / 3, (qyz - qzy) / 3],
         [(qyx + qxy) / 3, (qyy - qxx - qzz) / 3, (qzy + qyz) / 3, (qzx - qxz) / 3],
         [(qzx + qxz) / 3, (qzy + qyz) / 3, (qzz - qxx - qyy) / 3, (qxy - qyx) / 3],
         [(qyz - qzy) / 3, (qzx - qxz) / 3, (qxy - qyx) / 3, (qxx + qyy + qzz) / 3]]
    v = _shepperd(m)  # (x, y, z, w): K's order
    for _ in range(200):
        w = [sum(k[r][c] * v[c] for c in range(4)) + v[r] for r in range(4)]
        norm = math.sqrt(sum(x * x for x in w))
        w = [x / norm for x in w]
        if w == v:
            break
        v = w
    q = [v[3], v[0], v[1], v[2]]
    return [-x for x in q] if q[0] < 0 else q


def _shepperd(m: list[list[float]]) -> list[float]:
    """A unit quaternion ``(x, y, z, w)`` of ``m`` (close enough to start the iterations)."""
    (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = m
    trace = xx + yy + zz
    if trace >= max(xx, yy, zz):
        w = math.sqrt(max(1.0 + trace, 1e-12)) / 2
        v = [(zy - yz) / (4 * w), (xz - zx) / (4 * w), (yx - xy) / (4 * w), w]
    elif xx >= yy and xx >= zz:
        x = math.sqrt(max(1.0 + xx - yy - zz, 1e-12)) / 2
        v = [x, (xy + yx) / (4 * x), (xz + zx) / (4 * x), (zy - yz) / (4 * x)]
    elif yy >= zz:
        y = math.sqrt(max(1.0 + yy - xx - zz, 1e-12)) / 2
        v = [(xy + yx) / (4 * y), y, (yz + zy) / (4 * y), (xz - zx) / (4 * y)]
    else:
        z = math.sqrt(max(1.0 + zz - xx - yy, 1e-12)) / 2
        v = [(xz + zx) / (4 * z), (yz + zy) / (4 * z), z, (yx - xy) / (4 * z)]
    norm = math.sqrt(sum(c * c for c in v))
    return [c / norm for c in v]

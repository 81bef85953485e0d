"""Write a NIfTI-1 file (``.nii`` or ``.nii.gz``) without nibabel: a 348-byte header and the data.

:func:`write_nifti1` writes what ``nibabel.Nifti1Image(data, affine)`` with ``set_qform(affine,
code=1)``, ``set_sform(affine, code=1)`` and ``set_xyzt_units("mm")`` writes: the same dims,
datatype, pixdim (``qfac`` in ``pixdim[0]``), quaternion (nibabel's polar decomposition and
eigenvector ``mat2quat``), ``srow`` rows and codes, ``scl_slope`` 1 and ``scl_inter`` 0: an
uncompressed file is byte for byte nibabel's. The data is written straight from the
``[k, j, i]`` C-ordered array: its bytes already are NIfTI's ``i``-fastest order, so nothing is
copied or transposed. Importing nibabel costs about 0.3 s (it pulls in pydicom); this module
needs NumPy only.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["HEADER_FORMAT", "nifti1_header", "write_nifti1"]

HEADER_FORMAT = "<i10s18sihcb8h3fhhhh8f3fhbb4f2i80s24shh3f3f4f4f4f16s4s"
"""``struct`` layout of the NIfTI-1 header, field by field (348 bytes)."""
_CODES = {np.dtype(np.uint8): 2, np.dtype(np.int16): 4, np.dtype(np.int32): 8,
          np.dtype(np.float32): 16, np.dtype(np.float64): 64, np.dtype(np.int8): 256,
          np.dtype(np.uint16): 512, np.dtype(np.uint32): 768, np.dtype(np.int64): 1024,
          np.dtype(np.uint64): 1280}
_UNITS_MM = 2
_CHUNK = 16 << 20


def write_nifti1(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``data`` (``[k, j, i]``, C-contiguous or not) with the RAS ``affine`` to ``path``.

    Raises:
        ValueError: A dtype NIfTI-1 has no code for (bool is written as uint8 by the caller).
    """
    dtype = data.dtype.newbyteorder("=") if data.dtype.byteorder != "|" else data.dtype
    header = nifti1_header(data.shape, dtype, affine)
    little = np.ascontiguousarray(data, dtype=np.dtype(dtype).newbyteorder("<"))
    with open(path, "wb") as raw:
        if not path.name.endswith(".gz"):
            raw.write(header)
            _write_data(raw, little)
            return
        import gzip  # only here: an uncompressed write (clara-rt convert) does without it

        with gzip.GzipFile("", "wb", 1, raw, mtime=0) as f:  # no name: same bytes anywhere
            f.write(header)
            _write_data(f, little)  # type: ignore[arg-type]


def nifti1_header(shape_kji: tuple[int, ...], dtype: np.dtype[Any] | str,
                  affine: np.ndarray) -> bytes:
    """The first 352 bytes of the file :func:`write_nifti1` writes (header, no extensions).

    Raises:
        ValueError: A dtype NIfTI-1 has no code for.
    """
    dtype = np.dtype(dtype)
    code = _CODES.get(dtype.newbyteorder("=") if dtype.byteorder != "|" else dtype)
    if code is None:
        raise ValueError(f"NIfTI-1 cannot store dtype {dtype}")
    return _header(tuple(shape_kji[::-1]), code, dtype.itemsize * 8, affine) + b"\0\0\0\0"


def _write_data(f: BinaryIO, data: np.ndarray) -> None:
    flat = memoryview(data.reshape(-1)).cast("B")
    for start in range(0, len(flat), _CHUNK):  # chunks: gzip would copy the whole at once
        f.write(flat[start:start + _CHUNK])


def _header(shape_ijk: tuple[int, ...], code: int, bitpix: int, affine: np.ndarray) -> bytes:
    affine = np.asarray(affine, dtype=np.float64)
    zooms, qfac, quat = _qform(affine)
    dims = [3, *shape_ijk, 1, 1, 1, 1]
    pixdim = [qfac, *zooms, 1.0, 1.0, 1.0, 1.0]
    return struct.pack(
        HEADER_FORMAT, 348, b"", b"", 0, 0, b"\0", 0, *dims, 0.0, 0.0, 0.0, 0, code, bitpix, 0,
        *pixdim, 352.0, 1.0, 0.0, 0, 0, _UNITS_MM, 0.0, 0.0, 0.0, 0.0, 0, 0, b"", b"", 1, 1,
        *quat[1:], *affine[:3, 3], *affine[0], *affine[1], *affine[2], b"", b"n+1\0")


def _qform(affine: np.ndarray) -> tuple[list[float], float, np.ndarray]:
    """Zooms, ``qfac`` and quaternion ``(a, b, c, d)`` of ``affine``, as nibabel computes them."""
    rzs = affine[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    rotation = rzs / zooms
    qfac = 1.0
    if np.linalg.det(rotation) <= 0:
        qfac = -1.0
        rotation[:, -1] *= -1
    p, _, qs = np.linalg.svd(rotation)
    return [float(z) for z in zooms], qfac, _mat2quat(p @ qs)


def _mat2quat(m: np.ndarray) -> np.ndarray:
    """nibabel's ``quaternions.mat2quat`` (Bar-Itzhack): the w >= 0 unit quaternion of ``m``."""
    qxx, qyx, qzx, qxy, qyy, qzy, qxz, qyz, qzz = m.flat
    k = np.array([[qxx - qyy - qzz, 0, 0, 0],
                  [qyx + qxy, qyy - qxx - qzz, 0, 0],
                  [qzx + qxz, qzy + qyz, qzz - qxx - qyy, 0],
                  [qyz - qzy, qzx - qxz, qxy - qyx, qxx + qyy + qzz]]) / 3.0
    values, vectors = np.linalg.eigh(k)
    q = vectors[[3, 0, 1, 2], np.argmax(values)]
    return -q if q[0] < 0 else q

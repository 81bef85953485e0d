"""Connected components of a 3-D mask as x-runs, on every core (numba), without a label volume.

``scipy.ndimage.label`` holds the GIL and writes an int32 label per voxel; on a 256x512x512
chest it is most of what is left of lung segmentation once the morphology runs in parallel.
Here a mask is first cut into x-runs (``[x0, x1)`` per row ``(z, y)``, rows scanned in
parallel); runs are joined with a union-find where they overlap a run of the row above
(``y - 1``) or of the slice before (``z - 1``): exactly face (6-) connectivity. z-chunks are
joined in parallel, then the chunk seams in one pass. A component is numbered by its first run
in raster order, which is the order ``scipy.ndimage.label`` numbers them in, so "largest, ties
to the lowest label" picks the same component. Sizes, centres and edge contact come from the
runs; a kept set of components is painted back into a mask row by row, rows in parallel.
Thread-safety: calls are serialised by a lock (numba's workqueue layer is not reentrant).

The kernels are compiled on first use (``cache=True``: once per machine) and need numba; the
caller falls back to SciPy without it (see :func:`available`).
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RUNS_MIN_VOXELS", "Components", "available", "components", "fill_holes_in_plane",
           "worth_it"]

log = logging.getLogger(__name__)
RUNS_MIN_VOXELS = 1 << 22
"""From this many voxels (4 M, e.g. 16x512x512) callers prefer runs to SciPy's ``label``: below
it SciPy is fast enough, and importing numba would cost more than it saves."""
_BUILD_LOCK = threading.Lock()
_CALL_LOCK = threading.Lock()  # numba's workqueue layer must not be entered twice at once


@dataclass(frozen=True)
class Components:
    """Face-connected components of a 3-D mask, held as x-runs (host arrays).

    Attributes:
        shape: Shape of the mask.
        row_start: ``int64[Z * Y + 1]``: the runs of row ``r = z * Y + y`` are
            ``row_start[r]:row_start[r + 1]``.
        x0: ``int32[runs]`` first x of each run.
        x1: ``int32[runs]`` one past its last x.
        label: ``int32[runs]`` component of each run, 1..count, numbered like SciPy's ``label``.
        count: Number of components.
    """

    shape: tuple[int, int, int]
    row_start: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    label: np.ndarray
    count: int

    def sizes(self) -> np.ndarray:
        """Return ``int64[count + 1]`` voxels per component (0 for the background slot)."""
        return np.bincount(self.label, weights=self.x1 - self.x0,
                           minlength=self.count + 1).astype(np.int64)

    def moments(self) -> np.ndarray:
        """Return ``float64[count + 1, 4]``: voxels, sum z, sum y, sum x per component."""
        k = _kernels()
        out = np.zeros((self.count + 1, 4), dtype=np.float64)
        k.moments(self.row_start, self.x0, self.x1, self.label, self.shape[1], out)
        return out

    def touching_yx_edge(self) -> np.ndarray:
        """Return ``bool[count + 1]``: components with a voxel on an in-plane edge."""
        nz, ny, nx = self.shape
        edge = np.zeros(self.count + 1, dtype=bool)
        row = np.repeat(np.arange(nz * ny) % ny, np.diff(self.row_start))
        on_edge = (row == 0) | (row == ny - 1) | (self.x0 == 0) | (self.x1 == nx)
        edge[self.label[on_edge]] = True
        return edge

    def paint(self, lut: np.ndarray, out: np.ndarray, threads: int | None = None) -> None:
        """Write ``lut[label]`` over every run into ``out`` (zeros elsewhere), in parallel.

        Args:
            lut: ``uint8[count + 1]`` value per component.
            out: uint8 array of :attr:`shape` (a bool mask's ``view(np.uint8)``).
            threads: Threads to use (``None``: numba's default, every core).
        """
        k = _kernels()
        with _threads(k, threads):
            k.paint(self.row_start, self.x0, self.x1, self.label, lut, out)


def available() -> bool:
    """Return whether the numba kernels can be built (imports numba on the first call)."""
    return _kernels() is not None


def fill_holes_in_plane(mask: np.ndarray, threads: int | None = None) -> None:
    """Fill, in place, the holes of every axial slice of a uint8 0/1 ``mask`` (every core).

    The same as ``binary_fill_holes`` with the 4-connected in-plane cross: background runs are
    joined row to row, and those whose set never reaches the slice edge become 1.
    """
    k = _kernels()
    if k is None:
        raise RuntimeError("numba is not installed: clara_rt.operators.postprocess.runs needs it")
    with _threads(k, threads):
        k.fill_holes(mask)


def worth_it(mask: Any) -> bool:
    """Return whether ``mask`` is a host volume big enough for runs, and numba is there."""
    return (isinstance(mask, np.ndarray) and mask.ndim == 3 and mask.size >= RUNS_MIN_VOXELS
            and available())


def components(mask: np.ndarray, *, above: float | None = None,
               threads: int | None = None) -> Components:
    """Find the face-connected components of ``mask`` (or of ``mask > above`` without a copy).

    Args:
        mask: C-contiguous 3-D NumPy array: bool, or any numeric dtype with ``above``.
        above: Threshold: the foreground is ``mask > above`` (``None``: ``mask != 0``).
        threads: Threads to use (``None``: numba's default, every core).
    """
    k = _kernels()
    if k is None:
        raise RuntimeError("numba is not installed: clara_rt.operators.postprocess.runs needs it")
    if above is None and mask.dtype.kind not in "bu":
        mask = mask != 0  # the kernels keep v > 0: the same as v != 0 only without negatives
    mask = np.ascontiguousarray(mask)
    src = mask.view(np.uint8) if mask.dtype == bool else mask
    thr: Any = src.dtype.type(0)
    if above is not None:
        thr = _threshold(src.dtype, above)
        if thr is None:  # not representable in the array's type: compare in NumPy
            return components(mask > above, threads=threads)
    with _threads(k, threads):
        return _components(k, src, thr)


# --- private ---------------------------------------------------------------------------------


def _threshold(dtype: np.dtype, above: float) -> Any:
    """``t`` in ``dtype`` with ``v > t`` exactly when ``v > above`` (NumPy's rule), or None."""
    if not np.issubdtype(dtype, np.integer):
        return dtype.type(above)  # NumPy compares a float array with the bound in its type
    floor = np.floor(above)  # an integer v is > above exactly when v > floor(above)
    info = np.iinfo(dtype)
    return dtype.type(floor) if info.min <= floor <= info.max else None


class _threads:
    """Serialise kernel calls (numba's workqueue layer is not reentrant) with ``threads`` set."""

    def __init__(self, k: Any, threads: int | None) -> None:
        self.k, self.threads = k, threads

    def __enter__(self) -> None:
        _CALL_LOCK.acquire()
        import numba

        self.before = numba.get_num_threads()
        if self.threads is not None:
            numba.set_num_threads(max(1, min(self.threads, numba.config.NUMBA_NUM_THREADS)))

    def __exit__(self, *exc: object) -> None:
        import numba

        numba.set_num_threads(self.before)
        _CALL_LOCK.release()


def _components(k: Any, src: np.ndarray, thr: Any) -> Components:
    """Runs, union-find, numbering: the three passes of :func:`components`."""
    nz, ny, nx = src.shape
    counts = np.zeros(nz * ny + 1, dtype=np.int64)
    k.count(src, thr, counts)
    row_start = np.zeros(nz * ny + 1, dtype=np.int64)
    np.cumsum(counts[:-1], out=row_start[1:])
    runs = int(row_start[-1])
    x0 = np.empty(runs, dtype=np.int32)
    x1 = np.empty(runs, dtype=np.int32)
    k.fill(src, thr, row_start, x0, x1)
    parent = np.arange(runs, dtype=np.int32)
    chunks = max(1, min(nz, 4 * k.threads))  # z-chunks joined in parallel, then their seams
    k.union(row_start, x0, x1, ny, nz, chunks, parent)
    label = np.empty(runs, dtype=np.int32)
    count = int(k.resolve(parent, label))
    return Components((nz, ny, nx), row_start, x0, x1, label, count)


@dataclass(frozen=True)
class _Kernels:
    count: Any
    fill: Any
    union: Any
    resolve: Any
    moments: Any
    paint: Any
    fill_holes: Any
    threads: int


@functools.cache
def _kernels() -> _Kernels | None:
    with _BUILD_LOCK:
        try:
            import numba
        except ImportError:
            log.warning("numba is not installed: lung segmentation labels with SciPy (one core)")
            return None
        return _build(numba)


def _build(numba: Any) -> _Kernels:
    from clara_rt.operators.postprocess import _runs_jit as jit

    return _Kernels(jit.count, jit.fill, jit.union, jit.resolve, jit.moments, jit.paint,
                    jit.fill_holes_2d, int(numba.get_num_threads()))

"""Fused kernels for the imaging operators: numba on the CPU, CuPy kernels on the GPU.

Only what no library primitive does in one pass lives here:

* :func:`window` -- window -> normalise -> cast: any numeric volume to float32 in ``[0, 1]`` in a
  single read of the input and a single write of the output (NumPy's
  ``np.clip((v.astype(np.float32) - lo) / w, 0, 1)`` makes four passes and three temporaries).
* :func:`label_stats` -- per-label voxel count, intensity sum and bounding box in one pass
  (NumPy needs one masked pass per label, or ``bincount`` + ``find_objects``).
* :func:`mean_std` -- mean and standard deviation accumulated in float64 without a float64 copy.

Backends, picked per call from the input's array module:

* NumPy input, window: a ``@njit(parallel=True, nogil=True, cache=True)`` kernel. It releases
  the GIL, so worker threads of a runtime run it side by side. numba is imported on first use
  (``import clara_rt.operators`` stays light); without numba a NumPy fallback runs and one
  warning is logged.
* NumPy input, label statistics: the numba kernel when numba is already imported (by
  :func:`window`, say) or for more than :data:`NUMPY_STATS_LABELS` labels; otherwise NumPy
  itself (one comparison per label, then counts and sums inside the label's bounding box only):
  about as fast as the numba kernel on a CT mask of two lungs, and it spares a pipeline that
  needs no other numba kernel (ct-lung-seg) the 0.4-0.8 s import of numba.
* CuPy input: CuPy kernels (:mod:`clara_rt.operators._gpu_kernels`: an ``ElementwiseKernel``, a
  ``RawKernel`` with per-block shared-memory tables, ``ReductionKernel``) on CuPy's current
  stream. numba.cuda is never used. A kernel that cannot be built or launched is logged once
  (with the reason) and the plain CuPy expression runs instead: a job never fails for it.

``backend="numpy"`` forces the fallback (tests compare both; benchmarks time both).

Thread-safety: every function may be called from several threads at once. numba's
``workqueue`` threading layer aborts on concurrent parallel calls, so when numba ends up on that
layer (no TBB or OpenMP) the CPU kernels are serialised by a lock.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from clara_rt import get_array_module
from clara_rt.arrays import to_host

__all__ = ["NUMPY_STATS_LABELS", "LabelTable", "label_stats", "mean_std", "ndimage_of",
           "numba_available", "window"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "numpy"]
_NUMBA_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                           "uint64", "float32", "float64"})
_BUILD_LOCK = threading.Lock()
_CALL_LOCK = threading.Lock()
_layer_is_safe: bool | None = None  # None until the first parallel call has picked a layer
_GPU_FAILED: set[str] = set()  # kernels that failed to build or launch on this process
NUMPY_STATS_LABELS = 16
"""Most labels :func:`label_stats` counts with NumPy on the host while numba is not loaded."""


@dataclass(frozen=True)
class LabelTable:
    """Per-label statistics from :func:`label_stats`, host arrays indexed by label value.

    Row 0 (background) is never computed and stays empty. Bounding boxes are half-open, like
    slices: label ``l`` lies within ``start[l, d] <= index_d < stop[l, d]`` on every axis ``d``;
    an absent label has ``counts[l] == 0`` and ``start[l] == stop[l] == 0``.

    Attributes:
        counts: ``int64[n + 1]`` voxels per label.
        sums: ``float64[n + 1]`` sum of the image over each label (``None`` without an image).
        start: ``int64[n + 1, ndim]`` first index of each label's bounding box.
        stop: ``int64[n + 1, ndim]`` one past its last index.
    """

    counts: np.ndarray
    sums: np.ndarray | None
    start: np.ndarray
    stop: np.ndarray


def window(volume: Any, lower: float, upper: float, *, backend: Backend = "auto") -> Any:
    """Map ``[lower, upper]`` linearly to ``[0, 1]``, clip, and cast to float32, in one pass.

    Same result (within 1 ulp: the kernel multiplies by ``1 / (upper - lower)``) as
    ``np.clip((volume.astype(np.float32) - lower) / (upper - lower), 0, 1)``; NaN stays NaN.

    Args:
        volume: NumPy or CuPy array, any rank and numeric dtype (rank > 3 on the host takes the
            NumPy path). Not modified.
        lower: Value mapped to 0.
        upper: Value mapped to 1; must be greater than ``lower``.
        backend: ``"auto"`` (numba on the host, a CuPy kernel on the GPU) or ``"numpy"`` (the
            NumPy/CuPy expression).

    Returns:
        A new C-contiguous float32 array of the same shape, on the same device.
    """
    if not upper > lower:
        raise ValueError(f"window upper bound must exceed the lower one, got [{lower}, {upper}]")
    lo, scale = np.float32(lower), np.float32(1.0 / (float(upper) - float(lower)))
    xp = get_array_module(volume)
    if backend == "auto" and volume.dtype.name in _NUMBA_DTYPES and volume.size:
        if xp is np and volume.ndim <= 3 and (kernels := _cpu_kernels()) is not None:
            out = np.empty(volume.shape, dtype=np.float32)
            _parallel_call(kernels.window, _as3d(volume), _as3d(out), lo, scale)
            return out
        if xp is not np and (gpu := _gpu("window")) is not None:
            try:
                return gpu.window(volume, lo, scale)
            except Exception as exc:  # a kernel that cannot be built: the expression below
                _gpu_failed("window", exc)
    return xp.clip((volume.astype(xp.float32) - lo) * scale, np.float32(0), np.float32(1))


def label_stats(labels: Any, image: Any = None, num_labels: int | None = None, *,
                backend: Backend = "auto") -> LabelTable:
    """Count voxels, sum ``image`` and find the bounding box of every label 1..n in one pass.

    Args:
        labels: Integer (or bool) NumPy or CuPy array of rank 1 to 3; values outside
            ``1..num_labels`` (0, negatives, larger labels) are ignored.
        image: Optional array of the same shape whose sum over each label is wanted.
        num_labels: Highest label of interest; default ``labels.max()``.
        backend: ``"auto"`` (on the host numba once imported, else NumPy per label up to
            :data:`NUMPY_STATS_LABELS` labels; the CuPy kernel on the GPU) or ``"numpy"``
            (``bincount`` + ``find_objects`` on the host, ``bincount`` and a loop over labels on
            CuPy).

    Returns:
        A :class:`LabelTable` of host arrays (the only device -> host copy: ``n + 1`` rows).
    """
    if labels.dtype.kind not in "biu" or not 1 <= labels.ndim <= 3:
        raise ValueError(f"labels must be an integer array of rank 1 to 3, got "
                         f"{labels.dtype} of rank {labels.ndim}")
    if image is not None and image.shape != labels.shape:
        raise ValueError(f"image shape {image.shape} differs from labels shape {labels.shape}")
    xp = get_array_module(labels)
    n = int(labels.max()) if num_labels is None and labels.size else int(num_labels or 0)
    if n < 1:
        return _empty_table(max(n, 0), labels.ndim, image is not None)
    labels = labels.view(np.uint8) if labels.dtype == bool else labels
    if xp is np:
        if backend == "numpy":
            return _stats_numpy(labels, image, n)
        if n <= NUMPY_STATS_LABELS and sys.modules.get("numba") is None:
            return _stats_per_label(labels, image, n)  # numba's import would cost more
        usable = image is None or image.dtype.name in _NUMBA_DTYPES
        if usable and (kernels := _cpu_kernels()) is not None:
            return _stats_cpu(kernels, labels, image, n)
        return _stats_numpy(labels, image, n)
    usable = image is None or image.dtype.name in _NUMBA_DTYPES
    if backend == "auto" and usable and (gpu := _gpu("label_stats")) is not None:
        try:
            counts, sums, start, stop = gpu.label_stats(_as3d(labels), None if image is None
                                                        else _as3d(image), n)
        except Exception as exc:  # a kernel that cannot be built: the CuPy loop below
            _gpu_failed("label_stats", exc)
        else:
            cut = 3 - labels.ndim
            return _table(counts, sums if image is not None else None, start[:, cut:],
                          stop[:, cut:] + 1)
    return _stats_xp_loop(xp, labels, image, n)


def mean_std(values: Any, *, backend: Backend = "auto") -> tuple[float, float]:
    """Return the mean and the population standard deviation (ddof 0) of ``values``.

    Both are accumulated in float64 whatever the input dtype, on NumPy and CuPy alike (CuPy's
    ``std(dtype=float64)`` of an integer array subtracts a mean rounded to the input dtype).

    Args:
        values: Non-empty NumPy or CuPy array of any numeric dtype. Not modified.
        backend: ``"auto"`` (a two-pass reduction kernel on CuPy, no float64 copy) or
            ``"numpy"`` (the float64 copy, then the array module's mean and std).
    """
    if not values.size:
        raise ValueError("mean_std needs at least one value, got an empty array")
    xp = get_array_module(values)
    if xp is not np and backend == "auto" and (gpu := _gpu("mean_std")) is not None:
        try:
            return gpu.mean_std(values)  # type: ignore[no-any-return]
        except Exception as exc:
            _gpu_failed("mean_std", exc)
    if xp is np and values.dtype == np.float64:
        return float(values.mean()), float(values.std())
    as64 = values.astype(xp.float64)
    return float(as64.mean()), float(as64.std())


def numba_available() -> bool:
    """Return whether the numba CPU kernels can be used (imports numba on first call)."""
    return _cpu_kernels() is not None


def ndimage_of(array: Any) -> ModuleType:
    """Return ``cupyx.scipy.ndimage`` for a CuPy array, else ``scipy.ndimage`` (lazy imports)."""
    if get_array_module(array) is not np:
        import cupyx.scipy.ndimage as cnd

        return cnd  # type: ignore[no-any-return]
    from scipy import ndimage

    return ndimage


# --- private: CPU (numba) --------------------------------------------------------------------


@dataclass(frozen=True)
class _Kernels:
    window: Any
    stats: Any
    num_threads: int


@functools.cache
def _cpu_kernels() -> _Kernels | None:
    with _BUILD_LOCK:
        try:
            import numba
        except ImportError:
            log.warning("numba is not installed: clara_rt.operators.kernels falls back to NumPy "
                        "(slower, several passes); install numba for the fused kernels")
            return None
        return _build_cpu(numba)


def _build_cpu(numba: Any) -> _Kernels:
    """Define the njit kernels; numba compiles (or loads from its cache) per dtype on first call."""
    prange = numba.prange
    opts = {"parallel": True, "nogil": True, "cache": True}

    @numba.njit(**opts)
    def window_3d(src: Any, out: Any, lo: Any, scale: Any) -> None:  # pragma: no cover
        nz, ny, nx = src.shape
        zero, one = np.float32(0.0), np.float32(1.0)
        for r in prange(nz * ny):
            k, j = r // ny, r % ny
            for i in range(nx):
                v = (np.float32(src[k, j, i]) - lo) * scale
                v = one if v > one else v  # comparisons keep NaN as NaN, like np.clip
                out[k, j, i] = zero if v < zero else v

    @numba.njit(**opts)
    def stats_3d(labels: Any, image: Any, use_image: bool, n: int, chunks: int,  # pragma: no cover
                 counts: Any, sums: Any, start: Any, stop: Any) -> None:
        nz, ny, nx = labels.shape
        rows = nz * ny
        for t in prange(chunks):  # one private accumulator row per chunk: no atomics, no races
            for r in range(rows * t // chunks, rows * (t + 1) // chunks):
                k, j = r // ny, r % ny
                for i in range(nx):
                    lab = labels[k, j, i]
                    if lab <= 0 or lab > n:
                        continue
                    counts[t, lab] += 1
                    if use_image:
                        sums[t, lab] += image[k, j, i]
                    # inlined by hand: a call to another jitted closure defeats cache=True
                    start[t, lab, 0] = min(start[t, lab, 0], k)
                    start[t, lab, 1] = min(start[t, lab, 1], j)
                    start[t, lab, 2] = min(start[t, lab, 2], i)
                    stop[t, lab, 0] = max(stop[t, lab, 0], k)
                    stop[t, lab, 1] = max(stop[t, lab, 1], j)
                    stop[t, lab, 2] = max(stop[t, lab, 2], i)

    return _Kernels(window_3d, stats_3d, int(numba.get_num_threads()))


def _parallel_call(kernel: Any, *args: Any) -> None:
    """Call a parallel kernel, serialised only if numba runs on the thread-unsafe workqueue."""
    global _layer_is_safe
    if _layer_is_safe:
        kernel(*args)
        return
    with _CALL_LOCK:
        kernel(*args)
        if _layer_is_safe is None:
            import numba

            _layer_is_safe = numba.threading_layer() != "workqueue"


def _as3d(array: Any) -> Any:
    """View a rank 1-3 array as 3-D (leading axes of size 1); no copy."""
    return array.reshape((1,) * (3 - array.ndim) + array.shape) if array.ndim < 3 else array


def _stats_cpu(kernels: _Kernels, labels: np.ndarray, image: np.ndarray | None,
               n: int) -> LabelTable:
    lab3 = _as3d(labels)
    rows = lab3.shape[0] * lab3.shape[1]
    chunks = max(1, min(rows, 4 * kernels.num_threads))
    counts = np.zeros((chunks, n + 1), dtype=np.int64)
    sums = np.zeros((chunks, n + 1), dtype=np.float64)
    start = np.full((chunks, n + 1, 3), np.iinfo(np.int64).max, dtype=np.int64)
    stop = np.full((chunks, n + 1, 3), -1, dtype=np.int64)
    img3 = _as3d(image) if image is not None else lab3  # a typed stand-in numba never reads
    _parallel_call(kernels.stats, lab3, img3, image is not None, n, chunks, counts, sums,
                   start, stop)
    lo, hi = start.min(axis=0), stop.max(axis=0) + 1
    return _table(counts.sum(axis=0), sums.sum(axis=0) if image is not None else None,
                  lo[:, 3 - labels.ndim:], hi[:, 3 - labels.ndim:])


def _stats_numpy(labels: np.ndarray, image: np.ndarray | None, n: int) -> LabelTable:
    from scipy import ndimage

    flat = labels.ravel()
    in_range = (flat >= 0) & (flat <= n) if labels.dtype.kind == "i" else flat <= n
    counts = np.bincount(flat[in_range], minlength=n + 1).astype(np.int64)
    sums = None
    if image is not None:
        sums = np.bincount(flat[in_range], weights=image.ravel()[in_range], minlength=n + 1)
    start = np.zeros((n + 1, labels.ndim), dtype=np.int64)
    stop = np.zeros_like(start)
    work = labels if labels.dtype.kind == "i" else labels.astype(np.int64)
    for index, box in enumerate(ndimage.find_objects(work, max_label=n), start=1):
        if box is not None:
            start[index] = [s.start for s in box]
            stop[index] = [s.stop for s in box]
    return _table(counts, sums, start, stop)


def _stats_per_label(labels: np.ndarray, image: np.ndarray | None, n: int) -> LabelTable:
    """NumPy, few labels: one comparison per label; counts and sums inside its box only."""
    lab3 = _as3d(labels)
    img3 = _as3d(image) if image is not None else None
    counts = np.zeros(n + 1, dtype=np.int64)
    sums = np.zeros(n + 1, dtype=np.float64)
    start = np.zeros((n + 1, 3), dtype=np.int64)
    stop = np.zeros_like(start)
    for lab in range(1, n + 1):
        mask = lab3 == lab
        ks = np.flatnonzero(mask.any(axis=(1, 2)))
        if not ks.size:
            continue
        slab = mask[ks[0]:ks[-1] + 1]
        js, is_ = np.flatnonzero(slab.any(axis=(0, 2))), np.flatnonzero(slab.any(axis=(0, 1)))
        start[lab] = ks[0], js[0], is_[0]
        stop[lab] = ks[-1] + 1, js[-1] + 1, is_[-1] + 1
        box = tuple(slice(a, b) for a, b in zip(start[lab], stop[lab], strict=True))
        inside = mask[box]
        counts[lab] = np.count_nonzero(inside)
        if img3 is not None:
            sums[lab] = float(np.sum(img3[box], where=inside, dtype=_sum_dtype(img3.dtype)))
    cut = 3 - labels.ndim
    return _table(counts, sums if image is not None else None, start[:, cut:], stop[:, cut:])


def _sum_dtype(dtype: np.dtype[Any]) -> type:
    """Exact integer sums for integer images (int16 CT cannot overflow int64), else float64."""
    return {"b": np.int64, "i": np.int64, "u": np.uint64}.get(dtype.kind, np.float64)


def _table(counts: np.ndarray, sums: np.ndarray | None, start: np.ndarray,
           stop: np.ndarray) -> LabelTable:
    """Normalise raw accumulators: row 0 empty, absent labels get a 0..0 box."""
    counts, start, stop = counts.copy(), start.copy(), stop.copy()
    counts[0] = 0
    if sums is not None:
        sums = sums.astype(np.float64, copy=True)
        sums[0] = 0.0
    absent = counts == 0
    start[absent] = 0
    stop[absent] = 0
    return LabelTable(counts, sums, start, stop)


def _empty_table(n: int, ndim: int, with_sums: bool) -> LabelTable:
    zeros = np.zeros((n + 1, ndim), dtype=np.int64)
    return LabelTable(np.zeros(n + 1, dtype=np.int64),
                      np.zeros(n + 1) if with_sums else None, zeros, zeros.copy())


# --- private: GPU (CuPy kernels in _gpu_kernels) ---------------------------------------------


def _gpu(what: str) -> ModuleType | None:
    """Return the CuPy kernel module, or ``None`` once a kernel of ``what`` has failed."""
    if what in _GPU_FAILED:
        return None
    from clara_rt.operators import _gpu_kernels

    return _gpu_kernels


def _gpu_failed(what: str, exc: BaseException) -> None:
    """Remember that the ``what`` kernel failed and say so once; callers then fall back."""
    with _BUILD_LOCK:
        first = what not in _GPU_FAILED
        _GPU_FAILED.add(what)
    if first:
        log.warning("the CuPy %s kernel of clara_rt.operators.kernels failed (%s: %s); using "
                    "the plain CuPy expression from now on (slower, several passes)", what,
                    type(exc).__name__, exc)


def _stats_xp_loop(xp: ModuleType, labels: Any, image: Any, n: int) -> LabelTable:
    """CuPy fallback: bincount for counts and sums, one pass per label for the boxes."""
    flat = labels.ravel().astype(xp.int64)
    flat = xp.where((flat >= 0) & (flat <= n), flat, 0)
    counts = to_host(xp.bincount(flat, minlength=n + 1)[: n + 1])  # counted copies
    sums = None
    if image is not None:
        sums = to_host(xp.bincount(flat, weights=image.ravel().astype(xp.float64),
                                   minlength=n + 1)[: n + 1])
    start = np.zeros((n + 1, labels.ndim), dtype=np.int64)
    stop = np.zeros_like(start)
    for lab in np.flatnonzero(counts[1:]) + 1:
        mask = labels == lab
        for axis in range(labels.ndim):
            present = xp.flatnonzero(mask.any(axis=tuple(a for a in range(labels.ndim)
                                                         if a != axis)))
            start[lab, axis], stop[lab, axis] = int(present[0]), int(present[-1]) + 1
    return _table(counts, sums, start, stop)

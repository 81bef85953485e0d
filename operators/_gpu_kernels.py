"""CuPy kernels behind :mod:`clara_rt.operators.kernels` for GPU arrays (no numba.cuda).

* window -> normalise -> cast: a ``cupy.ElementwiseKernel`` (one read, one write, any strides).
* label statistics: a ``cupy.RawKernel`` (one pass, grid-stride loop). While the labels' table
  fits in shared memory (up to :data:`SHARED_LABELS` labels) each block accumulates counts,
  sums and bounding boxes there and merges them into the global table with one atomic per
  label and field, so millions of voxels of one label do not contend on eight addresses.
* mean and standard deviation in float64 (two passes, ``ReductionKernel``; no float64 copy).

Every kernel runs on CuPy's current stream: on a runtime worker, the worker's own stream, where
the runtime records its hand-over events. CuPy compiles a kernel at its first call (and caches
the binary on disk), so a kernel that cannot be built fails at that call: the callers in
``kernels.py`` catch it, log it once and run the plain CuPy expression instead.

Imported only for CuPy input: importing this module imports CuPy.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import cupy
import numpy as np

from clara_rt.arrays import to_host

__all__ = ["SHARED_LABELS", "label_stats", "mean_std", "supports", "window"]

SHARED_LABELS = 255
"""Most labels whose table is accumulated per block in shared memory (64 bytes each)."""

_THREADS = 256
_CTYPES = {"bool": "unsigned char", "uint8": "unsigned char", "int8": "signed char",
           "int16": "short", "uint16": "unsigned short", "int32": "int", "uint32": "unsigned int",
           "int64": "long long", "uint64": "unsigned long long", "float32": "float",
           "float64": "double"}

_STATS_SRC = r"""
#define MAXLL 0x7fffffffffffffffLL
extern "C" __global__ void clara_rt_label_stats(
        const LT* __restrict__ lab, const IT* __restrict__ img, const long long size,
        const int use_image, const long long n, const long long ny, const long long nx,
        const int use_shared, unsigned long long* counts, double* sums, long long* start,
        long long* stop) {
    extern __shared__ double smem[];
    unsigned long long* c = counts; double* s = sums; long long* lo = start; long long* hi = stop;
    if (use_shared) {
        s = smem;
        c = (unsigned long long*)(s + (n + 1));
        lo = (long long*)(c + (n + 1));
        hi = lo + 3 * (n + 1);
        for (long long t = threadIdx.x; t <= n; t += blockDim.x) {
            s[t] = 0.0; c[t] = 0ULL;
            for (int d = 0; d < 3; ++d) { lo[3 * t + d] = MAXLL; hi[3 * t + d] = -1LL; }
        }
        __syncthreads();
    }
    const long long plane = ny * nx;
    const long long step = (long long)gridDim.x * blockDim.x;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < size;
         idx += step) {
        const long long l = (long long)lab[idx];
        if (l <= 0 || l > n) continue;  // background: no atomics on the hottest address
        atomicAdd(c + l, 1ULL);
        if (use_image) atomicAdd(s + l, (double)img[idx]);
        const long long k = idx / plane, r = idx - k * plane;
        const long long j = r / nx, i = r - j * nx;
        atomicMin(lo + 3 * l, k); atomicMin(lo + 3 * l + 1, j); atomicMin(lo + 3 * l + 2, i);
        atomicMax(hi + 3 * l, k); atomicMax(hi + 3 * l + 1, j); atomicMax(hi + 3 * l + 2, i);
    }
    if (!use_shared) return;
    __syncthreads();
    for (long long t = threadIdx.x; t <= n; t += blockDim.x) {
        if (c[t] == 0ULL) continue;
        atomicAdd(counts + t, c[t]);
        if (use_image) atomicAdd(sums + t, s[t]);
        for (int d = 0; d < 3; ++d) {
            atomicMin(start + 3 * t + d, lo[3 * t + d]);
            atomicMax(stop + 3 * t + d, hi[3 * t + d]);
        }
    }
}
"""


def supports(dtype: Any) -> bool:
    """Return whether the kernels here take arrays of ``dtype``."""
    return np.dtype(dtype).name in _CTYPES


def window(volume: Any, lo: np.float32, scale: np.float32) -> Any:
    """``clip((float32(v) - lo) * scale, 0, 1)`` in one pass; NaN stays NaN."""
    return _window_kernel()(volume, lo, scale)


def label_stats(lab3: Any, img3: Any | None, n: int) -> tuple[np.ndarray, ...]:
    """Return host ``(counts, sums, start, stop_inclusive)`` for labels 0..n of a 3-D array.

    ``start``/``stop`` rows of absent labels hold ``int64 max`` / ``-1``; the caller normalises.
    """
    labels = cupy.ascontiguousarray(lab3)
    image = cupy.ascontiguousarray(img3) if img3 is not None else labels
    counts = cupy.zeros(n + 1, dtype=cupy.uint64)
    sums = cupy.zeros(n + 1, dtype=cupy.float64)
    start = cupy.full(3 * (n + 1), np.iinfo(np.int64).max, dtype=cupy.int64)
    stop = cupy.full(3 * (n + 1), -1, dtype=cupy.int64)
    size = int(labels.size)
    use_shared = n <= SHARED_LABELS
    sms = _multiprocessors(cupy.cuda.runtime.getDevice())
    blocks = max(1, min(math.ceil(size / _THREADS), 8 * sms))
    kernel = _stats_kernel(_CTYPES[labels.dtype.name], _CTYPES[image.dtype.name])
    kernel((blocks,), (_THREADS,),
           (labels, image, np.int64(size), np.int32(img3 is not None), np.int64(n),
            np.int64(labels.shape[1]), np.int64(labels.shape[2]), np.int32(use_shared),
            counts, sums, start, stop),
           shared_mem=64 * (n + 1) if use_shared else 0)
    # One device -> host copy (counted by clara_rt.arrays) of the four tables packed as int64.
    packed = to_host(cupy.concatenate([counts.view(cupy.int64), sums.view(cupy.int64), start,
                                       stop]))
    rows = n + 1
    return (packed[:rows].copy(), packed[rows:2 * rows].view(np.float64).copy(),
            packed[2 * rows:5 * rows].reshape(rows, 3), packed[5 * rows:].reshape(rows, 3))


def mean_std(values: Any) -> tuple[float, float]:
    """Mean and population standard deviation (ddof 0), both accumulated in float64."""
    size = int(values.size)
    mean = float(_sum_kernel()(values)) / size
    var = float(_sq_dev_kernel()(values, np.float64(mean))) / size
    return mean, math.sqrt(max(var, 0.0))


@functools.cache
def _window_kernel() -> Any:
    return cupy.ElementwiseKernel(
        "T x, float32 lo, float32 scale", "float32 y",
        "float v = ((float)x - lo) * scale; v = v > 1.0f ? 1.0f : v; y = v < 0.0f ? 0.0f : v;",
        "clara_rt_window")


@functools.cache
def _stats_kernel(label_type: str, image_type: str) -> Any:
    source = f"typedef {label_type} LT;\ntypedef {image_type} IT;\n{_STATS_SRC}"
    return cupy.RawKernel(source, "clara_rt_label_stats")


@functools.cache
def _sum_kernel() -> Any:
    return cupy.ReductionKernel("T x", "float64 y", "(double)x", "a + b", "y = a", "0",
                                "clara_rt_sum_f64")


@functools.cache
def _sq_dev_kernel() -> Any:
    return cupy.ReductionKernel("T x, float64 m", "float64 y", "((double)x - m) * ((double)x - m)",
                                "a + b", "y = a", "0", "clara_rt_sq_dev_f64")


@functools.cache
def _multiprocessors(device: int) -> int:
    return int(cupy.cuda.Device(device).attributes["MultiProcessorCount"])

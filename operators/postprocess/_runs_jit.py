"""The numba kernels of :mod:`.runs` (imported on first use: importing this imports numba).

Module-level functions, not closures: numba's ``cache=True`` only reuses a compiled function
whose callees it can cache too, so the helpers called from the parallel loops live here.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, inline="always")
def row_count(row: Any, thr: Any, background: Any) -> Any:  # pragma: no cover - jitted
    """Number of runs of ``row > thr`` (with ``background``: of ``row <= thr``)."""
    n, inside = 0, False
    for x in range(row.shape[0]):
        on = row[x] <= thr if background else row[x] > thr
        if on and not inside:
            n += 1
        inside = on
    return n


@numba.njit(nogil=True, cache=True, inline="always")
def row_fill(row: Any, thr: Any, background: Any, i: Any, x0: Any,
             x1: Any) -> None:  # pragma: no cover - jitted
    """Write the runs :func:`row_count` counts as ``[x0, x1)`` from index ``i`` on."""
    nx, inside = row.shape[0], False
    for x in range(nx):
        on = row[x] <= thr if background else row[x] > thr
        if on and not inside:
            x0[i] = x
        elif inside and not on:
            x1[i] = x
            i += 1
        inside = on
    if inside:
        x1[i] = nx


@numba.njit(parallel=True, nogil=True, cache=True)
def count(src: Any, thr: Any, counts: Any) -> None:  # pragma: no cover - jitted
    nz, ny, _ = src.shape
    for r in numba.prange(nz * ny):
        counts[r] = row_count(src[r // ny, r % ny], thr, False)


@numba.njit(parallel=True, nogil=True, cache=True)
def fill(src: Any, thr: Any, row_start: Any, x0: Any, x1: Any) -> None:  # pragma: no cover
    nz, ny, _ = src.shape
    for r in numba.prange(nz * ny):
        row_fill(src[r // ny, r % ny], thr, False, row_start[r], x0, x1)


@numba.njit(nogil=True, cache=True)
def find(parent: Any, i: Any) -> Any:  # pragma: no cover - jitted
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(nogil=True, cache=True)
def join(parent: Any, a: Any, b: Any) -> None:  # pragma: no cover - jitted
    ra, rb = find(parent, a), find(parent, b)
    if ra < rb:  # the root is the set's first run in raster order
        parent[rb] = ra
    elif rb < ra:
        parent[ra] = rb


@numba.njit(nogil=True, cache=True)
def join_rows(row_start: Any, x0: Any, x1: Any, r: Any, q: Any,
              parent: Any) -> None:  # pragma: no cover - jitted
    i, i_end = row_start[r], row_start[r + 1]
    j, j_end = row_start[q], row_start[q + 1]
    while i < i_end and j < j_end:
        if x0[i] < x1[j] and x0[j] < x1[i]:
            join(parent, i, j)
        if x1[i] < x1[j]:
            i += 1
        else:
            j += 1


@numba.njit(parallel=True, nogil=True, cache=True)
def union(row_start: Any, x0: Any, x1: Any, ny: Any, nz: Any, chunks: Any,
          parent: Any) -> None:  # pragma: no cover - jitted
    for c in numba.prange(chunks):  # each chunk only touches its own runs: no races
        z_lo, z_hi = nz * c // chunks, nz * (c + 1) // chunks
        for z in range(z_lo, z_hi):
            for y in range(ny):
                r = z * ny + y
                if y > 0:
                    join_rows(row_start, x0, x1, r, r - 1, parent)
                if z > z_lo:
                    join_rows(row_start, x0, x1, r, r - ny, parent)
    for c in range(1, chunks):  # the seams, one after the other
        z = nz * c // chunks
        if z == 0 or z >= nz:
            continue
        for y in range(ny):
            r = z * ny + y
            join_rows(row_start, x0, x1, r, r - ny, parent)


@numba.njit(nogil=True, cache=True)
def resolve(parent: Any, label: Any) -> Any:  # pragma: no cover - jitted
    n = 0
    for i in range(parent.size):  # roots first in raster order: numbered 1, 2, ...
        root = find(parent, i)
        if root == i:
            n += 1
            label[i] = n
        else:
            label[i] = label[root]
    return n


@numba.njit(nogil=True, cache=True)
def moments(row_start: Any, x0: Any, x1: Any, label: Any, ny: Any,
            out: Any) -> None:  # pragma: no cover - jitted
    for r in range(row_start.size - 1):
        z, y = r // ny, r % ny
        for i in range(row_start[r], row_start[r + 1]):
            a, b = np.int64(x0[i]), np.int64(x1[i])
            n = b - a
            k = label[i]
            out[k, 0] += n
            out[k, 1] += z * n
            out[k, 2] += y * n
            out[k, 3] += (a + b - 1) * n // 2


@numba.njit(parallel=True, nogil=True, cache=True)
def paint(row_start: Any, x0: Any, x1: Any, label: Any, lut: Any,
          out: Any) -> None:  # pragma: no cover - jitted
    nz, ny, nx = out.shape
    for r in numba.prange(nz * ny):
        z, y = r // ny, r % ny
        for x in range(nx):
            out[z, y, x] = 0
        for i in range(row_start[r], row_start[r + 1]):
            v = lut[label[i]]
            if v:
                for x in range(x0[i], x1[i]):
                    out[z, y, x] = v


@numba.njit(parallel=True, nogil=True, cache=True)
def fill_holes_2d(mask: Any) -> None:  # pragma: no cover - jitted
    """Set to 1 the 4-connected background of each slice that does not reach the slice edge."""
    nz, ny, nx = mask.shape
    for z in numba.prange(nz):
        row_start = np.zeros(ny + 1, dtype=np.int64)
        for y in range(ny):  # the runs of background (mask == 0: a 0/1 uint8 mask is <= 0)
            row_start[y + 1] = row_start[y] + row_count(mask[z, y], 0, True)
        runs = row_start[ny]
        x0 = np.empty(runs, dtype=np.int32)
        x1 = np.empty(runs, dtype=np.int32)
        for y in range(ny):
            row_fill(mask[z, y], 0, True, row_start[y], x0, x1)
        parent = np.arange(runs).astype(np.int32)
        for y in range(1, ny):
            join_rows(row_start, x0, x1, y, y - 1, parent)
        outside = np.zeros(runs, dtype=np.bool_)
        for y in range(ny):
            for i in range(row_start[y], row_start[y + 1]):
                if y == 0 or y == ny - 1 or x0[i] == 0 or x1[i] == nx:
                    outside[find(parent, i)] = True
        for y in range(ny):
            for i in range(row_start[y], row_start[y + 1]):
                if not outside[find(parent, i)]:
                    for x in range(x0[i], x1[i]):
                        mask[z, y, x] = 1

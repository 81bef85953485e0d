"""Run a volume operation slab by slab along z, on a few threads, with halos where needed.

A local operation (a ball closing, a threshold) gives exactly the whole-volume answer on the
slab ``[z0, z1)`` when it is computed on ``[z0 - halo, z1 + halo)`` (clipped to the volume) and
cropped back: the cut faces of that window change at most ``halo`` slices next to them, and at
the volume's own faces the window ends where the volume does. Slabs keep the temporaries small
(a few MB instead of several copies of the volume) and, because NumPy releases the GIL in its
loops, let several threads share the work.

On CuPy the whole volume is one slab run on the calling thread: the device is already parallel,
and the code the slabs run is the same ``xp`` code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from clara_rt import get_array_module

__all__ = ["SlabRunner", "default_threads", "window"]

_SLAB_SLICES = 16  # slices per slab on the host: 16 x 512 x 512 bool = 4 MiB per temporary


def default_threads() -> int:
    """Return the threads slab work uses by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class SlabRunner:
    """Map a function over the z-slabs of volumes, on ``threads`` threads (a context manager).

    Thread-safety: one runner serves one caller at a time; the functions it runs must write
    disjoint slabs (they do: each writes its own ``[z0, z1)``).

    Args:
        threads: Threads to use (``None``: :func:`default_threads`; 1: inline, no pool).
        slab: Slices per slab on the host.
    """

    def __init__(self, threads: int | None = None, *, slab: int = _SLAB_SLICES) -> None:
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1 or slab < 1:
            raise ValueError(f"threads and slab must be >= 1, got threads={threads!r}, "
                             f"slab={slab!r}")
        self.slab = int(slab)
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> SlabRunner:
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="clara-rt-slab")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def ranges(self, like: Any) -> list[tuple[int, int]]:
        """Return the ``[z0, z1)`` slabs of an array like ``like`` (one for a CuPy array)."""
        nz = int(like.shape[0])
        if get_array_module(like) is not np or nz == 0:
            return [(0, nz)]
        return [(z0, min(z0 + self.slab, nz)) for z0 in range(0, nz, self.slab)]

    def map(self, func: Callable[[int, int], Any], like: Any,
            workers: int | None = None) -> list[Any]:
        """Call ``func(z0, z1)`` for every slab of ``like`` and return the results in z order.

        Args:
            func: Called once per slab, on a pool thread (inline without a pool).
            like: The array whose z axis is cut.
            workers: At most this many slabs at once (a memory bound: each running slab holds
                its temporaries); default :attr:`threads`.

        The first exception (in lane order) is raised here, once every lane has stopped; a lane
        stops at its first failing slab.
        """
        slabs = self.ranges(like)
        lanes = min(self.threads, max(1, workers or self.threads), len(slabs))
        if self._pool is None or lanes == 1:
            return [func(z0, z1) for z0, z1 in slabs]
        # lane i runs slabs i, i + lanes, ... one after the other
        futures = [self._pool.submit(_lane, func, slabs[i::lanes]) for i in range(lanes)]
        wait(futures)
        done = [f.result() for f in futures]
        out: list[Any] = [None] * len(slabs)
        for i, results in enumerate(done):
            out[i::lanes] = results
        return out


def window(z0: int, z1: int, nz: int, halo: int) -> tuple[slice, slice]:
    """Return the input window of slab ``[z0, z1)`` with ``halo`` and the slab inside it."""
    lo, hi = max(z0 - halo, 0), min(z1 + halo, nz)
    return slice(lo, hi), slice(z0 - lo, z1 - lo)


def _lane(func: Callable[[int, int], Any], slabs: list[tuple[int, int]]) -> list[Any]:
    return [func(z0, z1) for z0, z1 in slabs]

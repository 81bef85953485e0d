"""The ``kernels`` scenario: the operators' fused numba kernels against the NumPy they replace.

* window: ``clara_rt.operators.kernels.window`` (one pass, int16 HU -> float32 ``[0, 1]``)
  against ``np.clip((v.astype(np.float32) - lo) / w, 0, 1)``;
* label stats: ``kernels.label_stats`` (count, intensity sum and bounding box of every label in
  one pass) against the loop a user writes (one mask per label, ``image[mask].mean()``,
  ``np.nonzero`` for the box) and against ``bincount`` + ``scipy.ndimage.find_objects``.

The operator library is imported when the scenario runs, never when ``clara_rt.bench`` is
imported (the runtime does not depend on ``clara_rt.operators``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _collected, _now

LEVEL, WIDTH = 40.0, 400.0
SHAPE = (300, 512, 512)
LABELS = 5


def kernels(shape: tuple[int, int, int] = SHAPE, *, repeat: int = 5,
            progress: Progress | None = None) -> BenchRecord:
    """Time the window and label-statistics kernels and their NumPy baselines on one volume.

    Args:
        shape: Volume shape (default a 300-slice 512x512 CT, about 150 MB of int16).
        repeat: Timed calls per system after one warm-up call (JIT compilation or cache load).
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    from clara_rt.operators import kernels as kern
    say(f"kernels: building a {shape} int16 volume and a {LABELS}-label map")
    volume, labels = window_volume(shape), label_volume(shape, LABELS)
    lo, hi = LEVEL - WIDTH / 2, LEVEL + WIDTH / 2
    systems: dict[str, dict[str, Callable[[], Any]]] = {
        "clara-rt numba": {"window_ms": lambda: kern.window(volume, lo, hi),
                           "stats_ms": lambda: kern.label_stats(labels, volume, LABELS)},
        "numpy": {"window_ms": lambda: window_numpy(volume, lo, hi),
                  "stats_ms": lambda: label_stats_loop(labels, volume, LABELS)},
        "numpy bincount+find_objects": {
            "stats_ms": lambda: kern.label_stats(labels, volume, LABELS, backend="numpy")},
    }
    figures: dict[str, dict[str, float]] = {}
    for system, metrics in systems.items():
        say(f"kernels: {system}, {repeat} calls per metric")
        figures[system] = {m: _best_ms(f, repeat) for m, f in metrics.items()}
    ratios = _ratios(figures)
    return BenchRecord(
        scenario="kernels",
        title=f"fused numba kernels vs NumPy on a {'x'.join(map(str, shape))} int16 volume",
        machine={**machine_info(), **_numba_info(kern)},
        params={"shape": list(shape), "labels": LABELS, "repeat": repeat},
        figures=figures,
        ratios=ratios,
        targets=(Target("window speed-up over NumPy", ratios["window: numpy / clara-rt"], 2.0,
                        "x", higher_is_better=True),
                 Target("stats speed-up over the NumPy loop",
                        ratios["stats: numpy loop / clara-rt"], 5.0, "x",
                        higher_is_better=True)),
        notes="best of `repeat` calls after a warm-up; numba uses every usable core, NumPy one "
              "(its expression allocates a float32 temporary per step).")


def window_volume(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    """Return a random int16 CT-like volume (HU in [-1024, 2000))."""
    return np.random.default_rng(seed).integers(-1024, 2000, shape, dtype=np.int16)


def label_volume(shape: tuple[int, int, int] = SHAPE, labels: int = LABELS) -> np.ndarray:
    """Return a uint8 map of ``labels`` side-by-side ellipsoids ("organs", about a third of the
    voxels together) on a zero background."""
    out = np.zeros(shape, dtype=np.uint8)
    axes = (0.4 * shape[0], shape[1] / (2 * labels), 0.4 * shape[2])
    for index in range(labels):
        centre = (shape[0] / 2, (2 * index + 1) * shape[1] / (2 * labels), shape[2] / 2)
        box = tuple(slice(max(int(c - a), 0), min(int(c + a) + 1, n))
                    for c, a, n in zip(centre, axes, shape, strict=True))
        k, j, i = np.ogrid[box]
        inside = (((k - centre[0]) / axes[0]) ** 2 + ((j - centre[1]) / axes[1]) ** 2
                  + ((i - centre[2]) / axes[2]) ** 2) <= 1
        out[box][inside] = index + 1
    return out


def window_numpy(volume: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Baseline: the NumPy expression the window kernel replaces."""
    out: np.ndarray = np.clip((volume.astype(np.float32) - lower) / (upper - lower), 0, 1)
    return out


def label_stats_loop(labels: np.ndarray, image: np.ndarray, n: int) -> dict[int, Any]:
    """Baseline: what a user writes -- one mask per label, then count, mean and box."""
    stats: dict[int, Any] = {}
    for label in range(1, n + 1):
        mask = labels == label
        count = int(mask.sum())
        if not count:
            continue
        index = np.nonzero(mask)
        stats[label] = (count, float(image[mask].mean()),
                        tuple((int(ix.min()), int(ix.max()) + 1) for ix in index))
    return stats


# --- private ------------------------------------------------------------------------------


def _best_ms(func: Callable[[], Any], repeat: int) -> float:
    func()  # warm-up: JIT compilation (or numba cache load), first-touch page faults
    best = float("inf")
    for _ in range(repeat):
        with _collected():
            t0 = _now()
            func()
            best = min(best, (_now() - t0) / 1e6)
    return best


def _ratios(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    clara, numpy, bincount = (figures["clara-rt numba"], figures["numpy"],
                              figures["numpy bincount+find_objects"])
    return {"window: numpy / clara-rt": _ratio(numpy["window_ms"], clara["window_ms"]),
            "stats: numpy loop / clara-rt": _ratio(numpy["stats_ms"], clara["stats_ms"]),
            "stats: bincount+find_objects / clara-rt": _ratio(bincount["stats_ms"],
                                                              clara["stats_ms"])}


def _numba_info(kern: Any) -> dict[str, Any]:
    if not kern.numba_available():
        return {"numba": None}
    numba: Any = importlib.import_module("numba")
    return {"numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "numba_threading_layer": numba.threading_layer()}

"""The ``lungseg`` scenario: LungThresholdOp's slab-parallel CPU path against the sequential one.

The baseline, :func:`segment_lungs_sequential`, is the implementation LungThresholdOp had before
(issue 19.4), kept here verbatim in substance: whole-volume ``scipy.ndimage`` calls on one core
(``label``, ``binary_fill_holes``, ``binary_closing``, ``binary_opening``, ``center_of_mass``).
Both run on the same chest phantom in the same process; the new path runs on 1, 2 and every
usable thread, and every run's body and labels are compared voxel for voxel with the baseline's.

Peak memory is the growth of this process's peak RSS during one call (Linux: the peak is reset
through ``/proc/self/clear_refs`` before each call), in units of the int16 volume's bytes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.bench._chest import chest_phantom
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _collected, checkout_env

SHAPE = (256, 512, 512)
_ONE_RUN_ABOVE = 1 << 24  # voxels: above this the baseline is timed once
_BASE = "sequential (scipy, 1 core)"
LEFT, RIGHT = 1, 2

__all__ = ["keep_largest_sequential", "lungseg", "segment_lungs_sequential"]


def lungseg(shape: tuple[int, int, int] = SHAPE, *, repeat: int = 2,
            threads: tuple[int, ...] | None = None, rss: bool = True,
            progress: Progress | None = None) -> BenchRecord:
    """Time lung segmentation, sequential baseline vs slab-parallel, and check the masks agree.

    Args:
        shape: Phantom shape (z, y, x); default the 256x512x512 chest of issue 19.
        repeat: Timed calls per system (the best counts); the baseline runs once on volumes
            above 16 M voxels (it takes seconds there).
        threads: Thread counts for the new path (default 1, 2 and every usable core).
        rss: Also measure the peak RSS of one call per system in a fresh process (Linux).
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    from clara_rt.operators.segment import lung_threshold as seg
    from clara_rt.operators.segment import slabs
    cores = slabs.default_threads()
    counts = tuple(threads or sorted({1, min(2, cores), cores}))
    say(f"lungseg: building a {shape} chest phantom")
    volume = chest_phantom(shape)
    from clara_rt.operators.segment import labelling
    labeller = "runs" if labelling.pick(volume, "auto").__name__ == "LabelRuns" else "scipy"
    seg.segment_lungs(volume[:4, :16, :16], backend=labeller)  # imports and kernels: not timed
    say("lungseg: sequential baseline")
    base_repeat = repeat if volume.size <= _ONE_RUN_ABOVE else 1  # a 15 s call: once is enough
    base_s, base_mem, (body, labels, _) = _timed(lambda: segment_lungs_sequential(volume),
                                                 base_repeat, volume.nbytes)
    figures = {_BASE: {"seconds": base_s, "peak_alloc_x_volume": base_mem}}
    ratios: dict[str, float] = {}
    equal = _slab_runs(volume, counts, body, labels, repeat, figures, ratios, say)
    equal &= _keep_largest_runs(labels, repeat, volume.nbytes, figures, ratios, say)
    ratios["masks equal (1 = yes, 0 = a mismatch)"] = float(equal)
    if rss:
        say("lungseg: peak RSS of one call, each in a fresh process")
        for system, value in _child_rss(volume, ["sequential", str(counts[-1])],
                                        labeller).items():
            figures[_BASE if system == "sequential" else _name(counts[-1])][
                "peak_rss_x_volume"] = value
    last = figures[_name(counts[-1])]
    memory = last.get("peak_rss_x_volume", last["peak_alloc_x_volume"])
    on_two = ratios.get(f"sequential / slabs({min(2, cores)})", 0.0)
    return BenchRecord(
        scenario="lungseg",
        title=f"LungThresholdOp CPU path on a {'x'.join(map(str, shape))} chest phantom",
        machine=machine_info(),
        params={"shape": list(shape), "repeat": repeat, "threads": list(counts),
                "labeller": labeller},
        figures=figures,
        ratios=ratios,
        targets=(Target("speed-up on 2 cores", on_two, 2.0, "x", higher_is_better=True),
                 Target("masks equal to the sequential ones", float(equal), 1.0, "",
                        higher_is_better=True),
                 Target(f"peak memory of one call, {counts[-1]} thread(s)", memory, 4.0,
                        "x int16 volume")),
        notes="best of `repeat` calls; peak_alloc_x_volume = peak NumPy allocations during one "
              "call (tracemalloc) / bytes of the int16 volume; peak_rss_x_volume = growth of "
              "the peak RSS of a fresh process during one call, same unit; masks_equal 1 = body "
              "and labels identical to the sequential baseline's.")


def _slab_runs(volume: np.ndarray, counts: tuple[int, ...], body: np.ndarray,
               labels: np.ndarray, repeat: int, figures: dict[str, dict[str, float]],
               ratios: dict[str, float], say: Progress) -> bool:
    """Time the slab-parallel path on each thread count; whether every mask equals the base."""
    from clara_rt.operators.segment import lung_threshold as seg

    base_s = figures[_BASE]["seconds"]
    equal = True
    for n in counts:
        say(f"lungseg: slab-parallel, {n} thread(s)")
        secs, mem, out = _timed(partial(seg.segment_lungs, volume, threads=n), repeat,
                                volume.nbytes)
        same = bool(np.array_equal(out.body, body) and np.array_equal(out.labels, labels))
        equal &= same
        figures[_name(n)] = {"seconds": secs, "peak_alloc_x_volume": mem,
                             "masks_equal": float(same)}
        ratios[f"sequential / slabs({n})"] = _ratio(base_s, secs)
    return equal


def _keep_largest_runs(labels: np.ndarray, repeat: int, nbytes: int,
                       figures: dict[str, dict[str, float]], ratios: dict[str, float],
                       say: Progress) -> bool:
    """Time KeepLargestOp's path against the sequential one; whether their masks are equal."""
    say("lungseg: keep the 2 largest components of the lung mask (KeepLargestOp)")
    from clara_rt.operators.postprocess import components as comps
    mask = (labels > 0).view(np.uint8)
    old_s, _, old = _timed(partial(keep_largest_sequential, mask, 2), repeat, nbytes)
    new_s, _, new = _timed(partial(comps.keep_largest, mask, 2), repeat, nbytes)
    same = bool(np.array_equal(old, new))
    figures["keep_largest: sequential"] = {"seconds": old_s}
    figures["keep_largest: clara-rt"] = {"seconds": new_s, "masks_equal": float(same)}
    ratios["keep_largest: sequential / clara-rt"] = _ratio(old_s, new_s)
    return same


def _name(threads: int) -> str:
    return f"clara-rt slabs ({threads} thread{'s' if threads > 1 else ''})"


def segment_lungs_sequential(volume: np.ndarray, meta: Any = None, *, body_hu: float = -500.0,
                             air_hu: float = -400.0, closing_radius: int = 2,
                             opening_radius: int = 1, min_fraction: float = 0.05
                             ) -> tuple[np.ndarray, np.ndarray, int]:
    """Segment like LungThresholdOp did before issue 19: whole-volume SciPy calls, one core.

    Returns:
        ``(body, labels, count)``: bool body, uint8 labels (1 left, 2 right), lungs kept.
    """
    from scipy import ndimage as nd  # type: ignore[import-untyped]

    six = nd.generate_binary_structure(3, 1)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    above, n_above = nd.label(volume > body_hu, structure=six)
    keep = np.zeros(n_above + 1, dtype=bool)
    if n_above:
        sizes = np.bincount(above.astype(np.int32).ravel(), minlength=n_above + 1)
        keep[np.argsort(-sizes[1:], kind="stable")[0] + 1] = True
    body = keep[above]
    body = nd.binary_fill_holes(body, structure=in_plane)
    air = (volume < air_hu) & body
    if closing_radius:
        air = nd.binary_closing(air, structure=_ball(closing_radius)) & body
    if opening_radius:
        air = nd.binary_opening(air, structure=_ball(opening_radius))
    labels, n = nd.label(air, structure=six)
    labels = labels.astype(np.int32, copy=False)
    lut = np.zeros(n + 1, dtype=np.uint8)
    ids = _largest_inner(labels, n, min_fraction)
    if ids.size:
        affine = meta.affine_lps if meta is not None else np.eye(4)
        centres = nd.center_of_mass(labels > 0, labels, [int(i) for i in ids])
        xs = [_lps_x(affine, c) for c in centres]
        if len(xs) == 2:
            lut[ids] = [LEFT, RIGHT] if xs[0] > xs[1] else [RIGHT, LEFT]
        else:
            lut[ids] = LEFT if xs[0] > _lps_x(affine, nd.center_of_mass(body)) else RIGHT
    return body, lut[labels], int(ids.size)


def keep_largest_sequential(mask: np.ndarray, count: int = 1) -> np.ndarray:
    """Keep the ``count`` largest face-connected components as KeepLargestOp did before."""
    from scipy import ndimage as nd

    labels, n = nd.label(mask != 0, structure=nd.generate_binary_structure(3, 1))
    labels = labels.astype(np.int32, copy=False)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    order = np.argsort(-sizes[1:], kind="stable")[:count] + 1
    lut = np.zeros(n + 1, dtype=bool)
    lut[order[sizes[order] >= 1]] = True
    return lut[labels]  # type: ignore[no-any-return]


# --- private ---------------------------------------------------------------------------------


def _ball(radius: int) -> np.ndarray:
    z, y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1, -radius:radius + 1]
    return (z * z + y * y + x * x) <= radius * radius  # type: ignore[no-any-return]


def _largest_inner(labels: np.ndarray, n: int, min_fraction: float) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    edge = np.concatenate([labels[:, 0, :].ravel(), labels[:, -1, :].ravel(),
                           labels[:, :, 0].ravel(), labels[:, :, -1].ravel()])
    sizes[np.unique(edge)] = 0
    sizes[0] = 0
    ids = np.argsort(-sizes, kind="stable")[:2]
    ids = ids[sizes[ids] > 0]
    if ids.size == 2 and sizes[ids[1]] < min_fraction * sizes[ids[0]]:
        ids = ids[:1]
    return ids


def _lps_x(affine: np.ndarray, centre: Any) -> float:
    k, j, i = (float(c) for c in centre)
    return float((affine @ np.array([i, j, k, 1.0]))[0])


def _timed(func: Callable[[], Any], repeat: int, nbytes: int) -> tuple[float, float, Any]:
    """Return (best seconds, peak NumPy allocations of one call / ``nbytes``, last result)."""
    best, peak, result = float("inf"), float("nan"), None
    for i in range(max(1, repeat)):
        result = None
        with _collected():
            if i == 0:
                tracemalloc.start()
            t0 = time.perf_counter()
            result = func()
            best = min(best, time.perf_counter() - t0)
            if i == 0:
                peak = tracemalloc.get_traced_memory()[1] / nbytes
                tracemalloc.stop()
    return best, peak, result


_CHILD = """
import sys, numpy as np
from pathlib import Path
from clara_rt.bench._lungseg import segment_lungs_sequential
from clara_rt.operators.segment.lung_threshold import segment_lungs
volume = np.load(sys.argv[1])
def kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
segment_lungs(volume[:4, :16, :16], threads=1)  # lazy imports (SciPy, numba) and the
segment_lungs(volume[:4, :16, :16], threads=1, backend=sys.argv[3])  # kernels, before the reset
Path("/proc/self/clear_refs").write_text("5")
base = kb("VmRSS")
if sys.argv[2] == "sequential":
    segment_lungs_sequential(volume)
else:
    segment_lungs(volume, threads=int(sys.argv[2]))
print((kb("VmHWM") - base) / volume.nbytes)
"""


def _child_rss(volume: np.ndarray, systems: list[str], backend: str) -> dict[str, float]:
    """Peak RSS growth of one call in a fresh process per system, / bytes of the volume (Linux).

    In this process freed arrays stay resident (the allocator keeps them), so only a new
    process shows what one call needs. The child loads the volume (and imports) before the peak
    is reset; what grows after that is the segmentation's own memory.
    """
    if not Path("/proc/self/clear_refs").exists():
        return {}
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="clara-rt-lungseg-") as tmp:
        path = Path(tmp) / "volume.npy"
        np.save(path, volume)
        for system in systems:
            done = subprocess.run([sys.executable, "-c", _CHILD, str(path), system, backend],
                                  capture_output=True, text=True, env=checkout_env(),
                                  timeout=600, check=False)
            if done.returncode == 0:
                out[system] = float(done.stdout.split()[-1])
    return out

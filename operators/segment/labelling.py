"""Face-connected components for lung segmentation, behind one small interface, two labellers.

* :class:`LabelArray` -- ``scipy.ndimage.label`` / ``cupyx.scipy.ndimage.label`` into a label
  volume (uint16 on the host when it fits), measured slab by slab. The NumPy and CuPy path.
* :class:`LabelRuns` -- ``clara_rt.operators.postprocess.runs``: x-runs and a union-find on
  every core (numba), no label volume at all. Used for large host volumes when numba is installed.

Both number components like SciPy (first voxel in raster order), so "largest, ties to the
lowest label" picks the same components, and both give the same sizes, centres and edge
contact; :func:`pick` chooses one per volume.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from clara_rt import get_array_module
from clara_rt.operators.kernels import ndimage_of
from clara_rt.operators.postprocess import runs
from clara_rt.operators.postprocess.components import component_sizes, label_compact
from clara_rt.operators.segment.slabs import SlabRunner

__all__ = ["Backend", "LabelArray", "LabelRuns", "fill_holes_in_plane", "moments", "pick"]

Backend = Literal["auto", "scipy", "runs"]


class LabelArray:
    """Components as a label volume on the mask's device (SciPy or cupyx ``label``)."""

    def __init__(self, slabs: SlabRunner, mask: Any, above: float | None = None) -> None:
        self.slabs = slabs
        self.labels, self.count = label_compact(mask if above is None else
                                                _above(slabs, mask, above), 1)
        self.shape = tuple(mask.shape)
        self.xp = get_array_module(mask)

    def sizes(self) -> Any:
        """Voxels per label ``0..count`` (int64, on the device)."""
        return component_sizes(self.labels, self.count)

    def touching_yx_edge(self) -> Any:
        """``bool[count + 1]``: labels with a voxel on an in-plane edge of the volume."""
        xp = get_array_module(self.labels)
        edge = xp.zeros(self.count + 1, dtype=bool)
        lab = self.labels
        for side in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
            edge[side.ravel()] = True
        return edge

    def moments(self, ids: Any) -> Any:
        """``float64[len(ids), 4]``: voxels, sum z, sum y, sum x of each label in ``ids``."""
        return moments(self.slabs, self.labels, ids)

    def fill_holes_in_plane(self, mask: Any) -> None:
        """Fill the in-plane holes of bool ``mask`` in place (SciPy/cupyx label, by slabs)."""
        self.slabs.map(lambda z0, z1: fill_holes_in_plane(mask[z0:z1]), mask)

    def paint(self, lut: Any, out: Any) -> None:
        """Write ``lut[labels]`` into ``out`` slab by slab (``lut`` and ``out`` uint8)."""

        def slab(z0: int, z1: int) -> None:
            out[z0:z1] = lut[self.labels[z0:z1]]

        self.slabs.map(slab, out)


class LabelRuns:
    """Components as x-runs (``postprocess.runs``, numba, every core); host arrays only."""

    def __init__(self, slabs: SlabRunner, mask: Any, above: float | None = None) -> None:
        self.threads = slabs.threads
        self.runs = runs.components(mask, above=above, threads=self.threads)
        self.count = self.runs.count
        self.shape = tuple(mask.shape)
        self.xp = np

    def sizes(self) -> np.ndarray:
        """Voxels per label ``0..count`` (int64)."""
        return self.runs.sizes()

    def touching_yx_edge(self) -> np.ndarray:
        """``bool[count + 1]``: labels with a voxel on an in-plane edge of the volume."""
        return self.runs.touching_yx_edge()

    def moments(self, ids: Any) -> np.ndarray:
        """``float64[len(ids), 4]``: voxels, sum z, sum y, sum x of each label in ``ids``."""
        return self.runs.moments()[ids]

    def fill_holes_in_plane(self, mask: Any) -> None:
        """Fill the in-plane holes of bool ``mask`` in place (runs, every core)."""
        runs.fill_holes_in_plane(mask.view(np.uint8), self.threads)

    def paint(self, lut: Any, out: Any) -> None:
        """Write ``lut[label]`` over the runs into ``out`` (``lut`` and ``out`` uint8)."""
        self.runs.paint(lut, out, self.threads)


def pick(volume: Any, backend: Backend) -> type[LabelArray] | type[LabelRuns]:
    """Return the labeller for ``volume``: runs for big host volumes (``"auto"``) or as asked.

    Raises:
        ValueError: ``backend`` is unknown, or ``"runs"`` for a CuPy array or without numba.
    """
    if backend not in ("auto", "scipy", "runs"):
        raise ValueError(f"backend must be 'auto', 'scipy' or 'runs', got {backend!r}")
    on_host = get_array_module(volume) is np and volume.ndim == 3
    if backend == "runs":
        if not on_host or not runs.available():
            raise ValueError("backend 'runs' needs a 3-D NumPy volume and numba")
        return LabelRuns
    if backend == "auto" and runs.worth_it(volume):  # from runs.RUNS_MIN_VOXELS on
        return LabelRuns
    return LabelArray


def moments(slabs: SlabRunner, labels: Any, ids: Any) -> Any:
    """Return ``[count, sum z, sum y, sum x]`` (float64) per id (``ids=None``: labels != 0)."""
    xp = get_array_module(labels)
    rows = 1 if ids is None else len(ids)

    def slab(z0: int, z1: int) -> Any:
        out = xp.zeros((rows, 4), dtype=np.float64)
        part = labels[z0:z1]
        for row in range(rows):
            mask = (part != 0 if ids is None else part == ids[row]).view(np.uint8)
            # axis sums of a 0/1 uint8 view: plain SIMD adds instead of bool -> int64 reductions
            yx = mask.sum(axis=0, dtype=np.uint8 if z1 - z0 < 256 else np.int32)
            zx = mask.sum(axis=1, dtype=np.int32)
            per_z, per_y, per_x = zx.sum(axis=1), yx.sum(axis=1), yx.sum(axis=0)
            out[row, 0] = per_z.sum()
            out[row, 1] = (per_z * xp.arange(z0, z1)).sum()
            out[row, 2] = (per_y * xp.arange(per_y.size)).sum()
            out[row, 3] = (per_x * xp.arange(per_x.size)).sum()
        return out

    return sum(slabs.map(slab, labels))


def fill_holes_in_plane(body: Any) -> None:
    """Fill, in place, the holes of every axial slice of ``body`` (4-connected background).

    The same mask as ``binary_fill_holes(body, structure=in_plane_cross)``: background that
    cannot reach the slice's edge is a hole. One labelling of the background replaces SciPy's
    dilate-until-nothing-changes loop.
    """
    xp = get_array_module(body)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = _cross_2d()
    # a NumPy structure for both: cupyx copies a device one back to the host anyway
    background, n = ndimage_of(body).label(~body, structure=in_plane)
    outside = xp.zeros(n + 1, dtype=bool)
    for edge in (background[:, 0, :], background[:, -1, :], background[:, :, 0],
                 background[:, :, -1]):
        outside[edge.ravel()] = True
    outside[0] = False  # label 0 is the body itself
    xp.logical_not(outside[background], out=body)


# --- private ---------------------------------------------------------------------------------


def _above(slabs: SlabRunner, volume: Any, hu: float) -> Any:
    """``volume > hu`` as bool, slab by slab."""
    xp = get_array_module(volume)
    above = xp.empty(volume.shape, dtype=bool)
    slabs.map(lambda z0, z1: xp.greater(volume[z0:z1], hu, out=above[z0:z1]), volume)
    return above


def _cross_2d() -> np.ndarray:
    """Return the 4-connected 3x3 cross used to fill holes slice by slice."""
    return np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)

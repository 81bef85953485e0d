"""LungThresholdOp: lungs and body of a CT volume by Hounsfield thresholds and morphology, with no
model. Good enough for a demo, a QA check or a crop box; not a clinical segmentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.kernels import ndimage_of
from clara_rt.operators.postprocess.components import (
    component_sizes,
    label_compact,
    largest_ids,
)
from clara_rt.operators.segment.morphology import ball, close, open_
from clara_rt.operators.segment.slabs import SlabRunner, window
from clara_rt.operators.volume import VolumeMeta

__all__ = ["LungSegmentation", "LungThresholdOp", "ball", "segment_lungs"]

_SHAPE = ("Z", "Y", "X")
LEFT, RIGHT = 1, 2


@dataclass(frozen=True)
class LungSegmentation:
    """What :func:`segment_lungs` found (arrays on the input's device).

    Attributes:
        body: bool mask of the body, holes filled slice by slice.
        labels: uint8 lungs: 1 left, 2 right (patient sides), 0 elsewhere.
        count: How many lung components were kept (0, 1 or 2).
    """

    body: Any
    labels: Any
    count: int


class LungThresholdOp(Operator):
    """Segment body and lungs of a CT volume (HU) by thresholds, morphology and components.

    1. body: the largest component above ``body_hu``, holes filled in every axial slice;
    2. air: voxels below ``air_hu`` inside the body (air outside it is the outside);
    3. closing (``closing_radius``: vessels back in) then opening (``opening_radius``: thin
       airways and noise out), with ball-shaped elements;
    4. lungs: the two largest air components not touching the in-plane edge of the image, the
       second kept only if at least ``min_fraction`` of the first;
    5. sides: the component further towards patient left (+x in LPS, through ``meta.direction``;
       +i without meta) is 1, the other 2. One component is placed against the body's centre.

    Ports:
        in ``volume``: array, CT in HU (any numeric dtype), shape ``("Z", "Y", "X")``.
        in ``meta``: object, optional :class:`VolumeMeta` (orientation for the sides).
        out ``mask``: uint8, 1 in the lungs.
        out ``labels``: uint8, 1 left lung, 2 right lung (only with ``sides=True``).
        out ``body``: uint8, 1 in the body.
        out ``meta``: the input ``meta``.

    Args:
        name: Operator name in its pipeline.
        body_hu: Body threshold (HU).
        air_hu: Air threshold (HU).
        closing_radius: Radius in voxels of the closing ball (0: no closing).
        opening_radius: Radius in voxels of the opening ball (0: no opening).
        min_fraction: Smallest size of the second lung relative to the first.
        sides: Declare and emit the ``labels`` output (left/right).
        threads: Host threads for the slab-parallel steps (``None``: every core this process
            may use; 1: the calling thread only). Ignored on CuPy. The masks do not depend on it.
    """

    def __init__(self, name: str | None = None, /, *, body_hu: float = -500.0,
                 air_hu: float = -400.0, closing_radius: int = 2, opening_radius: int = 1,
                 min_fraction: float = 0.05, sides: bool = True,
                 threads: int | None = None) -> None:
        super().__init__(name)
        if closing_radius < 0 or opening_radius < 0:
            raise ValueError("closing_radius and opening_radius must be >= 0")
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads!r}")
        self.threads = None if threads is None else int(threads)
        self.body_hu, self.air_hu = float(body_hu), float(air_hu)
        self.closing_radius, self.opening_radius = int(closing_radius), int(opening_radius)
        self.min_fraction, self.sides = float(min_fraction), bool(sides)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``volume`` + ``meta`` in; ``mask``, ``labels`` (if sides), ``body``, ``meta``."""
        spec.input("volume", shape=_SHAPE, description="CT in Hounsfield units")
        spec.input("meta", kind="object", optional=True, description="VolumeMeta (orientation)")
        spec.output("mask", dtype="uint8", shape=_SHAPE, description="1 = lung")
        if self.sides:
            spec.output("labels", dtype="uint8", shape=_SHAPE, description="1 left, 2 right")
        spec.output("body", dtype="uint8", shape=_SHAPE, description="1 = body")
        spec.output("meta", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Segment; the volume is only read."""
        meta = inputs["meta"]
        seg = segment_lungs(inputs["volume"], meta, body_hu=self.body_hu, air_hu=self.air_hu,
                            closing_radius=self.closing_radius,
                            opening_radius=self.opening_radius, min_fraction=self.min_fraction,
                            threads=self.threads)
        outputs.emit("mask", (seg.labels > 0).view(np.uint8))
        if self.sides:
            outputs.emit("labels", seg.labels)
        outputs.emit("body", seg.body.view(np.uint8))
        outputs.emit("meta", meta)


def segment_lungs(volume: Any, meta: VolumeMeta | None = None, *, body_hu: float = -500.0,
                  air_hu: float = -400.0, closing_radius: int = 2, opening_radius: int = 1,
                  min_fraction: float = 0.05, threads: int | None = None) -> LungSegmentation:
    """Find body and lungs as :class:`LungThresholdOp` describes (NumPy or CuPy).

    The masks are exactly those of ``scipy.ndimage`` (``label``, ``binary_fill_holes``,
    ``binary_closing``/``binary_opening`` with ball elements) applied to the whole volume, but
    on the host the local steps run in z-slabs on ``threads`` threads (default: every core this
    process may use) and no step holds more than one int16-sized temporary of the volume.
    CuPy arrays stay on the device; only the few numbers that pick the sides come back.
    """
    xp = get_array_module(volume)
    with SlabRunner(threads) as slabs:
        body = _body(slabs, volume, body_hu)
        air = _air(slabs, volume, body, air_hu, closing_radius, opening_radius)
        labels, n = label_compact(air, 1)
        del air
        lut, count = _lung_table(slabs, labels, n, body, meta, min_fraction)
        out = xp.empty(volume.shape, dtype=np.uint8)

        def lookup(z0: int, z1: int) -> None:
            out[z0:z1] = lut[labels[z0:z1]]

        slabs.map(lookup, labels)
    return LungSegmentation(body=body, labels=out, count=count)


def _body(slabs: SlabRunner, volume: Any, body_hu: float) -> Any:
    """The largest component above ``body_hu``, holes filled in every axial slice (bool)."""
    xp = get_array_module(volume)
    labels, n = label_compact(_above(slabs, volume, body_hu), 1)
    keep = xp.zeros(n + 1, dtype=bool)
    if n:
        sizes = component_sizes(labels, n)
        sizes[0] = 0
        keep[largest_ids(sizes, 1)] = True
    body = xp.empty(volume.shape, dtype=bool)

    def slab(z0: int, z1: int) -> None:  # keep the largest, then fill: no halo needed in-plane
        body[z0:z1] = keep[labels[z0:z1]]
        _fill_holes_in_plane(body[z0:z1])

    slabs.map(slab, body)
    return body


def _above(slabs: SlabRunner, volume: Any, hu: float) -> Any:
    """``volume > hu`` as bool, slab by slab."""
    xp = get_array_module(volume)
    above = xp.empty(volume.shape, dtype=bool)
    slabs.map(lambda z0, z1: xp.greater(volume[z0:z1], hu, out=above[z0:z1]), volume)
    return above


def _air(slabs: SlabRunner, volume: Any, body: Any, air_hu: float, closing_radius: int,
         opening_radius: int) -> Any:
    """Air in the body, closed and opened: each slab from a window with a big enough halo."""
    xp = get_array_module(volume)
    air = xp.empty(volume.shape, dtype=bool)
    halo = 2 * (closing_radius + opening_radius)  # each of the 4 ball passes reaches r slices

    def slab(z0: int, z1: int) -> None:
        outer, inner = window(z0, z1, volume.shape[0], halo)
        air[z0:z1] = _lung_air(volume[outer], body[outer], air_hu, closing_radius,
                               opening_radius)[inner]

    slabs.map(slab, air)
    return air


def _cross_2d() -> np.ndarray:
    """Return the 4-connected 3x3 cross used to fill holes slice by slice."""
    return np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def _fill_holes_in_plane(body: Any) -> None:
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


def _lung_air(volume: Any, body: Any, air_hu: float, closing_radius: int,
              opening_radius: int) -> Any:
    """Air inside the body, closed (then kept inside the body) and opened: one (sub)volume."""
    air = (volume < air_hu) & body
    if closing_radius:
        air = close(air, closing_radius)
        air &= body
    if opening_radius:
        air = open_(air, opening_radius)
    return air


def _lung_table(slabs: SlabRunner, labels: Any, n: int, body: Any, meta: VolumeMeta | None,
                min_fraction: float) -> tuple[Any, int]:
    """Pick the <= 2 largest air components off the in-plane edge; return id -> side and count.

    Everything is decided on the labels' device, so CuPy input copies no array to the host: the
    only value read back is the count of lungs kept (one scalar, as ``label`` reads its count).
    """
    xp = get_array_module(labels)
    lut = xp.zeros(n + 1, dtype=np.uint8)
    if n == 0:
        return lut, 0
    sizes = component_sizes(labels, n)
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        sizes[edge.ravel()] = 0  # touches the image edge: outside air, not lung
    sizes[0] = 0
    ids = largest_ids(sizes, 2)  # two ids: n >= 1, so sizes has >= 2 entries
    top = sizes[ids].astype(np.float64)
    kept = top > 0
    kept[1:] &= top[1:] >= min_fraction * top[0]  # the second only if big enough
    affine = meta.affine_lps if meta is not None else np.eye(4)
    xs = _lps_x(affine, _moments(slabs, labels, ids))
    body_x = _lps_x(affine, _moments(slabs, body, None))[0]
    first_left = xp.where(kept[1], xs[0] > xs[1], xs[0] > body_x)  # one lung: vs the body
    sides = xp.where(xp.stack([first_left, ~first_left]), LEFT, RIGHT).astype(np.uint8)
    lut[ids] = sides * kept
    return lut, int(kept.sum())


def _moments(slabs: SlabRunner, labels: Any, ids: Any) -> Any:
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


def _lps_x(affine: np.ndarray, moments: Any) -> Any:
    """LPS x of the centres of ``[count, sum z, sum y, sum x]`` rows (on their device).

    An empty row (count 0) is placed at voxel (0, 0, 0); its side is never used.
    """
    xp = get_array_module(moments)
    centre = moments[:, 1:] / xp.maximum(moments[:, :1], 1.0)  # (k, j, i) per row
    a = [float(v) for v in affine[0]]  # x = a . (i, j, k, 1), Python floats: nothing uploaded
    return centre[:, 2] * a[0] + centre[:, 1] * a[1] + centre[:, 0] * a[2] + a[3]

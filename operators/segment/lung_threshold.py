"""LungThresholdOp: lungs and body of a CT volume by Hounsfield thresholds and morphology, with no
model. Good enough for a demo, a QA check or a crop box; not a clinical segmentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.postprocess.components import largest_ids
from clara_rt.operators.segment.labelling import Backend, LabelArray, LabelRuns, moments, pick
from clara_rt.operators.segment.morphology import ball, dilate, erode
from clara_rt.operators.segment.slabs import SlabRunner, window
from clara_rt.operators.volume import VolumeMeta

__all__ = ["LungSegmentation", "LungThresholdOp", "ball", "segment_lungs"]

_SHAPE = ("Z", "Y", "X")
LEFT, RIGHT = 1, 2
_SLAB_BYTES_PER_VOXEL = 4.5  # budget for the slab temporaries of the air step, per voxel


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

    preload = ("scipy.ndimage",)  # imported by the labelling on first use; see Operator.preload

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
                  min_fraction: float = 0.05, threads: int | None = None,
                  backend: Backend = "auto") -> LungSegmentation:
    """Find body and lungs as :class:`LungThresholdOp` describes (NumPy or CuPy).

    The masks are exactly those of ``scipy.ndimage`` (``label``, ``binary_fill_holes``,
    ``binary_closing``/``binary_opening`` with ball elements) applied to the whole volume. On
    the host the local steps run in z-slabs on ``threads`` threads (default: every core this
    process may use), and a large volume is labelled as x-runs on the same threads (numba:
    ``backend="auto"`` from 4 M voxels, ``"runs"`` always, ``"scipy"`` never). CuPy arrays stay
    on the device; only the count of lungs kept is read back.
    """
    xp = get_array_module(volume)
    labeller = pick(volume, backend)
    with SlabRunner(threads) as slabs:
        body = _body(slabs, labeller(slabs, volume, above=body_hu))
        air = _air(slabs, volume, body, air_hu, closing_radius, opening_radius)
        lungs = labeller(slabs, air)
        del air
        out = xp.zeros(volume.shape, dtype=np.uint8)
        if lungs.count == 0:
            return LungSegmentation(body=body, labels=out, count=0)
        sizes = lungs.sizes()
        sizes[lungs.touching_yx_edge()] = 0  # touches the image edge: outside air, not lung
        sizes[0] = 0
        lut, count = _lung_table(sizes, lungs.moments, moments(slabs, body, None), meta,
                                 min_fraction)
        lungs.paint(lut, out)
    return LungSegmentation(body=body, labels=out, count=count)


def _body(slabs: SlabRunner, above: LabelArray | LabelRuns) -> Any:
    """The largest component of ``above``, holes filled in every axial slice (bool)."""
    xp = above.xp
    keep = xp.zeros(above.count + 1, dtype=np.uint8)
    if above.count:
        sizes = above.sizes()
        sizes[0] = 0
        keep[largest_ids(sizes, 1)] = 1
    body = xp.empty(above.shape, dtype=bool)
    above.paint(keep, body.view(np.uint8))
    above.fill_holes_in_plane(body)
    return body


def _air(slabs: SlabRunner, volume: Any, body: Any, air_hu: float, closing_radius: int,
         opening_radius: int) -> Any:
    """Air in the body, closed and opened: each slab from a window with a big enough halo."""
    xp = get_array_module(volume)
    air = xp.empty(volume.shape, dtype=bool)
    halo = 2 * (closing_radius + opening_radius)  # each of the 4 ball passes reaches r slices

    def slab(z0: int, z1: int) -> None:
        outer, _ = window(z0, z1, volume.shape[0], halo)
        done, lo = _lung_air(volume[outer], body[outer], outer.start, volume.shape[0], air_hu,
                             closing_radius, opening_radius)
        air[z0:z1] = done[z0 - lo:z1 - lo]

    # each running slab holds ~4 bool copies of its window: bound them to ~2.25x an int16
    # volume, whatever the core count (at least 2 slabs at once)
    per_slab = 4 * min(volume.shape[0], slabs.slab + 2 * halo) * int(volume[0].size)
    slabs.map(slab, air, workers=max(2, int(_SLAB_BYTES_PER_VOXEL * volume.size) // per_slab))
    return air


def _lung_air(volume: Any, body: Any, lo: int, nz: int, air_hu: float, closing_radius: int,
              opening_radius: int) -> tuple[Any, int]:
    """Air inside the body, closed (then kept inside the body) and opened, in a z-window.

    The window holds slices ``lo, lo + 1, ...`` of a volume of ``nz`` slices. After each ball
    pass of radius ``r`` the ``r`` slices next to a cut face (not a face of the volume) are
    wrong and are dropped, so every pass works on less than the one before.

    Returns:
        The air of the slices still valid, and the index of its first slice.
    """
    first, hi = lo, lo + volume.shape[0]
    air = (volume < air_hu) & body
    passes: list[tuple[Any, int]] = []
    if closing_radius:  # None: keep the closed air inside the body
        passes += [(dilate, closing_radius), (erode, closing_radius), (None, 0)]
    if opening_radius:
        passes += [(erode, opening_radius), (dilate, opening_radius)]
    for op, radius in passes:
        if op is None:
            air &= body[lo - first:hi - first]
            continue
        air = op(air, radius)
        new_lo, new_hi = (lo + radius if lo else 0), (hi - radius if hi < nz else nz)
        air, lo, hi = air[new_lo - lo:new_hi - lo], new_lo, new_hi
    return air, lo


def _lung_table(sizes: Any, moments_of: Any, body_moments: Any, meta: VolumeMeta | None,
                min_fraction: float) -> tuple[Any, int]:
    """Pick the <= 2 largest candidates of ``sizes``; return id -> side (uint8) and the count.

    Everything is decided on the device of ``sizes``, so CuPy input copies no array to the host:
    the only value read back is the count of lungs kept (one scalar, as ``label`` reads its own).

    Args:
        sizes: Voxels per label, 0 for labels that cannot be lungs (edge, background).
        moments_of: ``ids -> [count, sum z, sum y, sum x]`` rows of those labels.
        body_moments: The same one row for the body.
        meta: Orientation (sides); ``None``: +i is patient left.
        min_fraction: Smallest size of the second lung relative to the first.
    """
    xp = get_array_module(sizes)
    lut = xp.zeros(sizes.size, dtype=np.uint8)
    ids = largest_ids(sizes, 2)  # two ids: there is >= 1 label, so sizes has >= 2 entries
    top = sizes[ids].astype(np.float64)
    kept = top > 0
    kept[1:] &= top[1:] >= min_fraction * top[0]  # the second only if big enough
    affine = meta.affine_lps if meta is not None else np.eye(4)
    xs = _lps_x(affine, moments_of(ids))
    body_x = _lps_x(affine, body_moments)[0]
    first_left = xp.where(kept[1], xs[0] > xs[1], xs[0] > body_x)  # one lung: vs the body
    sides = xp.where(xp.stack([first_left, ~first_left]), LEFT, RIGHT).astype(np.uint8)
    lut[ids] = sides * kept
    return lut, int(kept.sum())


def _lps_x(affine: np.ndarray, moments: Any) -> Any:
    """LPS x of the centres of ``[count, sum z, sum y, sum x]`` rows (on their device).

    An empty row (count 0) is placed at voxel (0, 0, 0); its side is never used.
    """
    xp = get_array_module(moments)
    centre = moments[:, 1:] / xp.maximum(moments[:, :1], 1.0)  # (k, j, i) per row
    a = [float(v) for v in affine[0]]  # x = a . (i, j, k, 1), Python floats: nothing uploaded
    return centre[:, 2] * a[0] + centre[:, 1] * a[1] + centre[:, 0] * a[2] + a[3]

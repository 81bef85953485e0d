"""LungThresholdOp: lungs and body of a CT volume by Hounsfield thresholds and morphology, with no
model. Good enough for a demo, a QA check or a crop box; not a clinical segmentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.kernels import ndimage_of
from clara_rt.operators.postprocess.components import keep_largest, label_components
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
    """

    def __init__(self, name: str | None = None, /, *, body_hu: float = -500.0,
                 air_hu: float = -400.0, closing_radius: int = 2, opening_radius: int = 1,
                 min_fraction: float = 0.05, sides: bool = True) -> None:
        super().__init__(name)
        if closing_radius < 0 or opening_radius < 0:
            raise ValueError("closing_radius and opening_radius must be >= 0")
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
                            opening_radius=self.opening_radius, min_fraction=self.min_fraction)
        outputs.emit("mask", (seg.labels > 0).view(np.uint8))
        if self.sides:
            outputs.emit("labels", seg.labels)
        outputs.emit("body", seg.body.view(np.uint8))
        outputs.emit("meta", meta)


def segment_lungs(volume: Any, meta: VolumeMeta | None = None, *, body_hu: float = -500.0,
                  air_hu: float = -400.0, closing_radius: int = 2, opening_radius: int = 1,
                  min_fraction: float = 0.05) -> LungSegmentation:
    """Find body and lungs as :class:`LungThresholdOp` describes (NumPy or CuPy)."""
    nd = ndimage_of(volume)
    xp = get_array_module(volume)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = _cross_2d()
    body = keep_largest(volume > body_hu, 1)
    body = nd.binary_fill_holes(body, structure=xp.asarray(in_plane))
    air = (volume < air_hu) & body
    if closing_radius:
        air = nd.binary_closing(air, structure=xp.asarray(ball(closing_radius))) & body
    if opening_radius:
        air = nd.binary_opening(air, structure=xp.asarray(ball(opening_radius)))
    labels, n, ids = _lung_components(air, min_fraction)
    lut = np.zeros(n + 1, dtype=np.uint8)  # component id -> LEFT / RIGHT / 0
    for component, side in zip(ids, _sides(nd, labels, ids, body, meta), strict=True):
        lut[component] = side
    return LungSegmentation(body=body, labels=xp.asarray(lut)[labels], count=len(ids))


def ball(radius: int) -> np.ndarray:
    """Return a bool ball of ``radius`` voxels (a ``(2r+1)^3`` NumPy array)."""
    z, y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1, -radius:radius + 1]
    return (z * z + y * y + x * x) <= radius * radius  # type: ignore[no-any-return]


def _cross_2d() -> np.ndarray:
    """Return the 4-connected 3x3 cross used to fill holes slice by slice."""
    return np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def _lung_components(air: Any, min_fraction: float) -> tuple[Any, int, np.ndarray]:
    """Label air; return labels, their count and the ids (host) of the <= 2 largest inner ones."""
    xp = get_array_module(air)
    labels, n = label_components(air, 1)
    if n == 0:
        return labels, 0, np.zeros(0, dtype=np.int64)
    sizes = xp.bincount(labels.ravel(), minlength=n + 1)
    edge = xp.concatenate([labels[:, 0, :].ravel(), labels[:, -1, :].ravel(),
                           labels[:, :, 0].ravel(), labels[:, :, -1].ravel()])
    sizes[xp.unique(edge)] = 0  # touches the image edge: outside air, not lung (also drops 0)
    sizes = np.asarray(sizes.get() if xp is not np else sizes)
    ids = np.argsort(-sizes, kind="stable")[:2]
    ids = ids[sizes[ids] > 0]
    if ids.size == 2 and sizes[ids[1]] < min_fraction * sizes[ids[0]]:
        ids = ids[:1]
    return labels, n, ids


def _sides(nd: Any, labels: Any, ids: np.ndarray, body: Any, meta: VolumeMeta | None
           ) -> list[int]:
    """Return LEFT or RIGHT for each component id (patient sides, LPS +x is left)."""
    if ids.size == 0:
        return []
    affine = meta.affine_lps if meta is not None else np.eye(4)
    centres = nd.center_of_mass(labels > 0, labels, [int(i) for i in ids])
    xs = [_lps_x(affine, c) for c in centres]
    if len(xs) == 2:
        return [LEFT, RIGHT] if xs[0] > xs[1] else [RIGHT, LEFT]
    body_x = _lps_x(affine, nd.center_of_mass(body))
    return [LEFT if xs[0] > body_x else RIGHT]


def _lps_x(affine: np.ndarray, centre: Any) -> float:
    k, j, i = (float(c) for c in centre)
    return float((affine @ np.array([i, j, k, 1.0]))[0])

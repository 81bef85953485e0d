"""ThresholdOp: a binary mask of the values strictly between two bounds (``low < v < high``).

The classical stand-in for a segmentation network in the reference pipelines: same ports as an
inference operator would have (an image in, a uint8 mask out), no model.
"""

from __future__ import annotations

from typing import Any

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs
from clara_rt.operators.preprocess.window import dims

__all__ = ["ThresholdOp", "threshold"]


class ThresholdOp(Operator):
    """Mask the voxels with ``low < value < high`` (either bound may be left out).

    NumPy or CuPy in, the same out; NaN is never inside. Bounds follow NumPy's comparison rules
    (a float32 volume is compared with the bounds rounded to float32), so keep a bound away from
    values the image really holds: on integer HU, a half-integer bound leaves no doubt.

    Ports:
        in ``volume``: array, any numeric dtype, shape ``("Z", "Y", "X")`` (rank ``ndim``).
        in ``meta``: object, optional -- passed through unchanged.
        out ``mask``: uint8, 1 inside, 0 outside, same shape.
        out ``meta``: the input ``meta``.

    Args:
        name: Operator name in its pipeline.
        low: Exclusive lower bound (``None``: no lower bound).
        high: Exclusive upper bound (``None``: no upper bound).
        ndim: Rank of the volume: 3 (default), 2 or 1.
    """

    def __init__(self, name: str | None = None, /, *, low: float | None = None,
                 high: float | None = None, ndim: int = 3) -> None:
        super().__init__(name)
        if low is None and high is None:
            raise ValueError("ThresholdOp needs low, high or both")
        if low is not None and high is not None and not float(low) < float(high):
            raise ValueError(f"ThresholdOp: low must be below high, got low={low!r}, "
                             f"high={high!r}")
        self.low = None if low is None else float(low)
        self.high = None if high is None else float(high)
        self.ndim = int(ndim)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``volume`` + ``meta`` in, ``mask`` + ``meta`` out."""
        shape = dims(self.ndim)
        spec.input("volume", shape=shape, description="image or probability map")
        spec.input("meta", kind="object", optional=True, description="VolumeMeta, passed on")
        spec.output("mask", dtype="uint8", shape=shape, description="1 = low < value < high")
        spec.output("meta", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Threshold ``volume`` into a new uint8 mask; the input is only read."""
        outputs.emit("mask", threshold(inputs["volume"], self.low, self.high))
        outputs.emit("meta", inputs["meta"])


def threshold(volume: Any, low: float | None, high: float | None) -> Any:
    """Return the uint8 mask ``low < volume < high`` (NumPy or CuPy, same device as ``volume``).

    Args:
        volume: NumPy or CuPy array; not modified.
        low: Exclusive lower bound, or ``None``.
        high: Exclusive upper bound, or ``None``.

    Raises:
        ValueError: Neither bound given.
    """
    if low is None and high is None:
        raise ValueError("threshold needs low, high or both")
    if low is None:
        inside = volume < high
    elif high is None:
        inside = volume > low
    else:
        inside = volume > low
        inside &= volume < high
    return inside.view("uint8")

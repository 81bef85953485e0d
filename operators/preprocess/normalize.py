"""NormalizeOp: z-score or min-max intensity normalisation to float32."""

from __future__ import annotations

from typing import Any

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.kernels import mean_std
from clara_rt.operators.preprocess.window import dims

__all__ = ["NormalizeOp", "normalize"]

_MODES = ("zscore", "minmax")


class NormalizeOp(Operator):
    """Normalise intensities: ``zscore`` (mean 0, std 1) or ``minmax`` (to ``[0, 1]``).

    Statistics are taken over every voxel, or with ``nonzero=True`` over the non-zero voxels only
    (zeros then stay zero), as MONAI's ``NormalizeIntensity`` does. A constant image becomes all
    zeros. NumPy or CuPy in, the same out; statistics are accumulated in float64
    (:func:`~clara_rt.operators.kernels.mean_std`: population std, ddof 0, on both paths).

    Ports:
        in ``volume``: array, any numeric dtype, shape ``("Z", "Y", "X")`` (rank ``ndim``).
        in ``meta``: object, optional -- passed through unchanged.
        out ``normalized``: float32, same shape.
        out ``meta``: the input ``meta``.

    Args:
        name: Operator name in its pipeline.
        mode: ``"zscore"`` or ``"minmax"``.
        nonzero: Take statistics over non-zero voxels only and leave zeros at zero.
        ndim: Rank of the volume (3 by default).
    """

    def __init__(self, name: str | None = None, /, *, mode: str = "zscore",
                 nonzero: bool = False, ndim: int = 3) -> None:
        super().__init__(name)
        if mode not in _MODES:
            raise ValueError(f"unknown normalize mode {mode!r}; modes are: {', '.join(_MODES)}")
        self.mode, self.nonzero, self.ndim = mode, bool(nonzero), int(ndim)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``volume`` + ``meta`` in, ``normalized`` + ``meta`` out."""
        shape = dims(self.ndim)
        spec.input("volume", shape=shape)
        spec.input("meta", kind="object", optional=True, description="VolumeMeta, passed on")
        spec.output("normalized", dtype="float32", shape=shape)
        spec.output("meta", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Normalise ``volume`` into a new float32 array."""
        outputs.emit("normalized", normalize(inputs["volume"], self.mode, nonzero=self.nonzero))
        outputs.emit("meta", inputs["meta"])


def normalize(volume: Any, mode: str = "zscore", *, nonzero: bool = False) -> Any:
    """Return ``volume`` normalised as :class:`NormalizeOp` describes (a new float32 array).

    Args:
        volume: NumPy or CuPy array; not modified.
        mode: ``"zscore"`` or ``"minmax"``.
        nonzero: Statistics over non-zero voxels only; zeros stay zero.
    """
    xp = get_array_module(volume)
    mask = volume != 0 if nonzero else None
    values = volume[mask] if mask is not None else volume
    if values.size == 0:
        return xp.zeros(volume.shape, dtype=xp.float32)
    if mode == "zscore":
        shift, scale = mean_std(values)  # float64 on both paths (not CuPy's std(dtype=...))
    elif mode == "minmax":
        shift = float(values.min())
        scale = float(values.max()) - shift
    else:
        raise ValueError(f"unknown normalize mode {mode!r}; modes are: {', '.join(_MODES)}")
    out = volume.astype(xp.float32)  # a new array: the input is shared and read-only
    out -= xp.float32(shift)
    if scale > 0:
        out *= xp.float32(1.0 / scale)
    else:
        out[...] = 0
    if mask is not None:
        out[~mask] = 0
    return out

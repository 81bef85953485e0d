"""ResampleOp: resample a volume to a target voxel spacing (scipy / cupyx ``ndimage.zoom``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs
from clara_rt.operators.kernels import ndimage_of
from clara_rt.operators.volume import VolumeMeta

__all__ = ["ResampleOp", "resample", "resampled_grid"]


class ResampleOp(Operator):
    """Resample ``volume`` to ``spacing`` (mm per voxel along ``k, j, i``) and emit its new meta.

    The first and last voxel centres stay where they are (``zoom`` with ``grid_mode=False``):
    the origin does not move, and each axis gets ``round(extent / target) + 1`` voxels, so the
    spacing is exactly the target when the extent is a multiple of it and otherwise the nearest
    spacing that fits; the emitted meta records the spacing actually used. A volume already on
    the target grid is passed on as it is (same object, no copy).

    Ports:
        in ``volume``: array, any dtype, shape ``("Z", "Y", "X")``.
        in ``meta``: object, the input's :class:`VolumeMeta` (required: it holds the spacing).
        out ``resampled``: array, the input's dtype (or ``dtype``), shape ``(*, *, *)``.
        out ``meta``: a new :class:`VolumeMeta` (``with_grid(spacing=...)``).

    Args:
        name: Operator name in its pipeline.
        spacing: Target ``(dk, dj, di)`` in mm, or one number for isotropic voxels; an entry
            ``None`` keeps that axis' spacing.
        order: Spline order: 0 nearest (labels), 1 linear (default), 3 cubic.
        mode: How values beyond the edge are extended (``ndimage.zoom``'s ``mode``).
        dtype: Output dtype; default the input's (integers are rounded), e.g. ``"float32"``.
    """

    def __init__(self, name: str | None = None, /, *,
                 spacing: float | Sequence[float | None] = 1.0, order: int = 1,
                 mode: str = "nearest", dtype: str | None = None) -> None:
        super().__init__(name)
        target = [spacing] * 3 if isinstance(spacing, int | float) else list(spacing)
        if len(target) != 3 or any(s is not None and not float(s) > 0 for s in target):
            raise ValueError(f"spacing must be one positive number or three (k, j, i) positive "
                             f"numbers or None, got {spacing!r}")
        if order not in range(6):
            raise ValueError(f"spline order must be 0 to 5, got {order!r}")
        self.spacing = tuple(None if s is None else float(s) for s in target)
        self.order, self.mode, self.dtype = int(order), mode, dtype

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``volume`` + ``meta`` in, ``resampled`` + ``meta`` out."""
        spec.input("volume", shape=("Z", "Y", "X"))
        spec.input("meta", kind="object", description="VolumeMeta of the volume")
        spec.output("resampled", dtype=self.dtype, shape=("*", "*", "*"))
        spec.output("meta", kind="object", description="VolumeMeta of the resampled grid")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Resample; the input volume is never written."""
        meta: VolumeMeta | None = inputs["meta"]
        if not isinstance(meta, VolumeMeta):
            raise TypeError(f"operator '{self.name}': input 'meta' must be a VolumeMeta, got "
                            f"{type(meta).__name__}")
        target = tuple(old if new is None else new
                       for old, new in zip(meta.spacing, self.spacing, strict=True))
        out, spacing = resample(inputs["volume"], meta.spacing, target, order=self.order,
                                mode=self.mode, dtype=self.dtype)
        outputs.emit("resampled", out)
        outputs.emit("meta", meta if spacing == meta.spacing else meta.with_grid(spacing=spacing))


def resample(volume: Any, spacing: Sequence[float], target: Sequence[float], *, order: int = 1,
             mode: str = "nearest", dtype: Any = None) -> tuple[Any, tuple[float, float, float]]:
    """Resample ``volume`` from ``spacing`` to (about) ``target``; see :class:`ResampleOp`.

    Returns:
        ``(array, spacing_used)``; the array is ``volume`` itself when nothing changes.
    """
    shape, used = resampled_grid(volume.shape, spacing, target)
    if tuple(shape) == tuple(volume.shape):
        return (volume if dtype is None or volume.dtype == dtype else volume.astype(dtype)), used
    zoom = [n_out / n_in for n_out, n_in in zip(shape, volume.shape, strict=True)]
    out = ndimage_of(volume).zoom(volume, zoom, output=dtype or volume.dtype, order=order,
                                  mode=mode, grid_mode=False)
    if tuple(out.shape) != tuple(shape):  # zoom rounds n_in * factor; guard float surprises
        raise RuntimeError(f"zoom produced shape {out.shape}, expected {tuple(shape)}")
    return out, used


def resampled_grid(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]
                   ) -> tuple[tuple[int, ...], tuple[float, float, float]]:
    """Return the output shape and the spacing actually used for each axis.

    An axis of ``n`` voxels spans ``(n - 1) * spacing`` between its first and last centres;
    it gets ``round(extent / target) + 1`` voxels and spacing ``extent / (voxels - 1)``. An axis
    whose size does not change keeps its spacing exactly; axes of one voxel keep one voxel.
    """
    sizes: list[int] = []
    used: list[float] = []
    for n, old, new in zip(shape, spacing, target, strict=True):
        extent = (n - 1) * float(old)
        m = max(1, round(extent / float(new)) + 1) if n > 1 else 1
        sizes.append(m)
        used.append(extent / (m - 1) if m not in (1, n) else float(old))
    return tuple(sizes), (used[0], used[1], used[2])

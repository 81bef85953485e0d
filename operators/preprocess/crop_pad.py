"""CropPadOp: crop and/or pad a volume to a fixed shape, centred or at a given offset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.volume import VolumeMeta

__all__ = ["CropPadOp", "centre_offset", "crop_pad"]


class CropPadOp(Operator):
    """Cut (or extend with ``pad_value``) ``volume`` to ``shape``; emit the shifted meta.

    ``offset`` is the ``(k, j, i)`` index in the input of the output's first voxel: negative
    entries pad before, entries past the end pad after. By default the output is centred:
    ``offset = (n_in - n_out) // 2`` per axis. A pure crop is a view of the input (no copy;
    read-only like every input) unless ``copy=True``; anything that pads is a new array.

    Ports:
        in ``volume``: array, any dtype, shape ``("Z", "Y", "X")``.
        in ``meta``: object, optional :class:`VolumeMeta`.
        out ``volume``: array, the input dtype, shape ``shape`` (kept axes: the input's size).
        out ``meta``: ``meta.with_grid(offset=offset)`` (``None`` without input meta).

    Args:
        name: Operator name in its pipeline.
        shape: Output ``(k, j, i)`` sizes; ``None`` or ``-1`` keeps that axis.
        offset: Index of the output's first voxel in the input; ``None`` centres.
        pad_value: Value of padded voxels (e.g. -1024 for CT in HU).
        copy: Return a contiguous copy even for a pure crop.
    """

    def __init__(self, name: str | None = None, /, *, shape: Sequence[int | None],
                 offset: Sequence[int] | None = None, pad_value: float = 0,
                 copy: bool = False) -> None:
        super().__init__(name)
        if len(shape) != 3 or any(s is not None and s != -1 and int(s) < 1 for s in shape):
            raise ValueError(f"shape must be three sizes >= 1 (or None/-1 to keep), got {shape!r}")
        if offset is not None and len(offset) != 3:
            raise ValueError(f"offset must be three (k, j, i) integers, got {offset!r}")
        self.shape = tuple(-1 if s is None else int(s) for s in shape)
        self.offset = None if offset is None else tuple(int(o) for o in offset)
        self.pad_value, self.copy = pad_value, bool(copy)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``volume`` + ``meta`` in, ``volume`` + ``meta`` out (fixed output dims)."""
        spec.input("volume", shape=("Z", "Y", "X"))
        spec.input("meta", kind="object", optional=True, description="VolumeMeta, shifted")
        spec.output("volume", shape=self.shape)
        spec.output("meta", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Crop/pad into a view or a new array; the input is never written."""
        volume = inputs["volume"]
        shape = tuple(n if s == -1 else s for n, s in zip(volume.shape, self.shape, strict=True))
        offset = self.offset if self.offset is not None else centre_offset(volume.shape, shape)
        outputs.emit("volume", crop_pad(volume, shape, offset, pad_value=self.pad_value,
                                        copy=self.copy))
        meta: VolumeMeta | None = inputs["meta"]
        outputs.emit("meta", None if meta is None else meta.with_grid(offset=offset))


def centre_offset(shape: Sequence[int], target: Sequence[int]) -> tuple[int, int, int]:
    """Return the offset that centres ``target`` on ``shape``: ``(n_in - n_out) // 2`` per axis."""
    k, j, i = ((n - m) // 2 for n, m in zip(shape, target, strict=True))
    return k, j, i


def crop_pad(volume: Any, shape: Sequence[int], offset: Sequence[int], *, pad_value: float = 0,
             copy: bool = False) -> Any:
    """Return the ``shape`` window of ``volume`` starting at ``offset`` (see :class:`CropPadOp`)."""
    src: list[slice] = []
    dst: list[slice] = []
    for n, m, o in zip(volume.shape, shape, offset, strict=True):
        lo, hi = max(o, 0), min(o + m, n)
        src.append(slice(lo, max(lo, hi)))
        dst.append(slice(lo - o, lo - o + max(0, hi - lo)))
    xp = get_array_module(volume)
    if all(s.stop - s.start == m for s, m in zip(src, shape, strict=True)):  # crop only
        view = volume[tuple(src)]
        return view.copy() if copy else view
    out = xp.full(tuple(shape), pad_value, dtype=volume.dtype)
    out[tuple(dst)] = volume[tuple(src)]
    return out

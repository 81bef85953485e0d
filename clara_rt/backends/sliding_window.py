"""Sliding-window inference: run a model with a fixed input size over a larger volume.

:func:`sliding_window_infer` cuts the volume into overlapping windows of the model's input size
(``roi``), pads the edges where the volume is smaller than a window, sends the windows to any
:class:`~clara_rt.backends.InferenceBackend` -- several per request when the model batches --
and blends the overlapping outputs with importance weights (a Gaussian centred on each window,
or constant), then crops the padding off. The scan follows MONAI's ``sliding_window_inference``:
windows step by ``roi * (1 - overlap)`` and the last one on each axis is aligned with the edge.

The same code runs on NumPy and CuPy (``xp``); the blend is accumulated in float32 on the
volume's device.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

from clara_rt.arrays import get_array_module
from clara_rt.backends.base import InferenceBackend, ModelSpec, TensorSpec

__all__ = ["importance_map", "sliding_window_infer", "window_starts"]


def sliding_window_infer(backend: InferenceBackend, volume: Any, *, roi: Sequence[int],
                         overlap: float = 0.25,
                         blend: Literal["gaussian", "constant"] = "gaussian",
                         input_name: str | None = None, output_name: str | None = None,
                         batch_size: int | None = None, pad_value: float = 0) -> Any:
    """Run ``backend``'s model over ``volume`` window by window and blend the outputs.

    Args:
        backend: The model. Its input must take one window: per item ``roi`` (no channel) or
            ``(C, *roi)``, plus a leading batch dimension when the model batches. Its output
            per item is ``roi`` or ``(C_out, *roi)`` (spatial size kept, as segmentation nets do).
        volume: ``(*spatial)`` or ``(C, *spatial)`` with ``len(spatial) == len(roi)``, NumPy or
            CuPy, any dtype (windows are cast to the model's input dtype).
        roi: Window size per spatial axis.
        overlap: Fraction of a window shared with its neighbour on each axis, in ``[0, 1)``.
        blend: ``"gaussian"`` (sigma = roi / 8, favours window centres) or ``"constant"``.
        input_name: Model input to feed; the only (or first) input when ``None``.
        output_name: Model output to blend; the first output when ``None``.
        batch_size: Windows per request; defaults to the model's ``max_batch_size`` (1 when
            the model does not batch, which also forbids more).
        pad_value: Value for the padding added where the volume is smaller than ``roi``.

    Returns:
        ``(*spatial)`` or ``(C_out, *spatial)`` on the volume's device: float32, or the output's
        dtype when that is a wider float. Integer outputs (masks) come back as float32 averages.

    Raises:
        ValueError: Shapes, ``overlap``, ``blend`` or ``batch_size`` do not fit the model.
    """
    xp = get_array_module(volume)
    spec = backend.spec()
    inp, out = _pick(spec, spec.inputs, input_name, "input"), _pick(spec, spec.outputs,
                                                                      output_name, "output")
    roi = tuple(int(r) for r in roi)
    nsp, batching = len(roi), spec.max_batch_size > 0
    vol, channel_in = _with_channel_axis(volume, roi, overlap, blend, inp, spec)
    bs = _batch_size(batch_size, spec)
    spatial = tuple(vol.shape[1:])
    pads = [max(r - s, 0) for r, s in zip(roi, spatial, strict=True)]
    vol = _pad(vol, pads, pad_value)
    padded = tuple(vol.shape[1:])
    weight = importance_map(roi, blend, xp)
    acc: Any = None
    wsum = xp.zeros(padded, dtype=xp.float32)
    starts = list(itertools.product(*(window_starts(s, r, overlap) for s, r in
                                      zip(padded, roi, strict=True))))
    for first in range(0, len(starts), bs):
        boxes = [tuple(slice(s, s + r) for s, r in zip(start, roi, strict=True))
                 for start in starts[first:first + bs]]
        y = _infer_windows(backend, vol, boxes, inp, out.name, roi, model=spec.name,
                           channel_in=channel_in, batching=batching)
        if acc is None:
            acc = xp.zeros((*y.shape[1:-nsp], *padded), dtype=xp.float32)
        for item, box in zip(y, boxes, strict=True):
            acc[(Ellipsis, *box)] += item * weight
            wsum[box] += weight
    crop = tuple(slice(p // 2, p // 2 + s) for p, s in zip(pads, spatial, strict=True))
    result = (acc / wsum)[(Ellipsis, *crop)]
    wide = xp.dtype(out.dtype) if out.dtype in ("float64",) else xp.float32
    return xp.ascontiguousarray(result.astype(wide, copy=False))


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Return the start of every window along one axis of length ``size`` (``size >= roi``).

    Windows step by ``max(1, int(roi * (1 - overlap)))``; the last one ends at the edge.
    """
    if size <= roi:
        return [0]
    step = max(1, int(roi * (1 - overlap)))
    starts = list(range(0, size - roi + 1, step))
    if starts[-1] != size - roi:
        starts.append(size - roi)
    return starts


def importance_map(roi: Sequence[int], blend: str, xp: Any) -> Any:
    """Return the float32 weight of each voxel of a window.

    ``"constant"``: all ones. ``"gaussian"``: ``exp(-d^2 / 2 sigma^2)`` with sigma = roi / 8 per
    axis, 1 at the centre, floored at 1e-3 so no voxel is left without weight at the edges.
    """
    if blend == "constant":
        return xp.ones(tuple(roi), dtype=xp.float32)
    weight: Any = None
    for axis, r in enumerate(roi):
        coord = xp.arange(r, dtype=xp.float32) - (r - 1) / 2
        g = xp.exp(-(coord ** 2) / (2 * (r * 0.125) ** 2))
        g = g.reshape((1,) * axis + (r,) + (1,) * (len(roi) - axis - 1))
        weight = g if weight is None else weight * g
    weight = weight / weight.max()
    return xp.maximum(weight, 1e-3).astype(xp.float32)


# --- private ------------------------------------------------------------------------------


def _with_channel_axis(volume: Any, roi: tuple[int, ...], overlap: float, blend: str,
                       inp: TensorSpec, spec: ModelSpec) -> tuple[Any, bool]:
    """Check the arguments against the model; the volume as ``(C, *spatial)``, and whether a
    window fed to ``inp`` keeps its channel axis."""
    nsp = len(roi)
    if not 0 <= overlap < 1 or blend not in ("gaussian", "constant"):
        raise ValueError(f"overlap must be in [0, 1) and blend gaussian or constant, got "
                         f"{overlap!r}, {blend!r}")
    if volume.ndim not in (nsp, nsp + 1):
        raise ValueError(f"volume of shape {tuple(volume.shape)} does not fit roi {roi}: give "
                         f"{nsp} spatial axes, optionally after one channel axis")
    channel_in = _channel_axis(inp, nsp, spec.max_batch_size > 0, spec.name)
    vol = volume[None] if volume.ndim == nsp else volume
    if not channel_in and vol.shape[0] != 1:
        raise ValueError(f"model '{spec.name}' input '{inp.name}' takes no channel axis, but the "
                         f"volume has {vol.shape[0]} channels")
    return vol, channel_in


def _pad(vol: Any, pads: list[int], pad_value: float) -> Any:
    """Pad the spatial axes of ``(C, *spatial)`` by ``pads``, split evenly on both sides."""
    if not any(pads):
        return vol
    width = [(0, 0)] + [(p // 2, p - p // 2) for p in pads]
    return get_array_module(vol).pad(vol, width, mode="constant", constant_values=pad_value)


def _infer_windows(backend: InferenceBackend, vol: Any, boxes: list[tuple[slice, ...]],
                   inp: TensorSpec, output: str, roi: tuple[int, ...], *, model: str,
                   channel_in: bool, batching: bool) -> Any:
    """Send the windows ``boxes`` of ``vol`` in one request; the output with a batch axis.

    Raises:
        ValueError: The output does not keep the windows' spatial size.
    """
    xp = get_array_module(vol)
    tiles = [vol[(slice(None), *box)] for box in boxes]
    x = xp.stack(tiles) if batching else tiles[0]
    if not channel_in:
        x = x[:, 0] if batching else x[0]
    x = xp.ascontiguousarray(x.astype(inp.dtype, copy=False))
    y = xp.asarray(backend.infer({inp.name: x}, (output,))[output])
    y = y if batching else y[None]
    nsp = len(roi)
    if tuple(y.shape[-nsp:]) != roi or y.ndim not in (nsp + 1, nsp + 2):
        raise ValueError(f"model '{model}' output '{output}' has shape "
                         f"{tuple(y.shape)} for windows of {roi}; it must keep their size")
    return y


def _pick(spec: ModelSpec, tensors: tuple[TensorSpec, ...], name: str | None,
          kind: str) -> TensorSpec:
    if name is None:
        return tensors[0]
    for t in tensors:
        if t.name == name:
            return t
    raise ValueError(f"model '{spec.name}' has no {kind} '{name}'; {kind}s are: "
                     f"{', '.join(t.name for t in tensors)}")


def _channel_axis(inp: TensorSpec, nsp: int, batching: bool, model: str) -> bool:
    """Whether one window fed to ``inp`` carries a leading channel axis."""
    rank = len(inp.shape) - (1 if batching else 0)
    if rank not in (nsp, nsp + 1):
        raise ValueError(f"model '{model}' input '{inp.name}' has shape {list(inp.shape)}, "
                         f"which does not take {nsp}-D windows")
    return rank == nsp + 1


def _batch_size(batch_size: int | None, spec: ModelSpec) -> int:
    limit = spec.max_batch_size or 1
    bs = limit if batch_size is None else batch_size
    if not 1 <= bs <= limit:
        raise ValueError(f"batch_size {bs} for model '{spec.name}': must be between 1 and "
                         f"{limit} (its max_batch_size, or 1 when it does not batch)")
    return bs

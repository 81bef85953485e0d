"""Resize2DOp: resize a 2-D image to a fixed size (bilinear), e.g. to a model's input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.inference.onnx_classify import resize_bilinear
from clara_rt.operators.kernels import ndimage_of

__all__ = ["Resize2DOp", "resize"]


class Resize2DOp(Operator):
    """Resize ``image`` to ``size`` ``(rows, cols)`` by bilinear interpolation, as float32.

    The resize is :func:`~clara_rt.operators.inference.onnx_classify.resize_bilinear`, the one
    :class:`~clara_rt.operators.inference.onnx_classify.OnnxClassifierOp` applies to its input:
    put this operator before an ``InferenceOp`` whose model takes a fixed image size and the
    model sees the same tensor. An image already of that size is passed on as float32 (no copy
    when it already is). CuPy input stays on the GPU (``cupyx.scipy.ndimage.zoom``, the same
    call with the same arguments).

    Ports:
        in ``image``: array, any numeric dtype, shape ``("Y", "X")``.
        out ``resized``: float32 ``(rows, cols)``.

    Args:
        name: Operator name in its pipeline.
        size: ``(rows, cols)``, two positive integers.
    """

    def __init__(self, name: str | None = None, /, *, size: Sequence[int]) -> None:
        super().__init__(name)
        dims = tuple(size)
        if len(dims) != 2 or not all(isinstance(d, int) and d > 0 for d in dims):
            raise ValueError(f"size must be two positive integers (rows, cols), got {size!r}")
        self.size: tuple[int, int] = (int(dims[0]), int(dims[1]))

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``image`` in and ``resized`` (float32, ``size``) out."""
        spec.input("image", shape=("Y", "X"), description="2-D image")
        spec.output("resized", dtype="float32", shape=self.size)

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Resize the image into a new float32 array (the input is never written)."""
        image = inputs["image"]
        if image.ndim != 2:
            raise ValueError(f"operator '{self.name}': expected a 2-D image, got shape "
                             f"{image.shape}")
        outputs.emit("resized", resize(image, self.size))


def resize(image: Any, size: tuple[int, int]) -> Any:
    """:func:`resize_bilinear` for NumPy or CuPy images; the result stays on the same device."""
    if isinstance(image, np.ndarray):
        return resize_bilinear(image, size)
    xp = get_array_module(image)
    if tuple(image.shape) == tuple(size):
        return image.astype(xp.float32, copy=False)
    zoom = (size[0] / image.shape[0], size[1] / image.shape[1])
    out = ndimage_of(image).zoom(image.astype(xp.float32, copy=False), zoom, order=1,
                                 mode="nearest", grid_mode=True)
    if tuple(out.shape) != tuple(size):
        raise ValueError(f"resize to {size} gave {tuple(out.shape)}")
    return out

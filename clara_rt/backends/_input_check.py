"""The per-call input check of the in-process backends (ONNX Runtime and PyTorch).

:class:`InputCheck` precomputes what one input must look like (dtype, rank, fixed sizes) from
the model's :class:`~clara_rt.backends.base.TensorSpec`, so that checking an array on every call
costs a few comparisons and builds no string unless the input is wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clara_rt.backends.base import TensorSpec

__all__ = ["InputCheck", "is_cuda"]


class InputCheck:
    """What one input must look like, precomputed for a cheap per-call check."""

    def __init__(self, tensor: TensorSpec) -> None:
        self.tensor, self.dtype, self.rank = tensor, np.dtype(tensor.dtype), len(tensor.shape)
        self.fixed = tuple((axis, size) for axis, size in enumerate(tensor.shape) if size >= 0)

    def problem(self, value: Any) -> str | None:
        """Return what is wrong with ``value`` (``None`` when it fits)."""
        shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
        if shape is None or dtype is None:
            return f"a {type(value).__name__} (not an array)"
        if dtype == self.dtype and len(shape) == self.rank and all(
                shape[axis] == size for axis, size in self.fixed):
            return None  # the per-call path: no strings built
        got = f"{dtype}{list(shape)}"
        if dtype != self.dtype:
            return f"{got} (dtype {dtype}, not {self.dtype})"
        if len(shape) != self.rank:
            return f"{got} (rank {len(shape)}, not {self.rank})"
        axis, size = next((a, n) for a, n in self.fixed if shape[a] != n)
        return f"{got} (axis {axis} is {shape[axis]}, not {size})"

    def describe(self) -> str:
        """The declared tensor as ``dtype[shape]`` (free sizes as ``-1``)."""
        return f"{self.tensor.dtype}{list(self.tensor.shape)}"


def is_cuda(value: Any) -> bool:
    """Whether ``value`` is a GPU array (it has ``__cuda_array_interface__``)."""
    return hasattr(value, "__cuda_array_interface__")

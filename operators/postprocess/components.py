"""Connected components: ConnectedComponentsOp (label them) and KeepLargestOp (keep the N biggest).

Both use ``scipy.ndimage.label`` on NumPy arrays and ``cupyx.scipy.ndimage.label`` on CuPy ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.kernels import ndimage_of

__all__ = ["ConnectedComponentsOp", "KeepLargestOp", "keep_largest", "label_components",
           "structure"]

_SHAPE = ("Z", "Y", "X")


class ConnectedComponentsOp(Operator):
    """Label the connected components of a mask: 1..n in scan order, 0 for background.

    Ports:
        in ``mask``: array, any dtype (non-zero is foreground), shape ``("Z", "Y", "X")``.
        in ``meta``: object, optional -- passed through.
        out ``labels``: int32, same shape.
        out ``count``: object, the number of components (``int``).
        out ``meta``: the input ``meta``.

    Args:
        name: Operator name in its pipeline.
        connectivity: 1 (faces: 6-connected in 3-D), 2 (faces and edges: 18) or 3 (26).
    """

    def __init__(self, name: str | None = None, /, *, connectivity: int = 1) -> None:
        super().__init__(name)
        structure(3, connectivity)  # fail at construction, not in the first job
        self.connectivity = int(connectivity)

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``mask`` + ``meta`` in, ``labels`` + ``count`` + ``meta`` out."""
        spec.input("mask", shape=_SHAPE, description="non-zero = foreground")
        spec.input("meta", kind="object", optional=True, description="VolumeMeta, passed on")
        spec.output("labels", dtype="int32", shape=_SHAPE)
        spec.output("count", kind="object", description="number of components")
        spec.output("meta", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Label ``mask`` into a new int32 array."""
        labels, count = label_components(inputs["mask"], self.connectivity)
        outputs.emit("labels", labels)
        outputs.emit("count", count)
        outputs.emit("meta", inputs["meta"])


class KeepLargestOp(Operator):
    """Keep the ``count`` largest connected components of a mask (ties: lowest label first).

    Ports:
        in ``mask``: array, any dtype (non-zero is foreground), shape ``("Z", "Y", "X")``.
        in ``meta``: object, optional -- passed through.
        out ``mask``: ``dtype`` (uint8 by default; 0/1), same shape.
        out ``meta``: the input ``meta``.

    Args:
        name: Operator name in its pipeline.
        count: How many components to keep (>= 1).
        connectivity: 1, 2 or 3 (see :class:`ConnectedComponentsOp`).
        min_size: Drop kept components smaller than this many voxels.
        dtype: Output dtype: ``"uint8"`` or ``"bool"``.
    """

    def __init__(self, name: str | None = None, /, *, count: int = 1, connectivity: int = 1,
                 min_size: int = 0, dtype: str = "uint8") -> None:
        super().__init__(name)
        structure(3, connectivity)
        if int(count) < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        if dtype not in ("uint8", "bool"):
            raise ValueError(f"dtype must be 'uint8' or 'bool', got {dtype!r}")
        self.count, self.connectivity = int(count), int(connectivity)
        self.min_size, self.dtype = int(min_size), dtype

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``mask`` + ``meta`` in, ``mask`` + ``meta`` out."""
        spec.input("mask", shape=_SHAPE, description="non-zero = foreground")
        spec.input("meta", kind="object", optional=True, description="VolumeMeta, passed on")
        spec.output("mask", dtype=self.dtype, shape=_SHAPE)
        spec.output("meta", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Keep the largest components in a new array."""
        kept = keep_largest(inputs["mask"], self.count, connectivity=self.connectivity,
                            min_size=self.min_size)
        outputs.emit("mask", kept if self.dtype == "bool" else kept.view(np.uint8))
        outputs.emit("meta", inputs["meta"])


def structure(ndim: int, connectivity: int) -> np.ndarray:
    """Return the NumPy structuring element for ``connectivity`` (1..ndim) in ``ndim`` dims.

    Raises:
        ValueError: ``connectivity`` is not between 1 and ``ndim``.
    """
    if not isinstance(connectivity, int) or not 1 <= connectivity <= ndim:
        raise ValueError(f"connectivity must be an int from 1 to {ndim}, got {connectivity!r}")
    offsets = np.indices((3,) * ndim) - 1  # scipy.ndimage.generate_binary_structure, no import
    return np.abs(offsets).sum(axis=0) <= connectivity  # type: ignore[no-any-return]


def label_components(mask: Any, connectivity: int = 1) -> tuple[Any, int]:
    """Label ``mask`` (non-zero = foreground) on its own device.

    Returns:
        ``(labels, count)``: an int32 array (0 background, 1..count) and the component count.
    """
    binary = mask if mask.dtype == bool else mask != 0
    labels, count = ndimage_of(mask).label(binary, structure=structure(mask.ndim, connectivity))
    return labels.astype(np.int32, copy=False), int(count)


def keep_largest(mask: Any, count: int = 1, *, connectivity: int = 1, min_size: int = 0) -> Any:
    """Return a new bool array holding the ``count`` largest components of ``mask``.

    Components smaller than ``min_size`` voxels are dropped even when among the largest.
    """
    xp = get_array_module(mask)
    labels, n = label_components(mask, connectivity)
    if n == 0:
        return xp.zeros(mask.shape, dtype=bool)
    sizes = xp.bincount(labels.ravel(), minlength=n + 1)
    sizes = np.asarray(sizes.get() if xp is not np else sizes)  # n + 1 numbers: sort on the host
    sizes[0] = 0
    order = np.argsort(-sizes[1:], kind="stable")[:count] + 1
    lut = np.zeros(n + 1, dtype=bool)
    lut[order[sizes[order] >= max(min_size, 1)]] = True
    return xp.asarray(lut)[labels]

"""Connected components: ConnectedComponentsOp (label them) and KeepLargestOp (keep the N biggest).

Both use ``scipy.ndimage.label`` on NumPy arrays and ``cupyx.scipy.ndimage.label`` on CuPy ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.kernels import ndimage_of
from clara_rt.operators.postprocess import runs

__all__ = ["ConnectedComponentsOp", "KeepLargestOp", "component_sizes", "keep_largest",
           "label_compact", "label_components", "largest_ids", "structure"]

_SHAPE = ("Z", "Y", "X")
_CHUNK = 1 << 22  # voxels per counting chunk (32 MiB of int64 temporaries for bincount)
_FEW_LABELS = 32  # up to this many labels, count each with count_nonzero instead of bincount


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
    labels, count = label_compact(mask, connectivity)
    return labels.astype(np.int32, copy=False), count


def label_compact(mask: Any, connectivity: int = 1) -> tuple[Any, int]:
    """Label ``mask`` like :func:`label_components`, in the narrowest labels that fit.

    On the host the labels are uint16 when there are fewer than 65,536 components (half the
    memory and bandwidth of int32 on a 512 x 512 x 256 volume), else int32; on CuPy they are int32
    (what ``cupyx.scipy.ndimage`` measures without its slow path).

    Returns:
        ``(labels, count)``: labels (0 background, 1..count) and the component count.
    """
    binary = mask if mask.dtype == bool else mask != 0
    nd, struct = ndimage_of(mask), structure(mask.ndim, connectivity)
    if get_array_module(mask) is np:
        try:
            labels, count = nd.label(binary, structure=struct, output=np.uint16)
            return labels, int(count)
        except RuntimeError:  # more than 65,535 components: SciPy refuses to wrap around
            pass
    labels, count = nd.label(binary, structure=struct)
    return labels.astype(np.int32, copy=False), int(count)


def component_sizes(labels: Any, count: int) -> Any:
    """Return the voxels of every label ``0..count`` (int64, on the labels' device).

    On the host the labels are counted slab by slab: with few labels one ``count_nonzero`` per
    label (several times faster than ``bincount``, which first widens every label to int64),
    otherwise ``bincount`` on a few MB at a time instead of a full int64 copy of the labels.
    """
    xp = get_array_module(labels)
    if xp is not np or labels.ndim == 0:
        return xp.bincount(labels.ravel(), minlength=count + 1)
    sizes = np.zeros(count + 1, dtype=np.int64)
    step = max(1, _CHUNK // max(1, labels[0].size))
    for z0 in range(0, labels.shape[0], step):
        part = labels[z0:z0 + step]
        if count <= _FEW_LABELS:
            sizes[1:] += [np.count_nonzero(part == i) for i in range(1, count + 1)]
        else:
            sizes += np.bincount(part.ravel(), minlength=count + 1)[:count + 1]
    sizes[0] = labels.size - sizes[1:].sum()
    return sizes


def keep_largest(mask: Any, count: int = 1, *, connectivity: int = 1, min_size: int = 0) -> Any:
    """Return a new bool array holding the ``count`` largest components of ``mask``.

    Components smaller than ``min_size`` voxels are dropped even when among the largest. Ties
    go to the lowest label. Everything stays on the mask's device.
    """
    xp = get_array_module(mask)
    if connectivity == 1 and runs.worth_it(mask):  # a big host volume: x-runs on every core
        return _keep_largest_runs(mask, count, min_size)
    labels, n = label_compact(mask, connectivity)
    if n == 0:
        return xp.zeros(mask.shape, dtype=bool)
    sizes = component_sizes(labels, n)
    sizes[0] = 0
    order = largest_ids(sizes, count)
    lut = xp.zeros(n + 1, dtype=bool)
    lut[order] = sizes[order] >= max(min_size, 1)
    return lut[labels]


def largest_ids(sizes: Any, count: int) -> Any:
    """Return the ids of the ``count`` largest ``sizes``, largest first, ties to the lowest id.

    The ids stay on the device of ``sizes`` (NumPy's stable argsort; CuPy's sort is stable).
    """
    xp = get_array_module(sizes)
    order = xp.argsort(-sizes, kind="stable") if xp is np else xp.argsort(-sizes)
    return order[:count]


def _keep_largest_runs(mask: np.ndarray, count: int, min_size: int) -> np.ndarray:
    """:func:`keep_largest` through :mod:`.runs` (same components, same ties): host, 3-D, faces."""
    found = runs.components(mask)
    out = np.zeros(mask.shape, dtype=bool)
    if found.count == 0:
        return out
    sizes = found.sizes()
    sizes[0] = 0
    order = largest_ids(sizes, count)
    lut = np.zeros(found.count + 1, dtype=np.uint8)
    lut[order] = sizes[order] >= max(min_size, 1)
    found.paint(lut, out.view(np.uint8))
    return out

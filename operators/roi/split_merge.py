"""The multi-AI fan-out/fan-in: RoiSplitOp (one volume -> N named ROIs) and RoiMergeOp (N masks ->
one label map), joined by a :class:`RoiConfig` that says where each ROI came from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, get_array_module
from clara_rt.operators.volume import VolumeMeta

__all__ = ["RoiConfig", "RoiMergeOp", "RoiSplitOp"]

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
_ANY3 = ("*", "*", "*")
_RESERVED = frozenset({"volume", "meta", "config", "labels"})
_MERGE_MODES = ("last", "first", "max")


@dataclass(frozen=True)
class RoiConfig:
    """Where each ROI of a split lies in its source volume.

    Attributes:
        shape: Shape of the source volume ``(k, j, i)``.
        boxes: ROI name -> half-open ``((k0, k1), (j0, j1), (i0, i1))`` in source indices.
        meta: The source volume's :class:`VolumeMeta`, if it had one.
    """

    shape: tuple[int, int, int]
    boxes: dict[str, Box]
    meta: VolumeMeta | None = field(default=None, compare=False)

    def slices(self, name: str) -> tuple[slice, slice, slice]:
        """Return the index of ROI ``name`` in the source volume, for ``volume[...]``."""
        (k0, k1), (j0, j1), (i0, i1) = self.boxes[name]
        return slice(k0, k1), slice(j0, j1), slice(i0, i1)


class RoiSplitOp(Operator):
    """Cut one volume into named boxes, one output port per ROI (views: no copy).

    Boxes are ``(start, stop)`` pairs per axis ``k, j, i`` with Python slice meaning (``None``
    for the edge, negatives count from the end); they are resolved against each volume.

    Ports:
        in ``volume``: array, any dtype, shape ``("Z", "Y", "X")``.
        in ``meta``: object, optional :class:`VolumeMeta`.
        out ``<roi>`` for each ROI name: array, the volume's dtype, a view of its box.
        out ``<roi>_meta`` for each ROI: the ROI's :class:`VolumeMeta` (``None`` without meta).
        out ``config``: object, the :class:`RoiConfig` that :class:`RoiMergeOp` needs.

    Args:
        name: Operator name in its pipeline.
        rois: ROI name -> box, e.g. ``{"lung": [(0, 40), (None, None), (None, None)]}``. Names
            must be identifiers other than volume, meta, config, labels and not end in
            ``_meta``; they become the port names.
    """

    def __init__(self, name: str | None = None, /, *,
                 rois: Mapping[str, Sequence[Sequence[int | None]]]) -> None:
        super().__init__(name)
        if not rois:
            raise ValueError("rois must name at least one ROI")
        self.rois = {_check_roi_name(n): _check_box(n, box) for n, box in rois.items()}

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``volume`` + ``meta`` in; one array and one meta output per ROI, ``config``."""
        spec.input("volume", shape=("Z", "Y", "X"))
        spec.input("meta", kind="object", optional=True, description="VolumeMeta of the volume")
        for roi in self.rois:
            spec.output(roi, shape=_ANY3, description=f"ROI '{roi}' (a view)")
            spec.output(f"{roi}_meta", kind="object", description=f"VolumeMeta of ROI '{roi}'")
        spec.output("config", kind="object", description="RoiConfig for RoiMergeOp")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Emit a view of each box and the config; the volume is not copied or written."""
        volume, meta = inputs["volume"], inputs["meta"]
        boxes = {roi: _resolve(roi, spec, volume.shape) for roi, spec in self.rois.items()}
        config = RoiConfig(shape=tuple(volume.shape), boxes=boxes, meta=meta)  # type: ignore[arg-type]
        for roi, box in boxes.items():
            outputs.emit(roi, volume[config.slices(roi)])
            start = (box[0][0], box[1][0], box[2][0])
            outputs.emit(f"{roi}_meta", None if meta is None else meta.with_grid(offset=start))
        outputs.emit("config", config)


class RoiMergeOp(Operator):
    """Paste N named masks back into one label map: ROI ``rois[i]`` gets label ``i + 1``.

    Where masks overlap, ``mode`` decides: ``"last"`` (later ROIs in ``rois`` win), ``"first"``
    (earlier ones win) or ``"max"`` (the higher label wins; differs from ``"last"`` only with
    custom ``labels``).

    Ports:
        in ``config``: object, the :class:`RoiConfig` from :class:`RoiSplitOp`.
        in ``<roi>`` for each ROI name: array, any dtype (non-zero = inside), the ROI's shape.
        out ``labels``: ``dtype``, the source volume's shape.
        out ``meta``: the source volume's meta (``config.meta``).

    Args:
        name: Operator name in its pipeline.
        rois: ROI names in label order (they become the input ports).
        labels: ROI name -> label value, overriding ``i + 1``.
        mode: ``"last"``, ``"first"`` or ``"max"``.
        dtype: Label map dtype (``"uint8"``, ``"uint16"``, ``"int32"``...).
    """

    def __init__(self, name: str | None = None, /, *, rois: Sequence[str],
                 labels: Mapping[str, int] | None = None, mode: str = "last",
                 dtype: str = "uint8") -> None:
        super().__init__(name)
        if not rois or len(set(rois)) != len(rois):
            raise ValueError(f"rois must be distinct ROI names, got {list(rois)!r}")
        if mode not in _MERGE_MODES:
            raise ValueError(f"unknown merge mode {mode!r}; modes are: {', '.join(_MERGE_MODES)}")
        self.rois = tuple(_check_roi_name(r) for r in rois)
        values = dict(labels or {})
        unknown = sorted(set(values) - set(self.rois))
        if unknown:
            raise ValueError(f"labels given for unknown ROI(s) {', '.join(unknown)}; ROIs are: "
                             f"{', '.join(self.rois)}")
        self.labels = {r: int(values.get(r, i)) for i, r in enumerate(self.rois, start=1)}
        self.mode, self.dtype = mode, dtype

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``config`` and one mask input per ROI; ``labels`` + ``meta`` out."""
        spec.input("config", kind="object", description="RoiConfig from RoiSplitOp")
        for roi in self.rois:
            spec.input(roi, shape=_ANY3, description=f"mask of ROI '{roi}' (non-zero = inside)")
        spec.output("labels", dtype=self.dtype, shape=_ANY3)
        spec.output("meta", kind="object", description="VolumeMeta of the source volume")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Build a new label map; the masks are only read."""
        config: RoiConfig = inputs["config"]
        missing = [r for r in self.rois if r not in config.boxes]
        if missing:
            raise ValueError(f"operator '{self.name}': config has no box for ROI(s) "
                             f"{', '.join(missing)}; it has: {', '.join(config.boxes)}")
        xp = get_array_module(inputs[self.rois[0]])
        out = xp.zeros(config.shape, dtype=self.dtype)
        for roi in self.rois:
            self._paste(out, config, roi, inputs[roi])
        outputs.emit("labels", out)
        outputs.emit("meta", config.meta)

    def _paste(self, out: Any, config: RoiConfig, roi: str, mask: Any) -> None:
        region = out[config.slices(roi)]  # a view: writes land in ``out``
        if tuple(mask.shape) != tuple(region.shape):
            raise ValueError(f"operator '{self.name}': mask '{roi}' has shape "
                             f"{tuple(mask.shape)} but its box {config.boxes[roi]} is "
                             f"{tuple(region.shape)}")
        value = self.labels[roi]
        inside = mask != 0
        if self.mode == "first":
            inside &= region == 0
        elif self.mode == "max":
            inside &= region < value
        region[inside] = value


def _check_roi_name(name: str) -> str:
    if (not isinstance(name, str) or not name.isidentifier() or name in _RESERVED
            or name.endswith("_meta")):
        raise ValueError(f"ROI name {name!r} must be an identifier, not one of "
                         f"{', '.join(sorted(_RESERVED))}, and not end in '_meta'")
    return name


def _check_box(name: str, box: Sequence[Sequence[int | None]]) -> tuple[tuple[Any, Any], ...]:
    pairs: tuple[tuple[Any, ...], ...] = tuple(tuple(axis) for axis in box)
    if len(pairs) != 3 or any(len(p) != 2 for p in pairs) or any(
            v is not None and not isinstance(v, int) for p in pairs for v in p):
        raise ValueError(f"ROI '{name}': box must be three (start, stop) pairs of int or None "
                         f"for axes k, j, i, got {box!r}")
    return pairs


def _resolve(name: str, pairs: tuple[tuple[Any, Any], ...], shape: Sequence[int]) -> Box:
    resolved: list[tuple[int, int]] = []
    for axis, ((start, stop), n) in enumerate(zip(pairs, shape, strict=True)):
        lo, hi, _ = slice(start, stop).indices(n)
        if hi <= lo:
            raise ValueError(f"ROI '{name}' is empty on axis {axis} of a volume of shape "
                             f"{tuple(shape)}: box {pairs}")
        resolved.append((lo, hi))
    return resolved[0], resolved[1], resolved[2]

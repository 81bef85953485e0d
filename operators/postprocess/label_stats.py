"""LabelStatsOp: per-label voxel count, volume (ml), mean intensity and bounding box, one pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs
from clara_rt.operators.kernels import label_stats
from clara_rt.operators.volume import VolumeMeta

__all__ = ["LabelStats", "LabelStatsOp", "compute_label_stats"]

_SHAPE = ("Z", "Y", "X")


@dataclass(frozen=True)
class LabelStats:
    """Statistics of one label.

    Attributes:
        label: The label value.
        name: Its name, when the operator was given one.
        voxels: Voxel count.
        volume_ml: ``voxels * meta.voxel_volume_ml``; ``None`` without meta.
        mean: Mean of the image over the label; ``None`` without an image.
        bbox: Half-open ``((k0, k1), (j0, j1), (i0, i1))``: the label lies in
            ``volume[k0:k1, j0:j1, i0:i1]``.
    """

    label: int
    name: str | None
    voxels: int
    volume_ml: float | None
    mean: float | None
    bbox: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-ready data."""
        data = asdict(self)
        data["bbox"] = [list(axis) for axis in self.bbox]
        return data


class LabelStatsOp(Operator):
    """Measure every non-zero label of a label map (or mask) in one pass over the voxels.

    The pass is :func:`clara_rt.operators.kernels.label_stats` (NumPy or numba on the host, a CuPy
    kernel on the GPU). Labels with no voxel are left out; label 0 is background.

    Ports:
        in ``labels``: array, integer or bool, shape ``("Z", "Y", "X")``.
        in ``image``: array, optional, same shape -- for the mean intensity.
        in ``meta``: object, optional :class:`VolumeMeta` -- for volumes in ml.
        out ``stats``: object, ``{label: LabelStats}`` in label order.
        out ``meta``: the input ``meta``.

    Args:
        name: Operator name in its pipeline.
        names: Label names: ``{1: "left lung", 2: "right lung"}`` or a sequence for labels
            1, 2, ...
    """

    def __init__(self, name: str | None = None, /, *,
                 names: Mapping[int | str, str] | Sequence[str] | None = None) -> None:
        super().__init__(name)
        if names is None:
            self.names: dict[int, str] = {}
        elif isinstance(names, Mapping):
            self.names = {int(k): str(v) for k, v in names.items()}
        else:
            self.names = {i: str(v) for i, v in enumerate(names, start=1)}

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``labels`` + ``image`` + ``meta`` in, ``stats`` + ``meta`` out."""
        spec.input("labels", shape=_SHAPE, description="label map or mask (integer or bool)")
        spec.input("image", shape=_SHAPE, optional=True, description="intensities for the mean")
        spec.input("meta", kind="object", optional=True, description="VolumeMeta, for ml")
        spec.output("stats", kind="object", description="{label: LabelStats}")
        spec.output("meta", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Measure the labels; the inputs are only read."""
        meta = inputs["meta"]
        outputs.emit("stats", compute_label_stats(inputs["labels"], inputs["image"], meta,
                                                  names=self.names))
        outputs.emit("meta", meta)


def compute_label_stats(labels: Any, image: Any = None, meta: VolumeMeta | None = None, *,
                        names: Mapping[int, str] | None = None) -> dict[int, LabelStats]:
    """Return ``{label: LabelStats}`` for every label present in ``labels`` (see the operator)."""
    table = label_stats(labels, image)
    voxel_ml = meta.voxel_volume_ml if meta is not None else None
    names = names or {}
    stats: dict[int, LabelStats] = {}
    for label in range(1, len(table.counts)):
        count = int(table.counts[label])
        if count == 0:
            continue
        stats[label] = LabelStats(
            label=label, name=names.get(label), voxels=count,
            volume_ml=None if voxel_ml is None else count * voxel_ml,
            mean=None if table.sums is None else float(table.sums[label]) / count,
            bbox=tuple((int(a), int(b))
                       for a, b in zip(table.start[label], table.stop[label], strict=True)))
    return stats

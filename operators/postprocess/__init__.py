"""Postprocessing operators: connected components, keep-largest, per-label statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clara_rt.operators._lazy import lazy_names

if TYPE_CHECKING:
    from clara_rt.operators.postprocess.classification import (
        ClassificationResultOp as ClassificationResultOp,
    )
    from clara_rt.operators.postprocess.components import (
        ConnectedComponentsOp as ConnectedComponentsOp,
    )
    from clara_rt.operators.postprocess.components import KeepLargestOp as KeepLargestOp
    from clara_rt.operators.postprocess.label_stats import LabelStats as LabelStats
    from clara_rt.operators.postprocess.label_stats import LabelStatsOp as LabelStatsOp

# public name -> its module, imported on first use (PEP 562): a pipeline that uses one
# operator of this package does not import the others (nor what they import)
_HOMES: dict[str, str] = {
    "ClassificationResultOp": "classification",
    **dict.fromkeys(("ConnectedComponentsOp", "KeepLargestOp"), "components"),
    **dict.fromkeys(("LabelStats", "LabelStatsOp"), "label_stats"),
}

__all__ = [
    "ClassificationResultOp",
    "ConnectedComponentsOp",
    "KeepLargestOp",
    "LabelStats",
    "LabelStatsOp",
]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)

"""Postprocessing operators: connected components, keep-largest, per-label statistics."""

from __future__ import annotations

from clara_rt.operators.postprocess.classification import (
    ClassificationResultOp as ClassificationResultOp,
)
from clara_rt.operators.postprocess.components import (
    ConnectedComponentsOp as ConnectedComponentsOp,
)
from clara_rt.operators.postprocess.components import KeepLargestOp as KeepLargestOp
from clara_rt.operators.postprocess.label_stats import LabelStats as LabelStats
from clara_rt.operators.postprocess.label_stats import LabelStatsOp as LabelStatsOp

__all__ = [
    "ClassificationResultOp",
    "ConnectedComponentsOp",
    "KeepLargestOp",
    "LabelStats",
    "LabelStatsOp",
]

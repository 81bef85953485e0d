"""Model-free segmentation operators."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clara_rt.operators._lazy import lazy_names

if TYPE_CHECKING:
    from clara_rt.operators.segment.lung_threshold import LungSegmentation as LungSegmentation
    from clara_rt.operators.segment.lung_threshold import LungThresholdOp as LungThresholdOp
    from clara_rt.operators.segment.threshold import ThresholdOp as ThresholdOp

# public name -> its module, imported on first use (PEP 562): a pipeline that uses one
# operator of this package does not import the others (nor what they import)
_HOMES: dict[str, str] = {
    **dict.fromkeys(("LungSegmentation", "LungThresholdOp"), "lung_threshold"),
    "ThresholdOp": "threshold",
}

__all__ = ["LungSegmentation", "LungThresholdOp", "ThresholdOp"]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)

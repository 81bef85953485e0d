"""Model-free segmentation operators."""

from __future__ import annotations

from clara_rt.operators.segment.lung_threshold import LungSegmentation as LungSegmentation
from clara_rt.operators.segment.lung_threshold import LungThresholdOp as LungThresholdOp
from clara_rt.operators.segment.threshold import ThresholdOp as ThresholdOp

__all__ = ["LungSegmentation", "LungThresholdOp", "ThresholdOp"]

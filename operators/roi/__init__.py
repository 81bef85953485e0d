"""ROI operators for the multi-AI pattern: split one volume into named ROIs, merge masks back."""

from __future__ import annotations

from clara_rt.operators.roi.split_merge import RoiConfig as RoiConfig
from clara_rt.operators.roi.split_merge import RoiMergeOp as RoiMergeOp
from clara_rt.operators.roi.split_merge import RoiSplitOp as RoiSplitOp

__all__ = ["RoiConfig", "RoiMergeOp", "RoiSplitOp"]

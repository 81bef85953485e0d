"""ROI operators for the multi-AI pattern: split one volume into named ROIs, merge masks back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clara_rt.operators._lazy import lazy_names

if TYPE_CHECKING:
    from clara_rt.operators.roi.split_merge import RoiConfig as RoiConfig
    from clara_rt.operators.roi.split_merge import RoiMergeOp as RoiMergeOp
    from clara_rt.operators.roi.split_merge import RoiSplitOp as RoiSplitOp

# public name -> its module, imported on first use (PEP 562): a pipeline that uses one
# operator of this package does not import the others (nor what they import)
_HOMES: dict[str, str] = {
    **dict.fromkeys(("RoiConfig", "RoiMergeOp", "RoiSplitOp"), "split_merge"),
}

__all__ = ["RoiConfig", "RoiMergeOp", "RoiSplitOp"]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)

"""Preprocessing operators: intensity window and normalisation, resampling, crop/pad."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clara_rt.operators._lazy import lazy_names

if TYPE_CHECKING:
    from clara_rt.operators.preprocess.crop_pad import CropPadOp as CropPadOp
    from clara_rt.operators.preprocess.normalize import NormalizeOp as NormalizeOp
    from clara_rt.operators.preprocess.resample import ResampleOp as ResampleOp
    from clara_rt.operators.preprocess.resize import Resize2DOp as Resize2DOp
    from clara_rt.operators.preprocess.window import PRESETS as PRESETS
    from clara_rt.operators.preprocess.window import WindowOp as WindowOp

# public name -> its module, imported on first use (PEP 562): a pipeline that uses one
# operator of this package does not import the others (nor what they import)
_HOMES: dict[str, str] = {
    "CropPadOp": "crop_pad",
    "NormalizeOp": "normalize",
    "ResampleOp": "resample",
    "Resize2DOp": "resize",
    **dict.fromkeys(("PRESETS", "WindowOp"), "window"),
}

__all__ = ["PRESETS", "CropPadOp", "NormalizeOp", "ResampleOp", "Resize2DOp", "WindowOp"]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)

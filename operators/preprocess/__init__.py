"""Preprocessing operators: intensity window and normalisation, resampling, crop/pad."""

from __future__ import annotations

from clara_rt.operators.preprocess.crop_pad import CropPadOp as CropPadOp
from clara_rt.operators.preprocess.normalize import NormalizeOp as NormalizeOp
from clara_rt.operators.preprocess.resample import ResampleOp as ResampleOp
from clara_rt.operators.preprocess.resize import Resize2DOp as Resize2DOp
from clara_rt.operators.preprocess.window import PRESETS as PRESETS
from clara_rt.operators.preprocess.window import WindowOp as WindowOp

__all__ = ["PRESETS", "CropPadOp", "NormalizeOp", "ResampleOp", "Resize2DOp", "WindowOp"]

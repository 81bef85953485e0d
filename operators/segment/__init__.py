"""Model-free segmentation operators."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """Import the public name ``name`` from its module on first use, then keep it here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""ROI operators for the multi-AI pattern: split one volume into named ROIs, merge masks back."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

"""Postprocessing operators: connected components, keep-largest, per-label statistics."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

"""Output operators: what a pipeline hands back to people and to PACS.

* :class:`DicomSegWriterOp`: a label map as a DICOM Segmentation referencing its source series.
* :class:`RenderOp`: PNG views (axial, coronal, sagittal, MIP) with a label overlay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clara_rt.operators.output.dicom_seg import DicomSegWriterOp as DicomSegWriterOp
    from clara_rt.operators.output.render import RenderOp as RenderOp

# public name -> its module, imported on first use (PEP 562): a pipeline that uses one
# operator of this package does not import the others (nor what they import)
_HOMES: dict[str, str] = {
    "DicomSegWriterOp": "dicom_seg",
    "RenderOp": "render",
}

__all__ = ["DicomSegWriterOp", "RenderOp"]


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

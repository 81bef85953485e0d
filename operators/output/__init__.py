"""Output operators: what a pipeline hands back to people and to PACS.

* :class:`DicomSegWriterOp`: a label map as a DICOM Segmentation referencing its source series.
* :class:`RenderOp`: PNG views (axial, coronal, sagittal, MIP) with a label overlay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clara_rt.operators._lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)

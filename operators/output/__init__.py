"""Output operators: what a pipeline hands back to people and to PACS.

* :class:`DicomSegWriterOp`: a label map as a DICOM Segmentation referencing its source series.
* :class:`RenderOp`: PNG views (axial, coronal, sagittal, MIP) with a label overlay.
"""

from __future__ import annotations

from clara_rt.operators.output.dicom_seg import DicomSegWriterOp as DicomSegWriterOp
from clara_rt.operators.output.render import RenderOp as RenderOp

__all__ = ["DicomSegWriterOp", "RenderOp"]

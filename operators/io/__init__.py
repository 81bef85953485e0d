"""Reading and writing images: DICOM series in, NIfTI in and out.

* :class:`DicomSeriesLoaderOp` / :func:`load_series`: a folder of DICOM files -> volume + meta.
* :class:`NiftiReaderOp` / :func:`read_nifti`, :class:`NiftiWriterOp` / :func:`write_nifti`.
* :func:`convert_series`: a DICOM series straight to a NIfTI-1 file (``clara-rt convert``).
* :class:`Image2DReaderOp` / :func:`read_image2d`: one 2-D DICOM or PNG image.

Volumes follow :mod:`clara_rt.operators.volume`: arrays indexed ``[k, j, i]`` with a
:class:`~clara_rt.operators.volume.VolumeMeta` beside them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clara_rt.operators._lazy import lazy_names

if TYPE_CHECKING:
    from clara_rt.operators.io._dicom_read import DicomSeriesError as DicomSeriesError
    from clara_rt.operators.io._dicom_read import NoSeriesError as NoSeriesError
    from clara_rt.operators.io.convert import Converted as Converted
    from clara_rt.operators.io.convert import convert_series as convert_series
    from clara_rt.operators.io.dicom_series import DicomSeriesLoaderOp as DicomSeriesLoaderOp
    from clara_rt.operators.io.dicom_series import load_series as load_series
    from clara_rt.operators.io.image2d import Image2DReaderOp as Image2DReaderOp
    from clara_rt.operators.io.image2d import read_image2d as read_image2d
    from clara_rt.operators.io.nifti import NiftiReaderOp as NiftiReaderOp
    from clara_rt.operators.io.nifti import NiftiWriterOp as NiftiWriterOp
    from clara_rt.operators.io.nifti import read_nifti as read_nifti
    from clara_rt.operators.io.nifti import write_nifti as write_nifti

# public name -> the module that defines it, imported on first use (PEP 562): a caller of
# load_series does not pay for the PNG reader or the NIfTI reader's imports
_HOMES: dict[str, str] = {
    **dict.fromkeys(("DicomSeriesError", "NoSeriesError"), "_dicom_read"),
    **dict.fromkeys(("Converted", "convert_series"), "convert"),
    **dict.fromkeys(("DicomSeriesLoaderOp", "load_series"), "dicom_series"),
    **dict.fromkeys(("Image2DReaderOp", "read_image2d"), "image2d"),
    **dict.fromkeys(("NiftiReaderOp", "NiftiWriterOp", "read_nifti", "write_nifti"), "nifti"),
}

__all__ = [
    "Converted",
    "DicomSeriesError",
    "DicomSeriesLoaderOp",
    "Image2DReaderOp",
    "NiftiReaderOp",
    "NiftiWriterOp",
    "NoSeriesError",
    "convert_series",
    "load_series",
    "read_image2d",
    "read_nifti",
    "write_nifti",
]


__getattr__, __dir__ = lazy_names(__name__, _HOMES, __all__)

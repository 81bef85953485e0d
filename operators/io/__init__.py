"""Reading and writing images: DICOM series in, NIfTI in and out.

* :class:`DicomSeriesLoaderOp` / :func:`load_series`: a folder of DICOM files -> volume + meta.
* :class:`NiftiReaderOp` / :func:`read_nifti`, :class:`NiftiWriterOp` / :func:`write_nifti`.
* :class:`Image2DReaderOp` / :func:`read_image2d`: one 2-D DICOM or PNG image.

Volumes follow :mod:`clara_rt.operators.volume`: arrays indexed ``[k, j, i]`` with a
:class:`~clara_rt.operators.volume.VolumeMeta` beside them.
"""

from __future__ import annotations

from clara_rt.operators.io._dicom_read import DicomSeriesError as DicomSeriesError
from clara_rt.operators.io._dicom_read import NoSeriesError as NoSeriesError
from clara_rt.operators.io.dicom_series import DicomSeriesLoaderOp as DicomSeriesLoaderOp
from clara_rt.operators.io.dicom_series import load_series as load_series
from clara_rt.operators.io.image2d import Image2DReaderOp as Image2DReaderOp
from clara_rt.operators.io.image2d import read_image2d as read_image2d
from clara_rt.operators.io.nifti import NiftiReaderOp as NiftiReaderOp
from clara_rt.operators.io.nifti import NiftiWriterOp as NiftiWriterOp
from clara_rt.operators.io.nifti import read_nifti as read_nifti
from clara_rt.operators.io.nifti import write_nifti as write_nifti

__all__ = [
    "DicomSeriesError",
    "DicomSeriesLoaderOp",
    "Image2DReaderOp",
    "NiftiReaderOp",
    "NiftiWriterOp",
    "NoSeriesError",
    "load_series",
    "read_image2d",
    "read_nifti",
    "write_nifti",
]

""":func:`convert_series`: one DICOM series -> one NIfTI-1 file, without holding the volume.

What ``clara-rt convert`` runs. The result is the file :func:`write_nifti` writes for
:func:`load_series`'s ``(volume, meta)``, byte for byte, but an uncompressed ``.nii`` is written
while the pixels are read: a few slices at a time are read into one small buffer, rescaled there
and appended to the file (see
:func:`~clara_rt.operators.io._dicom_pixels.write_volume`). No volume-sized array is allocated,
so a conversion pays neither its page faults nor a second pass over it; a process that converts a
300-slice CT spends its time in the reads and writes, as dcm2niix does.

``.nii.gz`` outputs, and series whose rescaled values turn out not to fit int16, go through
:func:`load_series` and :func:`write_nifti` (compression dominates there anyway). Either way the
file is written under a temporary name in the target folder and renamed into place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clara_rt.operators.io._dicom_pixels import read_volume, write_volume
from clara_rt.operators.io._nifti1 import nifti1_header
from clara_rt.operators.io.dicom_series import reader_pool, scan_series, series_meta
from clara_rt.operators.volume import VolumeMeta

if TYPE_CHECKING:
    from clara_rt.operators.io.dicom_series import _Stack

__all__ = ["Converted", "convert_series"]

_HEADER_BYTES = 352


@dataclass(frozen=True)
class Converted:
    """What :func:`convert_series` wrote: the volume's ``[k, j, i]`` shape, dtype and geometry."""

    path: Path
    shape: tuple[int, int, int]
    dtype: str
    meta: VolumeMeta


def convert_series(folder: str | os.PathLike[str], out: str | os.PathLike[str], *,
                   modality: str | None = None, description: str | None = None,
                   series_uid: str | None = None, select: str = "largest",
                   workers: int | None = None) -> Converted:
    """Write the series :func:`load_series` would load from ``folder`` as NIfTI-1 to ``out``.

    Args:
        folder: Folder searched recursively (see :func:`load_series` for the rules).
        out: ``.nii`` or ``.nii.gz`` file; its folder must exist; an existing file is replaced.
        modality: As :func:`load_series`.
        description: As :func:`load_series`.
        series_uid: As :func:`load_series`.
        select: As :func:`load_series`.
        workers: Reader threads (default: the usable CPUs, at most 8).

    Raises:
        DicomSeriesError: As :func:`load_series` (NoSeriesError when nothing matches).
        ValueError: A bad ``select`` or ``description``, or ``out`` not ``.nii``/``.nii.gz``.
        OSError: The file cannot be written.
    """
    target = Path(out)
    if not target.name.endswith((".nii", ".nii.gz")) or target.name in (".nii", ".nii.gz"):
        raise ValueError(f"{target}: a NIfTI file name must end in .nii.gz or .nii")
    with reader_pool(workers) as pool:
        stack, warnings = scan_series(folder, pool, modality=modality, description=description,
                                      series_uid=series_uid, select=select)
        meta = series_meta(stack, warnings)
        shape = (len(stack.headers), int(stack.headers[0].get("Rows")),
                 int(stack.headers[0].get("Columns")))
        dtype = None if target.name.endswith(".gz") else _stream(stack, shape, meta, target)
        if dtype is None:
            from clara_rt.operators.io.nifti import write_nifti

            volume = read_volume(stack, pool)
            write_nifti(volume, meta, target)
            dtype = str(volume.dtype)
    return Converted(target, shape, dtype, meta)


# --- private ------------------------------------------------------------------------------


def _stream(stack: _Stack, shape: tuple[int, int, int], meta: VolumeMeta,
            target: Path) -> str | None:
    """Write ``target`` while reading; the dtype written, or None (nothing left) to fall back."""
    temp = target.with_name(f".{target.name[:-4]}.{os.getpid()}-{os.urandom(4).hex()}.tmp.nii")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            dtype = write_volume(stack, fd, _HEADER_BYTES)
            if dtype is not None:
                header = nifti1_header(shape, dtype, meta.affine_ras)
                if os.pwrite(fd, header, 0) != len(header):
                    raise OSError(f"{temp}: short write of the NIfTI header")
        finally:
            os.close(fd)
        if dtype is not None:
            os.replace(temp, target)
        return dtype
    finally:
        temp.unlink(missing_ok=True)

""":func:`convert_series`: one DICOM series -> one NIfTI-1 file, without holding the volume.

What ``clara-rt convert`` runs. Two ways, one result:

* **Fast path** (:mod:`._convert_fast`, no NumPy): one series of native 16-bit slices with one
  integral rescale and regular geometry (the common CT and MR series) is copied into the
  ``.nii`` by the kernel, slice after slice in sorted order, the rescale going into
  ``scl_slope`` / ``scl_inter``. A new process converts without importing NumPy at all.
* **NumPy path**: everything else (8-bit or 32-bit pixels, compressed syntaxes, multi-frame
  files, per-slice or fractional rescale, several series, irregular geometry, ``.nii.gz``). An
  uncompressed ``.nii`` is written while the pixels are read: a few slices at a time are read
  into one small buffer, rescaled there and appended to the file (see
  :func:`~clara_rt.operators.io._dicom_pixels.write_volume`); ``.nii.gz`` outputs and series
  whose rescaled values turn out not to fit int16 go through :func:`load_series` and
  :func:`write_nifti`.

The file is :func:`write_nifti`'s for :func:`load_series`'s ``(volume, meta)``: byte for byte,
except that a rescaled series on the fast path keeps its stored values and sets ``scl_slope`` /
``scl_inter`` (the real values, ``stored * scl_slope + scl_inter``, are the same). Either way the
file is written under a temporary name in the target folder and renamed into place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from clara_rt.operators.io import _convert_fast as fast
from clara_rt.operators.io._dicom_read import reader_threads
from clara_rt.operators.io._nifti1 import HEADER_BYTES, nifti1_header

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from clara_rt.operators.io._dicom_read import SliceHeader
    from clara_rt.operators.io.dicom_series import _Stack
    from clara_rt.operators.volume import VolumeMeta

__all__ = ["Converted", "convert_series"]


class Converted(NamedTuple):
    """What :func:`convert_series` wrote: ``[k, j, i]`` shape, stored dtype, scaling, geometry.

    Plain values only (a named tuple), so that reporting a conversion needs no NumPy;
    :attr:`meta` builds the :class:`~clara_rt.operators.volume.VolumeMeta` when asked.
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: str
    """The stored dtype (``"int16"`` or ``"float32"``)."""
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...]
    source: dict[str, Any]
    files: tuple[str, ...]
    warnings: tuple[str, ...]
    scl_slope: float = 1.0
    """Real values are ``stored * scl_slope + scl_inter`` (1 and 0: the stored values)."""
    scl_inter: float = 0.0

    @property
    def meta(self) -> VolumeMeta:
        """The :class:`VolumeMeta` :func:`load_series` gives for the series."""
        from clara_rt.operators.volume import VolumeMeta

        return VolumeMeta(spacing=self.spacing, origin=self.origin, direction=self.direction,
                          source=self.source, files=self.files, warnings=self.warnings)

    @property
    def affine_ras(self) -> list[list[float]]:
        """The 4x4 RAS affine written in the file (``meta.affine_ras`` as nested lists)."""
        return fast.affine_ras(fast.Geometry(self.spacing, self.origin, self.direction))


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
    rules = {"modality": modality, "description": description, "series_uid": series_uid,
             "select": select}
    root = Path(folder)
    if target.name.endswith(".gz") or not root.is_dir():  # .nii.gz: compression dominates
        return _convert(target, lambda pool: _scan_series(root, pool, rules), workers)
    warnings: list[str] = []
    headers, n_files = fast.scan(str(root), workers or reader_threads(), warnings)
    plan = fast.plan(headers, **rules)  # type: ignore[arg-type]
    done = None if plan is None else _write_fast(plan, target, warnings)
    if done is not None:
        return done
    return _convert(target, lambda pool: _stack(root, n_files, headers, warnings, rules),
                    workers)


# --- private ------------------------------------------------------------------------------


def _write_fast(plan: fast.FastPlan, target: Path, warnings: list[str]) -> Converted | None:
    """Write ``plan`` to ``target``; None (nothing left behind) when it must go the NumPy way."""
    geometry = plan.geometry
    header = nifti1_header(plan.shape, "int16", fast.affine_ras(geometry),
                           scl_slope=plan.slope, scl_inter=plan.intercept)
    if not _write_temp(target, lambda fd: fast.write(plan, fd, HEADER_BYTES) and header):
        return None
    return Converted(target, plan.shape, "int16", geometry.spacing, geometry.origin,
                     geometry.direction, fast.source_tags(plan.headers),
                     tuple(h.path for h in plan.headers), tuple(warnings), plan.slope,
                     plan.intercept)


def _convert(target: Path, scan: Callable[[ThreadPoolExecutor], tuple[_Stack, list[str]]],
             workers: int | None) -> Converted:
    """The NumPy path: ``scan`` gives the sorted stack; stream it, or load and write it."""
    from clara_rt.operators.io._dicom_pixels import read_volume, write_volume
    from clara_rt.operators.io.dicom_series import reader_pool, series_meta

    with reader_pool(workers) as pool:
        stack, warnings = scan(pool)
        meta = series_meta(stack, warnings)
        shape = (len(stack.headers), int(stack.headers[0].get("Rows")),
                 int(stack.headers[0].get("Columns")))
        written: list[str] = []

        def stream(fd: int) -> bytes | None:
            dtype = write_volume(stack, fd, HEADER_BYTES)
            if dtype is None:
                return None  # a slice out of int16: read_volume converts to float32
            written.append(dtype)
            return nifti1_header(shape, dtype, meta.affine_ras)

        if target.name.endswith(".gz") or not _write_temp(target, stream):
            from clara_rt.operators.io.nifti import write_nifti

            volume = read_volume(stack, pool)
            write_nifti(volume, meta, target)
            written.append(str(volume.dtype))
    return Converted(target, shape, written[-1], meta.spacing, meta.origin, meta.direction,
                     meta.source, meta.files, meta.warnings)


def _scan_series(root: Path, pool: ThreadPoolExecutor,
                 rules: dict[str, Any]) -> tuple[_Stack, list[str]]:
    from clara_rt.operators.io.dicom_series import scan_series

    return scan_series(root, pool, **rules)


def _stack(root: Path, n_files: int, headers: list[SliceHeader], warnings: list[str],
           rules: dict[str, Any]) -> tuple[_Stack, list[str]]:
    """scan_series' steps 2-3 on the headers the fast path has read already."""
    from clara_rt.operators.io.dicom_series import _check_rules, _select
    from clara_rt.operators.io.dicom_series import _stack as stack_of

    _check_rules(rules["select"], rules["description"])
    chosen = _select(root, n_files, headers, rules["modality"], rules["description"],
                     rules["series_uid"], rules["select"])
    return stack_of(chosen, warnings), warnings


def _write_temp(target: Path, write: Callable[[int], bytes | bool | None]) -> bool:
    """Write ``target`` through a temporary file beside it, renamed into place.

    ``write(fd)`` fills the data after the header and returns the header (written at offset
    0), or a false value: nothing is left behind and False is returned.
    """
    temp = target.with_name(f".{target.name[:-4]}.{os.getpid()}-{os.urandom(4).hex()}.tmp.nii")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            header = write(fd)
            if isinstance(header, bytes) and os.pwrite(fd, header, 0) != len(header):
                raise OSError(f"{temp}: short write of the NIfTI header")
        finally:
            os.close(fd)
        if isinstance(header, bytes):
            os.replace(temp, target)
            return True
        return False
    finally:
        temp.unlink(missing_ok=True)

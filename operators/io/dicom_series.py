"""DicomSeriesLoaderOp and :func:`load_series`: a folder of DICOM files -> one volume + meta.

Steps, each over a thread pool:

1. **Headers.** Every file under the folder (recursively, any order, any names) is opened once
   and the ~25 tags the loader needs are read from its first 16 KiB (:mod:`._dicom_read`). Files
   that are not DICOM, DICOMDIRs and objects without pixels (RTSTRUCT, SR, SEG...) are skipped
   with a debug log; damaged or truncated files are skipped with a warning naming them.
2. **Series.** Images are grouped by SeriesInstanceUID and one series is chosen by the rules
   (``modality``, ``description`` regex, ``series_uid``, then ``select``); when none matches the
   error lists every series found.
3. **Geometry.** Slices are sorted by their position along the slice normal
   (ImagePositionPatient . (row cosine x column cosine)), never by InstanceNumber or file name.
   Duplicate positions keep one slice; irregular spacing uses the median; gaps wider than 1.5x
   the median are reported as missing slices. Each finding is a warning (see below).
   Multi-frame files (Enhanced CT/MR...) become one slice per frame first, each with the
   position, orientation, pixel spacing and rescale of its functional groups
   (:mod:`._dicom_frames`), and are sorted the same way.
4. **Pixels.** One ``(slices, rows, cols)`` array is allocated and every slice's pixel bytes are
   read straight into its place (``readinto``, GIL released), or decoded by pydicom's pixel
   handlers for compressed syntaxes; RescaleSlope/Intercept are applied per slice.

Output dtype: ``int16`` when every slope and intercept is an integer and the rescaled values fit
(CT in HU: the common case, half the memory of float32); otherwise ``float32``.

Warnings go to ``VolumeMeta.warnings`` and to the ``clara_rt.dicom`` logger. Errors raise
:class:`DicomSeriesError`, and in a pipeline fail the job with an ``OperatorError`` naming the
folder. ``load_series`` is thread-safe (each call has its own pool).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clara_rt import Inputs, Operator, OperatorSpec, Outputs
from clara_rt.arrays import to_device
from clara_rt.operators.io._dicom_frames import expand_frames, frame_count, needs_expansion
from clara_rt.operators.io._dicom_pixels import read_volume
from clara_rt.operators.io._dicom_read import (
    DicomSeriesError,
    NoSeriesError,
    SliceHeader,
    list_files,
    logger,
    read_header,
    reader_threads,
)
from clara_rt.operators.volume import VolumeMeta

if TYPE_CHECKING:  # not at run time: clara-rt convert needs no job machinery
    from clara_rt import Context

__all__ = ["SELECT_RULES", "DicomSeriesError", "DicomSeriesLoaderOp", "NoSeriesError",
           "load_series", "reader_pool", "scan_series", "series_meta"]

SELECT_RULES = ("largest", "first", "only")
"""``largest``: most slices (then most voxels); ``first``: lowest SeriesNumber (then UID);
``only``: exactly one series may match, else an error."""
_DUPLICATE_MM = 1e-3
_SOURCE_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID",
                "PatientName", "StudyDate", "Modality", "SeriesDescription", "SOPClassUID",
                "Rows", "Columns")


class DicomSeriesLoaderOp(Operator):
    """Load one DICOM series from a folder as a volume and its :class:`VolumeMeta`.

    Ports:
        in ``folder``: path -- a folder of DICOM files (searched recursively).
        out ``volume``: array ``(slices, rows, cols)``, int16 or float32 (see module docstring),
            on the host (or on the GPU with ``device="cuda"``).
        out ``meta``: object -- :class:`VolumeMeta` (geometry, source tags, files, warnings).

    Args:
        name: Operator name in its pipeline.
        modality: Keep series of this Modality (``"CT"``; case-insensitive).
        description: Keep series whose SeriesDescription matches this regex (``re.search``,
            case-insensitive).
        series_uid: Keep only this SeriesInstanceUID.
        select: How to pick among the series left: one of :data:`SELECT_RULES`.
        workers: Reader threads (default: the usable CPUs, at most 8).
        pinned: Allocate the volume in page-locked host memory (``cupyx.empty_pinned``) so
            that the one copy to the GPU runs at full bus speed; needs CuPy and a GPU.
        device: ``"cpu"`` or ``"cuda"`` (the volume is copied to the GPU once, with CuPy).
    """

    def __init__(self, name: str | None = None, /, *, modality: str | None = None,
                 description: str | None = None, series_uid: str | None = None,
                 select: str = "largest", workers: int | None = None,
                 device: str = "cpu") -> None:
        super().__init__(name)
        _check_rules(select, description)
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.modality, self.description, self.series_uid = modality, description, series_uid
        self.select, self.workers, self.device = select, workers, device

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``folder`` in, ``volume`` + ``meta`` out."""
        spec.input("folder", kind="path", format="dicom", description="folder of DICOM files")
        spec.output("volume", shape=(-1, -1, -1), device=self.device,
                    description="slices x rows x cols, int16 or float32")
        spec.output("meta", kind="object", description="VolumeMeta")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Load the series in ``folder``."""
        on_gpu = self.device == "cuda"
        volume, meta = load_series(inputs["folder"], modality=self.modality,
                                   description=self.description, series_uid=self.series_uid,
                                   select=self.select, workers=self.workers, pinned=on_gpu)
        if on_gpu:
            import cupy

            host = volume
            volume = to_device(host)  # one copy, from pinned memory
            cupy.cuda.get_current_stream().synchronize()  # host buffer is freed after this
        outputs.emit("volume", volume)
        outputs.emit("meta", meta)


def load_series(folder: str | os.PathLike[str], *, modality: str | None = None,
                description: str | None = None, series_uid: str | None = None,
                select: str = "largest",
                workers: int | None = None,
                pinned: bool = False) -> tuple[np.ndarray, VolumeMeta]:
    """Load one series from ``folder``; see the module docstring for the steps and rules.

    Args:
        folder: Folder searched recursively.
        modality: Keep series of this Modality (case-insensitive).
        description: Regex searched in SeriesDescription (case-insensitive).
        series_uid: Keep only this SeriesInstanceUID.
        select: One of :data:`SELECT_RULES`.
        workers: Reader threads (default: the usable CPUs, at most 8).

    Returns:
        ``(volume, meta)``: the ``(slices, rows, cols)`` array (int16 or float32, C-contiguous)
        and its :class:`VolumeMeta`.

    Raises:
        DicomSeriesError: Not a folder, no image series, none matching the rules (the message
            lists the series found), a series that cannot be stacked or decoded.
    """
    with reader_pool(workers) as pool:
        stack, warnings = scan_series(folder, pool, modality=modality, description=description,
                                      series_uid=series_uid, select=select)
        volume = read_volume(stack, pool, pinned=pinned)
    return volume, _meta(stack, warnings)


def reader_pool(workers: int | None = None) -> ThreadPoolExecutor:
    """The loader's thread pool: ``workers`` threads (default: the usable CPUs, at most 8)."""
    return ThreadPoolExecutor(workers or reader_threads(), thread_name_prefix="clara-rt-dicom")


def scan_series(folder: str | os.PathLike[str], pool: ThreadPoolExecutor, *,
                modality: str | None = None, description: str | None = None,
                series_uid: str | None = None,
                select: str = "largest") -> tuple[_Stack, list[str]]:
    """Steps 1-3 of :func:`load_series`: the chosen series' slices in order, and the warnings.

    Raises:
        DicomSeriesError: As :func:`load_series`.
    """
    _check_rules(select, description)
    root = Path(folder)
    if not root.is_dir():
        raise NoSeriesError(f"{root}: not a folder")
    files = list_files(root)
    warnings: list[str] = []
    headers = _read_headers(files, pool, warnings)
    chosen = _select(root, len(files), headers, modality, description, series_uid, select)
    return _stack(chosen, warnings), warnings


def series_meta(stack: _Stack, warnings: list[str]) -> VolumeMeta:
    """The :class:`VolumeMeta` :func:`load_series` returns for ``stack``."""
    return _meta(stack, warnings)


# --- private: headers and series selection -------------------------------------------------


def _read_headers(files: list[str], pool: ThreadPoolExecutor,
                  warnings: list[str]) -> list[SliceHeader]:
    chunks = [files[i:i + 16] for i in range(0, len(files), 16)]
    headers: list[SliceHeader] = []
    for results in pool.map(lambda chunk: [read_header(f) for f in chunk], chunks):
        for header, problem in results:
            if header is not None:
                headers.append(header)
            elif problem is not None:
                _warn(warnings, problem)
    return headers


def _select(root: Path, n_files: int, headers: list[SliceHeader], modality: str | None,
            description: str | None, series_uid: str | None, select: str) -> list[SliceHeader]:
    series: dict[str, list[SliceHeader]] = defaultdict(list)
    for h in headers:
        series[h.get("SeriesInstanceUID")].append(h)
    if not series:
        raise NoSeriesError(f"no DICOM image series found in {root} ({n_files} files read; "
                            "none is a DICOM image)")
    rules: list[tuple[str, Callable[[SliceHeader], bool]]] = []
    if modality is not None:
        rules.append((f"modality={modality!r}",
                      lambda h: str(h.get("Modality", "")).upper() == modality.upper()))
    if description is not None:
        pattern = re.compile(description, re.IGNORECASE)
        rules.append((f"description=/{description}/",
                      lambda h: pattern.search(str(h.get("SeriesDescription", ""))) is not None))
    if series_uid is not None:
        rules.append((f"series_uid={series_uid!r}", lambda h: h.get("SeriesInstanceUID") ==
                      series_uid))
    matches = {uid: hs for uid, hs in series.items() if all(ok(hs[0]) for _, ok in rules)}
    if not matches or (select == "only" and len(matches) > 1):
        what = " and ".join(r for r, _ in rules) or "no rule"
        problem = "no series matches" if not matches else f"{len(matches)} series match"
        raise NoSeriesError(f"{problem} {what} (select={select!r}) in {root}; series found: "
                            f"{_describe(series)}")
    return matches[min(matches, key=lambda uid: _rank(select, uid, matches[uid]))]


def _rank(select: str, uid: str, hs: list[SliceHeader]) -> tuple[Any, ...]:
    if select == "first":
        number = hs[0].get("SeriesNumber")
        return (number is None, number or 0, uid)
    slices = sum(frame_count(h) for h in hs)
    voxels = slices * hs[0].get("Rows", 0) * hs[0].get("Columns", 0)
    return (-slices, -voxels, uid)


def _describe(series: dict[str, list[SliceHeader]], limit: int = 20) -> str:
    ranked = sorted(series.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    text = "; ".join(f"{uid} {hs[0].get('Modality', '?')} "
                     f"{str(hs[0].get('SeriesDescription', ''))!r} ({len(hs)} files)"
                     for uid, hs in ranked[:limit])
    return text + (f"; and {len(ranked) - limit} more" if len(ranked) > limit else "")


def _check_rules(select: str, description: str | None) -> None:
    if select not in SELECT_RULES:
        raise ValueError(f"select must be one of {', '.join(SELECT_RULES)}, got {select!r}")
    if description is not None:
        try:
            re.compile(description)
        except re.error as exc:
            raise ValueError(f"description is not a valid regex: {description!r} ({exc})") from exc


# --- private: geometry -----------------------------------------------------------------------


class _Stack:
    """The slices of one volume in order, with their geometry."""

    def __init__(self, headers: Sequence[SliceHeader], positions: np.ndarray,
                 cosines: np.ndarray, spacing: float) -> None:
        self.headers = list(headers)
        self.positions = positions
        self.cosines = cosines  # rows: row cosine, column cosine, normal
        self.spacing = spacing


def _stack(headers: list[SliceHeader], warnings: list[str]) -> _Stack:
    """Keep one geometry, sort along the normal, drop duplicates, check the spacing."""
    if any(needs_expansion(h) for h in headers):
        headers = expand_frames(headers, warnings)  # one header per frame; one orientation
    headers = _one_geometry(headers, warnings)
    iop = headers[0].get("ImageOrientationPatient")
    if iop is None or any(h.get("ImagePositionPatient") is None for h in headers):
        if len(headers) > 1:
            raise DicomSeriesError(f"{headers[0].path}: series without ImagePositionPatient/"
                                   "ImageOrientationPatient cannot be sorted into a volume")
        _warn(warnings, f"{headers[0].path}: no ImagePositionPatient/ImageOrientationPatient; "
                        "assuming an axial slice at the origin")
        iop = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    row, col = np.asarray(iop[:3], dtype=float), np.asarray(iop[3:6], dtype=float)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    ipp = np.array([h.get("ImagePositionPatient", [0.0, 0.0, 0.0]) for h in headers], float)
    order = np.argsort(ipp @ normal, kind="stable")
    headers, ipp = [headers[i] for i in order], ipp[order]
    keep = _unique_positions(headers, ipp @ normal, warnings)
    headers, ipp = [h for h, k in zip(headers, keep, strict=True) if k], ipp[keep]
    spacing = _spacing(headers, ipp @ normal, warnings)
    return _Stack(headers, ipp, np.stack([row, col, normal]), spacing)


def _one_geometry(headers: list[SliceHeader], warnings: list[str]) -> list[SliceHeader]:
    groups: dict[tuple[Any, ...], list[SliceHeader]] = defaultdict(list)
    for h in headers:
        iop = h.get("ImageOrientationPatient")
        key = (tuple(round(float(v), 4) for v in iop) if iop else None, h.get("Rows"),
               h.get("Columns"))
        groups[key].append(h)
    if len(groups) == 1:
        return headers
    keep = max(groups, key=lambda k: (len(groups[k]), str(k)))
    _warn(warnings, f"series {headers[0].get('SeriesInstanceUID')} mixes {len(groups)} "
                    f"orientations/sizes; kept the {len(groups[keep])} slices with orientation "
                    f"{keep[0]} and size {keep[1]}x{keep[2]}, skipped "
                    f"{len(headers) - len(groups[keep])}")
    return groups[keep]


def _unique_positions(headers: list[SliceHeader], along: np.ndarray,
                      warnings: list[str]) -> np.ndarray:
    """Return a mask keeping the first slice at each position (``along`` sorted)."""
    keep = np.ones(len(along), dtype=bool)
    dup = np.flatnonzero(np.diff(along) < _DUPLICATE_MM) + 1
    if dup.size:
        examples = "; ".join(f"{along[i]:.3f} mm: kept {headers[i - 1].path}, skipped "
                             f"{headers[i].path}" for i in dup[:3])
        _warn(warnings, f"{dup.size} slice(s) duplicate another's position; kept one per "
                        f"position ({examples}{'; ...' if dup.size > 3 else ''})")
        keep[dup] = False
    return keep


def _spacing(headers: list[SliceHeader], along: np.ndarray, warnings: list[str]) -> float:
    """Return the slice spacing (median step), warning about gaps and irregular steps."""
    if len(along) < 2:
        first = headers[0]
        return float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    steps = np.diff(along)
    median = _median(steps.tolist())  # np.median imports numpy.ma (0.1 s), statistics 7 ms
    gaps = np.flatnonzero(steps > 1.5 * median)
    for i in gaps:
        _warn(warnings, f"missing slice(s): gap of {steps[i]:.3f} mm between positions "
                        f"{along[i]:.3f} and {along[i + 1]:.3f} mm (slices {i} and {i + 1}, "
                        f"about {round(steps[i] / median) - 1} missing; median spacing "
                        f"{median:.3f} mm)")
    regular = np.delete(steps, gaps)
    deviation = np.abs(regular - median)
    if regular.size and deviation.max() > max(0.01, 0.01 * median):
        _warn(warnings, f"irregular slice spacing: median {median:.4f} mm, max deviation "
                        f"{deviation.max():.4f} mm; using the median")
    return median


def _median(values: list[float]) -> float:
    """``statistics.median``: the middle value, or the mean of the two middle ones."""
    ordered, half = sorted(values), len(values) // 2
    return float(ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2)


def _meta(stack: _Stack, warnings: list[str]) -> VolumeMeta:
    first = stack.headers[0]
    spacing_rc = first.get("PixelSpacing") or [1.0, 1.0]
    if not isinstance(spacing_rc, list):
        spacing_rc = [float(spacing_rc)] * 2
    source: dict[str, Any] = {k: first.get(k) for k in _SOURCE_TAGS}
    source["SOPInstanceUIDs"] = [h.get("SOPInstanceUID") for h in stack.headers]
    if any(h.frame is not None for h in stack.headers):  # 1-based, as DICOM references frames
        source["FrameNumbers"] = [None if h.frame is None else h.frame + 1 for h in stack.headers]
    source["TransferSyntaxUID"] = first.transfer_syntax
    direction = stack.cosines.T  # columns: i (row cosine), j (column cosine), k (normal)
    return VolumeMeta(
        spacing=(stack.spacing, float(spacing_rc[0]), float(spacing_rc[1])),
        origin=tuple(float(v) for v in stack.positions[0]),  # type: ignore[arg-type]
        direction=tuple((float(r[0]), float(r[1]), float(r[2])) for r in direction),
        source=source, files=tuple(h.path for h in stack.headers), warnings=tuple(warnings))


def _warn(warnings: list[str], message: str) -> None:
    warnings.append(message)
    logger.warning("%s", message)

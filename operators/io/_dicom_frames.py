"""Multi-frame DICOM images -> one :class:`SliceHeader` per frame, with its own geometry.

Enhanced CT/MR/PET (and other modern objects) store a whole series as one file of N frames and
put the geometry in functional groups. :func:`expand_frames` reads such a file's header with
pydicom and gives every frame, in this order of precedence (per-frame group, shared group, the
top-level attribute):

* ImagePositionPatient from PlanePositionSequence,
* ImageOrientationPatient from PlaneOrientationSequence,
* PixelSpacing, SliceThickness, SpacingBetweenSlices from PixelMeasuresSequence,
* RescaleSlope, RescaleIntercept from PixelValueTransformationSequence.

Classic multi-frame objects without functional groups: an RT Dose places frame k at
ImagePositionPatient + GridFrameOffsetVector[k] x the slice normal; a file with no geometry at
all (no position, orientation or pixel spacing) is stacked in file order along an axial normal,
SpacingBetweenSlices (else SliceThickness, else 1 mm) apart, with a warning.

Refused with :class:`DicomSeriesError`: frames of different orientations (localizers), frames
sharing a position (several stacks in one file: echoes, phases, time points: 4-D), a per-frame
group count that differs from NumberOfFrames. The loader then sorts the frames spatially like
single-frame slices; each frame's pixels are read at ``pixel_offset + k x frame bytes`` for
uncompressed syntaxes, or decoded one frame at a time by pydicom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clara_rt.operators.io._dicom_read import DicomSeriesError, SliceHeader, _plain, logger

__all__ = ["expand_frames", "frame_count", "needs_expansion"]

_GROUPS = (  # keyword -> functional group sequence that carries it
    ("ImagePositionPatient", "PlanePositionSequence"),
    ("ImageOrientationPatient", "PlaneOrientationSequence"),
    ("PixelSpacing", "PixelMeasuresSequence"),
    ("SliceThickness", "PixelMeasuresSequence"),
    ("SpacingBetweenSlices", "PixelMeasuresSequence"),
    ("RescaleSlope", "PixelValueTransformationSequence"),
    ("RescaleIntercept", "PixelValueTransformationSequence"),
)
_SAME_MM = 1e-3


def frame_count(header: SliceHeader) -> int:
    """NumberOfFrames of ``header`` (1 when absent)."""
    return int(header.get("NumberOfFrames", 1) or 1)


def needs_expansion(header: SliceHeader) -> bool:
    """Whether ``header``'s geometry lives in functional groups, not at the top level.

    True for a file of several frames, and for a one-frame multi-frame object (an Enhanced
    CT/MR of ``NumberOfFrames`` 1) whose position is only in its functional groups.
    """
    if frame_count(header) > 1:
        return True
    return (header.frame is None and "NumberOfFrames" in header.tags
            and header.get("ImagePositionPatient") is None)


def expand_frames(headers: Sequence[SliceHeader], warnings: list[str]) -> list[SliceHeader]:
    """Replace every multi-frame header by one header per frame (single-frame ones are kept).

    Raises:
        DicomSeriesError: Mixed orientations, frames sharing a position, malformed functional
            groups (the message names the file).
    """
    out: list[SliceHeader] = []
    for header in headers:
        out.extend(_frames(header, warnings) if needs_expansion(header) else [header])
    _one_orientation(out)
    return out


# --- private ------------------------------------------------------------------------------


def _frames(header: SliceHeader, warnings: list[str]) -> list[SliceHeader]:
    import pydicom

    try:
        ds = pydicom.dcmread(header.path, stop_before_pixels=True)
        per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
        shared_seq = ds.get("SharedFunctionalGroupsSequence") or []
        shared = shared_seq[0] if len(shared_seq) else None
    except Exception as exc:  # pydicom raises many kinds on damaged sequences
        raise DicomSeriesError(f"{header.path}: cannot read its functional groups "
                               f"({type(exc).__name__}: {exc})") from exc
    count = frame_count(header)
    if count == 1 and not per_frame and shared is None:
        return [header]  # a one-frame image without functional groups: placed as it is
    if per_frame and len(per_frame) != count:
        raise DicomSeriesError(f"{header.path}: {len(per_frame)} per-frame functional groups "
                               f"for {count} frames")
    frame_bytes = int(header.get("Rows")) * int(header.get("Columns")) * int(
        header.get("SamplesPerPixel", 1)) * (int(header.get("BitsAllocated", 16)) // 8)
    frames = []
    for k in range(count):
        tags = dict(header.tags, NumberOfFrames=1)
        for keyword, group in _GROUPS:
            value = _group_value(per_frame[k] if per_frame else None, shared, group, keyword)
            if value is not None:
                tags[keyword] = value
        offset = None if header.pixel_offset is None else header.pixel_offset + k * frame_bytes
        frames.append(SliceHeader(header.path, header.transfer_syntax, tags, offset,
                                  frame_bytes, frame=k))
    if not (per_frame and all("PlanePositionSequence" in g for g in per_frame)):
        _place_classic(header, ds, frames, warnings)  # no position of their own
    _distinct_positions(header, frames)
    return frames


def _group_value(item: Any, shared: Any, group: str, keyword: str) -> Any:
    for box in (item, shared):
        if box is None or group not in box:
            continue
        seq = box[group].value
        if len(seq) and keyword in seq[0] and seq[0][keyword].value not in (None, ""):
            return _plain(seq[0][keyword].value)
    return None


def _place_classic(header: SliceHeader, ds: Any, frames: list[SliceHeader],
                   warnings: list[str]) -> None:
    """Positions for frames that have none of their own (RT Dose grid, or no geometry)."""
    first = frames[0]
    iop, ipp = first.get("ImageOrientationPatient"), first.get("ImagePositionPatient")
    offsets = ds.get("GridFrameOffsetVector")
    if iop is not None and ipp is not None and offsets is not None and len(offsets) == len(
            frames):
        steps = [float(v) for v in offsets]
    elif iop is None and ipp is None:
        spacing = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
        steps = [k * spacing for k in range(len(frames))]
        iop, ipp = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0]
        message = (f"{header.path}: multi-frame image without position or orientation; frames "
                   f"stacked in file order along an axial normal, {spacing:g} mm apart, from "
                   "the origin")
        warnings.append(message)
        logger.warning("%s", message)
    else:
        raise DicomSeriesError(f"{header.path}: {len(frames)} frames without a position of "
                               "their own (no PlanePositionSequence, no GridFrameOffsetVector):"
                               " they cannot be placed in space")
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:6], float))
    for frame, step in zip(frames, steps, strict=True):
        frame.tags["ImageOrientationPatient"] = list(iop)
        frame.tags["ImagePositionPatient"] = [float(v) for v in np.asarray(ipp, float)
                                              + step * normal]


def _distinct_positions(header: SliceHeader, frames: list[SliceHeader]) -> None:
    positions = np.array([f.get("ImagePositionPatient") for f in frames], dtype=float)
    distinct = len(np.unique(np.round(positions / _SAME_MM).astype(np.int64), axis=0))
    if distinct < len(frames):
        plural = "s" if distinct != 1 else ""
        raise DicomSeriesError(f"{header.path}: {len(frames)} frames at only {distinct} distinct "
                               f"position{plural}: several stacks in one file (echoes, phases, "
                               "time points); 4-D multi-frame images are not supported")


def _one_orientation(frames: list[SliceHeader]) -> None:
    found: dict[tuple[float, ...], str] = {}
    for f in frames:
        iop = f.get("ImageOrientationPatient")
        if iop is not None:
            found.setdefault(tuple(round(float(v), 4) for v in iop), f.path)
    if len(found) > 1:
        shown = "; ".join(f"{list(k)} ({path})" for k, path in list(found.items())[:4])
        raise DicomSeriesError(f"{frames[0].path}: frames of this series have {len(found)} "
                               f"orientations ({shown}); a volume needs one (localizers and "
                               "other multi-plane files cannot be stacked)")

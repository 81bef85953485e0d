"""The source images a DICOM SEG references: one :class:`SourceFrame` per slice of the mask.

A volume from the DICOM loader lists, per slice ``k``, the file it came from (``meta.files``),
its SOP instance (``meta.source["SOPInstanceUIDs"]``) and, for slices read from multi-frame
files (Enhanced CT/MR...), the 1-based frame number (``meta.source["FrameNumbers"]``, ``None``
for single-frame files). :func:`read_source_frames` reads each source file's header once (no
pixel data) and gives every slice its instance, frame and geometry, taking each attribute from
the frame's per-frame functional group, else the shared group, else the top level (the order
the loader uses): ImagePositionPatient (PlanePositionSequence), ImageOrientationPatient
(PlaneOrientationSequence), PixelSpacing and SliceThickness (PixelMeasuresSequence). A frame
with no position of its own in a multi-frame image is placed as the loader places it: the
image's ImagePositionPatient moved GridFrameOffsetVector along the normal (RT Dose), else the
position of its slice in ``meta`` (as for any missing orientation or pixel spacing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import DSdecimal, DSfloat, format_number_as_ds

if TYPE_CHECKING:
    from clara_rt.operators.volume import VolumeMeta

__all__ = ["SourceFrame", "read_source_frames"]

# Type 2 attributes of the Patient and General Study modules that a SEG copies from the
# source; many real files omit them, and an empty value is what DICOM prescribes then.
_TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                        "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                        "AccessionNumber")


@dataclass(frozen=True)
class SourceFrame:
    """One slice of the mask's source: an image, or one frame of a multi-frame image.

    Attributes:
        dataset: Header of the source instance (no pixel data); the frames of one multi-frame
            file share it.
        frame: 1-based frame number in a multi-frame instance; ``None`` for a single frame.
        position: ImagePositionPatient of this frame (LPS, mm).
        orientation: ImageOrientationPatient (row cosine, column cosine).
        pixel_spacing: PixelSpacing (row spacing, column spacing), mm.

    The values are the source's own decimal strings (pydicom ``DSfloat``), or ones made from
    ``meta`` (at most 16 characters) where the source has none.
        slice_thickness: SliceThickness (``""`` when the source has none).
    """

    dataset: Dataset
    frame: int | None
    position: tuple[Any, ...]
    orientation: tuple[Any, ...]
    pixel_spacing: tuple[Any, ...]
    slice_thickness: Any

    @property
    def sop_class_uid(self) -> str:
        """SOPClassUID of the source instance."""
        return str(self.dataset.SOPClassUID)

    @property
    def sop_instance_uid(self) -> str:
        """SOPInstanceUID of the source instance."""
        return str(self.dataset.SOPInstanceUID)

    @property
    def frames_in_instance(self) -> int:
        """NumberOfFrames of the source instance (1 when absent)."""
        return int(self.dataset.get("NumberOfFrames", 1) or 1)


def read_source_frames(meta: VolumeMeta, shape: Sequence[int],
                       operator: str) -> list[SourceFrame]:
    """Read the sources of ``meta``'s slices (each file once) and check them against a mask.

    Args:
        meta: Geometry and provenance of the volume the mask was computed on.
        shape: ``(k, j, i)`` shape of the mask.
        operator: Operator name, for messages.

    Returns:
        One :class:`SourceFrame` per slice, in slice order; missing Type 2 patient/study
        attributes are set empty on the headers.

    Raises:
        ValueError: ``meta`` has no files, a file is not DICOM, the files do not match the mask
            shape or ``meta.source``, a multi-frame file has no frame number for its slice.
        FileNotFoundError: Source files are missing (all missing ones are named).
    """
    files = [Path(f) for f in getattr(meta, "files", ())]
    if not files:
        raise ValueError(f"operator '{operator}': meta.files is empty; the SEG writer needs "
                         "the source DICOM files of the volume (a meta from the DICOM loader)")
    distinct = list(dict.fromkeys(files))  # a multi-frame file is listed once per frame
    missing = [str(f) for f in distinct if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"operator '{operator}': {len(missing)} of {len(distinct)} "
                                f"source DICOM files are missing: {', '.join(missing)}")
    if len(files) != shape[0]:
        raise ValueError(f"operator '{operator}': mask has {shape[0]} slices but meta.files "
                         f"lists {len(files)} source files")
    numbers = list(meta.source.get("FrameNumbers") or [None] * len(files))
    if len(numbers) != len(files):
        raise ValueError(f"operator '{operator}': meta.source lists {len(numbers)} "
                         f"FrameNumbers for {len(files)} slices")
    headers = {path: _read_header(path, operator) for path in distinct}
    frames = [_frame(headers[path], number, k, meta, operator)
              for k, (path, number) in enumerate(zip(files, numbers, strict=True))]
    _check_sources(frames, meta, shape, operator)
    return frames


# --- private ------------------------------------------------------------------------------


def _read_header(path: Path, operator: str) -> Dataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise ValueError(f"operator '{operator}': cannot read source DICOM file {path}: "
                         f"{exc}") from exc
    for keyword in _TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _frame(ds: Dataset, number: Any, k: int, meta: VolumeMeta, operator: str) -> SourceFrame:
    """Slice ``k``'s source: frame ``number`` (1-based) of ``ds``, or ``ds`` itself."""
    count = int(ds.get("NumberOfFrames", 1) or 1)
    where = f"meta.files[{k}] ({meta.files[k]})"
    if number is None and count > 1:
        raise ValueError(f"operator '{operator}': {where} is a multi-frame image of {count} "
                         f"frames but meta.source has no FrameNumbers saying which frame is "
                         f"slice {k}; load the series with DicomSeriesLoaderOp")
    if number is not None and not 1 <= int(number) <= count:
        raise ValueError(f"operator '{operator}': meta.source FrameNumbers[{k}] is {number} "
                         f"but {where} has {count} frame(s)")
    index = 0 if number is None else int(number) - 1
    groups = _groups(ds, index, operator, where)
    orientation = _value(groups, ds, "PlaneOrientationSequence", "ImageOrientationPatient")
    if orientation is None:
        direction = np.asarray(meta.direction, dtype=float)
        orientation = [*direction[:, 0], *direction[:, 1]]
    if count == 1:
        position = _value(groups, ds, "PlanePositionSequence", "ImagePositionPatient")
    else:  # the top-level position of a multi-frame image is at most its first frame's
        position = _value(groups[:1], None, "PlanePositionSequence", "ImagePositionPatient")
        if position is None:
            position = _classic_position(ds, index, count, orientation)
    if position is None:
        position = (meta.affine_lps @ np.array([0.0, 0.0, k, 1.0]))[:3]
    spacing = _value(groups, ds, "PixelMeasuresSequence", "PixelSpacing") or meta.spacing[1:]
    thickness = _value(groups, ds, "PixelMeasuresSequence", "SliceThickness")
    return SourceFrame(dataset=ds, frame=None if count == 1 else int(index + 1),
                       position=_ds(position), orientation=_ds(orientation),
                       pixel_spacing=_ds(spacing),
                       slice_thickness="" if thickness is None else thickness)


def _ds(values: Any) -> tuple[Any, ...]:
    """The source's DS values as they are; numbers from ``meta`` as DICOM decimal strings."""
    return tuple(v if isinstance(v, str | DSfloat | DSdecimal) else format_number_as_ds(float(v))
                 for v in values)


def _groups(ds: Dataset, index: int, operator: str, where: str) -> tuple[Any, ...]:
    """The per-frame functional group of frame ``index`` and the shared one (or ``None``)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    if per_frame and index >= len(per_frame):
        raise ValueError(f"operator '{operator}': {where} has {len(per_frame)} per-frame "
                         f"functional groups, none for frame {index + 1}")
    return (per_frame[index] if per_frame else None, shared[0] if shared else None)


def _classic_position(ds: Dataset, index: int, count: int, orientation: Any) -> Any:
    """Frame ``index``'s position in a multi-frame image without per-frame positions: its
    ImagePositionPatient moved GridFrameOffsetVector[index] along the normal (an RT Dose grid),
    else ``None``."""
    origin, offsets = ds.get("ImagePositionPatient"), ds.get("GridFrameOffsetVector")
    if origin is None or offsets is None or len(offsets) != count:
        return None
    cosines = np.asarray(orientation, dtype=float)
    normal = np.cross(cosines[:3], cosines[3:6])
    return np.asarray(origin, dtype=float) + float(offsets[index]) * normal


def _value(groups: tuple[Any, ...], ds: Dataset | None, group: str, keyword: str) -> Any:
    for box in groups:
        if box is None or group not in box:
            continue
        seq = box[group].value
        if len(seq) and keyword in seq[0] and seq[0][keyword].value not in (None, ""):
            return seq[0][keyword].value
    value = None if ds is None else ds.get(keyword)
    return None if value in (None, "") else value


def _check_sources(frames: list[SourceFrame], meta: VolumeMeta, shape: Sequence[int],
                   operator: str) -> None:
    for k, source in enumerate(frames):
        ds = source.dataset
        size = (int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0)))
        if size != tuple(shape[1:]):
            raise ValueError(f"operator '{operator}': source slice {k} ({meta.files[k]}) is "
                             f"{size[0]}x{size[1]} but the mask slices are "
                             f"{shape[1]}x{shape[2]}")
    first = frames[0].dataset
    series = {str(f.dataset.SeriesInstanceUID) for f in frames}
    if len(series) != 1:
        raise ValueError(f"operator '{operator}': meta.files mix {len(series)} series: "
                         f"{', '.join(sorted(series))}")
    if not first.get("FrameOfReferenceUID"):
        raise ValueError(f"operator '{operator}': source {meta.files[0]} has no "
                         "FrameOfReferenceUID; a SEG placed in patient space needs the "
                         "source's frame of reference")
    expected = meta.source.get("SOPInstanceUIDs")
    if expected:
        for k, (source, uid) in enumerate(zip(frames, expected, strict=False)):
            if source.sop_instance_uid != str(uid):
                raise ValueError(f"operator '{operator}': meta.files[{k}] ({meta.files[k]}) is "
                                 f"SOP instance {source.sop_instance_uid}, but meta.source "
                                 f"lists {uid} for slice {k}")
    seen: dict[tuple[str, int | None], int] = {}
    for k, source in enumerate(frames):
        key = (source.sop_instance_uid, source.frame)
        if key in seen:
            frame = "" if source.frame is None else f" frame {source.frame}"
            raise ValueError(f"operator '{operator}': slices {seen[key]} and {k} both come "
                             f"from SOP instance {key[0]}{frame} ({meta.files[k]})")
        seen[key] = k

"""A BINARY DICOM Segmentation dataset built with pydicom alone (no highdicom).

:func:`segmentation_dataset` writes the modules highdicom's ``Segmentation`` writes for a label
map over a source series of single-frame or multi-frame images (Patient, General Study, General
Series, Frame of Reference, General Equipment, Enhanced General Equipment, Image Pixel,
Segmentation Image, Multi-frame Functional Groups, Multi-frame Dimension, Common Instance
Reference, SOP Common): one frame per segment and source slice where the segment is present
(every slice when the mask is empty), dimensions (Referenced Segment Number, Image Position
Patient), per-frame source references and plane positions, pixel measures and orientation
shared. highdicom checks every attribute against the standard's tables on each call, and the
first call of a process reads those tables (0.3 s of JSON) after importing highdicom (0.2 s):
the reason this module exists. The result is read back by highdicom and passes dciodvfy
(``tests/integration/test_output_ops``, ``test_seg_multiframe``).

Multi-frame sources (Enhanced CT/MR: a :class:`~._seg_sources.SourceFrame` with a ``frame``):
each SEG frame's DerivationImageSequence references the source frame it was computed on
(ReferencedSOPInstanceUID + ReferencedFrameNumber) and takes that frame's plane position; the
instance-level SourceImageSequence lists each source instance once, with ReferencedFrameNumber
only when the volume used some of its frames, not all (Type 1C in the Image SOP Instance
Reference Macro); the Common Instance Reference lists each instance once.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from clara_rt.operators.output._seg_sources import SourceFrame

__all__ = ["SEGMENTATION_STORAGE", "segmentation_dataset"]

SEGMENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.4")
_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                  "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
                  "StudyInstanceUID")
_AI = ("123110", "DCM", "Artificial Intelligence")
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
_SEGMENTATION = ("113076", "DCM", "Segmentation")


def segmentation_dataset(sources: Sequence[SourceFrame], labels: np.ndarray,
                         segments: Sequence[tuple[str, Any, Any]], *, empty: bool,
                         algorithm: tuple[str, str], series: tuple[str, int],
                         manufacturer: str, software_versions: str) -> Dataset:
    """Return the SEG of ``labels`` (``[k, j, i]``, segment numbers ``1..N``, 0 background).

    Args:
        sources: The source slice (image or frame) of each slice of ``labels``, in order.
        labels: Segment numbers per voxel.
        segments: ``(label, category code, type code)`` of segments ``1..N``; codes are pydicom
            ``Code`` or highdicom ``CodedConcept`` objects.
        empty: No segment is present: write every slice as an empty frame of each segment.
        algorithm: ``(name, version)`` of the segmentation algorithm (type AUTOMATIC).
        series: ``(SeriesDescription, SeriesNumber)``.
        manufacturer: Manufacturer and ManufacturerModelName.
        software_versions: SoftwareVersions.
    """
    first = sources[0].dataset
    ds = _header(first, series, manufacturer, software_versions)
    ds.ReferencedSeriesSequence = [_item(SeriesInstanceUID=first.SeriesInstanceUID,
                                         ReferencedInstanceSequence=_refs(sources))]
    ds.SourceImageSequence = _refs(sources, frames=True)
    frames = [(number, k) for number in range(1, len(segments) + 1)
              for k in range(labels.shape[0]) if empty or (labels[k] == number).any()]
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = labels.shape[1], labels.shape[2]
    ds.SegmentSequence = [_segment(number, label, category, kind, algorithm)
                          for number, (label, category, kind) in enumerate(segments, start=1)]
    ds.SharedFunctionalGroupsSequence = [_shared(sources, len(segments))]
    ds.PerFrameFunctionalGroupsSequence = [_per_frame(sources[k], number, k, len(segments))
                                           for number, k in frames]
    bits = np.stack([labels[k] == number for number, k in frames]) if frames else np.zeros(0)
    packed = np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little").tobytes()
    ds.PixelData = packed + b"\0" * (len(packed) % 2)
    ds["PixelData"].VR = "OB"
    return ds


# --- private ------------------------------------------------------------------------------


def _header(first: Dataset, series: tuple[str, int], manufacturer: str,
            software_versions: str) -> Dataset:
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = SEGMENTATION_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = SEGMENTATION_STORAGE
    ds.ContentDate, ds.ContentTime = date, time
    for keyword in _PATIENT_STUDY:
        setattr(ds, keyword, first.get(keyword, ""))
    ds.Modality = "SEG"
    ds.Manufacturer = ds.ManufacturerModelName = manufacturer
    ds.SeriesDescription, ds.SeriesNumber = series
    ds.DeviceSerialNumber, ds.SoftwareVersions = "0", software_versions
    ds.SeriesInstanceUID, ds.InstanceNumber = generate_uid(), 1
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    organization = generate_uid()
    ds.DimensionOrganizationSequence = [_item(DimensionOrganizationUID=organization)]
    ds.DimensionIndexSequence = [
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x0062000B,
              FunctionalGroupPointer=0x0062000A,
              DimensionDescriptionLabel="Referenced Segment Number"),
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00200032,
              FunctionalGroupPointer=0x00209113,
              DimensionDescriptionLabel="Image Position Patient")]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.LossyImageCompression = "00"
    ds.SegmentationType, ds.SegmentsOverlap = "BINARY", "NO"
    ds.ContentLabel, ds.ContentDescription = f"{first.get('Modality', 'CT')}_SEG", ""
    ds.PresentationLUTShape = "IDENTITY"
    return ds


def _segment(number: int, label: str, category: Any, kind: Any,
             algorithm: tuple[str, str]) -> Dataset:
    name, version = algorithm
    return _item(
        SegmentedPropertyCategoryCodeSequence=[_code(category)], SegmentNumber=number,
        SegmentLabel=label,
        SegmentationAlgorithmIdentificationSequence=[_item(
            AlgorithmFamilyCodeSequence=[_code(_AI)], AlgorithmVersion=version,
            AlgorithmName=name)],
        SegmentAlgorithmType="AUTOMATIC", SegmentAlgorithmName=name,
        SegmentedPropertyTypeCodeSequence=[_code(kind)])


def _shared(sources: Sequence[SourceFrame], n_segments: int) -> Dataset:
    first = sources[0]
    measures = _item(SliceThickness=first.slice_thickness,
                     PixelSpacing=list(first.pixel_spacing))
    if len(sources) > 1:
        a, b = (np.asarray(s.position, dtype=float) for s in sources[:2])
        spacing = float(np.linalg.norm(b - a))
        measures.SpacingBetweenSlices = format_number_as_ds(spacing)
    shared = _item(PlaneOrientationSequence=[_item(
        ImageOrientationPatient=list(first.orientation))],
        PixelMeasuresSequence=[measures])
    if n_segments == 1:
        shared.SegmentIdentificationSequence = [_item(ReferencedSegmentNumber=1)]
    return shared


def _per_frame(source: SourceFrame, number: int, k: int, n_segments: int) -> Dataset:
    reference = _item(ReferencedSOPClassUID=source.sop_class_uid,
                      ReferencedSOPInstanceUID=source.sop_instance_uid,
                      SpatialLocationsPreserved="YES",
                      PurposeOfReferenceCodeSequence=[_code(_SOURCE_PURPOSE)])
    if source.frame is not None:
        reference.ReferencedFrameNumber = source.frame
    frame = _item(
        DerivationImageSequence=[_item(SourceImageSequence=[reference],
                                       DerivationCodeSequence=[_code(_SEGMENTATION)])],
        FrameContentSequence=[_item(DimensionIndexValues=[number, k + 1])],
        PlanePositionSequence=[_item(ImagePositionPatient=list(source.position))])
    if n_segments > 1:
        frame.SegmentIdentificationSequence = [_item(ReferencedSegmentNumber=number)]
    return frame


def _refs(sources: Sequence[SourceFrame], *, frames: bool = False) -> list[Dataset]:
    """One reference per source instance (first-use order); with ``frames``, the frames used
    of a multi-frame instance when they are not all of its frames."""
    used: dict[str, list[SourceFrame]] = {}
    for source in sources:
        used.setdefault(source.sop_instance_uid, []).append(source)
    refs = []
    for uid, group in used.items():
        ref = _item(ReferencedSOPClassUID=group[0].sop_class_uid, ReferencedSOPInstanceUID=uid)
        numbers = sorted({s.frame for s in group if s.frame is not None})
        if frames and numbers and len(numbers) < group[0].frames_in_instance:
            ref.ReferencedFrameNumber = numbers
        refs.append(ref)
    return refs


def _code(code: Any) -> Dataset:
    """A code sequence item from a pydicom ``Code``, a highdicom ``CodedConcept`` or a tuple."""
    if isinstance(code, tuple):
        value, scheme, meaning, version = (*code, None)[:4]
    else:
        value, scheme, meaning = code.value, code.scheme_designator, code.meaning
        version = getattr(code, "scheme_version", None)
    item = Dataset()
    if str(value).startswith(("urn:", "http")):
        item.URNCodeValue = value
    elif len(str(value)) > 16:
        item.LongCodeValue = value
    else:
        item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    if version:
        item.CodingSchemeVersion = version
    item.CodeMeaning = meaning
    return item


def _item(**elements: Any) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)  # a list of datasets becomes a sequence
    return item

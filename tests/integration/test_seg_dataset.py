"""The SEG built with pydicom (operators/output/_seg_dataset.py) against highdicom's own.

For the same sources, mask and segments, the dataset must hold the attributes highdicom's
``Segmentation`` writes (recursively, same keywords; same values but for UIDs, dates and times)
except the optional Contributing Equipment, and decode (with highdicom) to the same frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from clara_rt.operators.io import load_series
from clara_rt.operators.output._seg_dataset import segmentation_dataset
from clara_rt.operators.output._seg_sources import read_source_frames
from clara_rt.operators.output.dicom_seg import segment_codes
from tests.data.chest_dicom import write_chest_series
from tests.integration.test_dicom_multiframe import enhanced_ct

# new UIDs and times; Contributing Equipment and the 3D organisation (both Type 3) are left out
_VOLATILE = {"SOPInstanceUID", "MediaStorageSOPInstanceUID", "SeriesInstanceUID",
             "DimensionOrganizationUID", "InstanceCreationDate", "InstanceCreationTime",
             "ContentDate", "ContentTime", "ContributingEquipmentSequence",
             "DimensionOrganizationType"}


def _tree(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for element in ds:
        if element.keyword in _VOLATILE or element.keyword == "PixelData":
            continue
        if element.VR == "SQ":
            out[element.keyword] = [_tree(item) for item in element.value]
        else:
            value = element.value
            out[element.keyword] = (list(value) if isinstance(value, pydicom.multival.MultiValue)
                                    else "" if value is None else value)
    return out


def _frames(items: list[dict[str, Any]]) -> list[str]:
    for item in items:
        item["FrameContentSequence"][0]["DimensionIndexValues"] = None
    return sorted(map(str, items))


def _ours(sources: list[Any], mask: np.ndarray, segments: list[tuple[Any, ...]]) -> Dataset:
    """The SEG under test: clara-rt's pydicom writer."""
    return segmentation_dataset(sources, mask, segments, empty=False,
                                algorithm=("clara-rt", "1.0"), series=("lungs", 900),
                                manufacturer="clara-rt", software_versions="clara-rt 1.0")


def _highdicoms(source_images: list[Dataset], pixel_array: np.ndarray,
                segments: list[tuple[Any, ...]]) -> Dataset:
    """The reference: highdicom's ``Segmentation`` with the same algorithm, series and device."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name="clara-rt", family=codes.cid7162.ArtificialIntelligence, version="1.0")
    return hd.seg.Segmentation(
        source_images=source_images, pixel_array=pixel_array, segmentation_type="BINARY",
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=n, segment_label=name, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm)
            for n, (name, category, kind) in enumerate(segments, start=1)],
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="clara-rt", manufacturer_model_name="clara-rt",
        software_versions="clara-rt 1.0", device_serial_number="0", series_description="lungs",
        omit_empty_frames=True)


def _assert_same_tree(ours: Dataset, theirs: Dataset) -> None:
    """The same attributes and values (but for _VOLATILE), and the same frames, perhaps in
    another order (and so with other dimension index values)."""
    mine, reference = _tree(ours), _tree(theirs)
    key = "PerFrameFunctionalGroupsSequence"
    assert _frames(mine.pop(key)) == _frames(reference.pop(key))
    assert mine == reference


@pytest.mark.parametrize("labels", [{1: "Lung"}, {1: "Lung", 2: "Bone tissue"}])
def test_same_attributes_and_frames_as_highdicom(tmp_path: Path, labels: dict[int, str]) -> None:
    write_chest_series(tmp_path / "ct", shape=(10, 40, 40))
    volume, meta = load_series(tmp_path / "ct")
    mask = np.where(volume < -500, 1, 0).astype(np.uint8)
    if len(labels) == 2:
        mask[volume > 200] = 2
    mask[:2] = 0  # slices without any segment: no frames
    sources = read_source_frames(meta, mask.shape, "seg")
    segments = [(name, *segment_codes(name)) for name in labels.values()]
    ours = _ours(sources, mask, segments)
    _assert_same_tree(ours, _highdicoms([s.dataset for s in sources], mask, segments))
    path = tmp_path / "ours.dcm"
    ours.save_as(path, enforce_file_format=True)
    uids = meta.source["SOPInstanceUIDs"]
    decoded = hd.seg.segread(path).get_pixels_by_source_instance(
        uids, assert_missing_frames_are_empty=True)
    for number in range(1, len(labels) + 1):
        np.testing.assert_array_equal(decoded[..., number - 1], mask == number)


def test_multiframe_source_same_attributes_and_frames_as_highdicom(tmp_path: Path) -> None:
    """An Enhanced CT source (frames shuffled): the same SEG as highdicom's, frame references
    (ReferencedFrameNumber) and positions included."""
    files = write_chest_series(tmp_path / "ct", shape=(10, 40, 40))
    order = [int(k) for k in np.random.default_rng(3).permutation(10)]
    path = enhanced_ct(files, tmp_path / "multi", order=order)
    volume, meta = load_series(tmp_path / "multi")
    mask = np.where(volume < -500, 1, 0).astype(np.uint8)
    mask[:2] = 0
    sources = read_source_frames(meta, mask.shape, "seg")
    assert [s.frame for s in sources] == meta.source["FrameNumbers"]
    segments = [("Lung", *segment_codes("Lung"))]
    ours = _ours(sources, mask, segments)
    # highdicom takes the multi-frame image itself and a mask in its frame order
    by_frame = mask[np.argsort(meta.source["FrameNumbers"])]
    _assert_same_tree(ours, _highdicoms([sources[0].dataset], by_frame, segments))
    out = tmp_path / "ours.dcm"
    ours.save_as(out, enforce_file_format=True)
    decoded = hd.seg.segread(out).get_pixels_by_source_frame(
        str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID),
        meta.source["FrameNumbers"], assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(decoded[..., 0], mask == 1)

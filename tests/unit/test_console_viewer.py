"""The viewer's facts (issue 17.8): orientation marks, segment names from a SEG, default window,
patient line. Real DICOM SEG files written with pydicom; no server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from clara_rt.definition import parse_definition
from clara_rt.server.console.render import orientation_marks
from clara_rt.server.console.segments import SEG_SOP_CLASS, segment_names
from clara_rt.server.console.viewer import default_window, viewer_info
from clara_rt.server.console.volumes import JobVolumes

LUNG_PIPELINE = Path(__file__).resolve().parents[2] / "examples" / "ct-lung-seg" / "pipeline.yaml"


def test_orientation_marks_follow_the_direction_cosines() -> None:
    supine = np.eye(3)  # i -> L, j -> P, k -> S (head first)
    assert orientation_marks(supine, "axial") == {"top": "A", "bottom": "P", "left": "R",
                                                  "right": "L"}
    assert orientation_marks(supine, "sagittal") == {"top": "S", "bottom": "I", "left": "A",
                                                     "right": "P"}
    feet_first = np.diag([1.0, 1.0, -1.0])  # k runs to the feet: the view is not flipped
    assert orientation_marks(feet_first, "coronal", head_up=False) == {
        "top": "S", "bottom": "I", "left": "R", "right": "L"}
    prone = np.diag([-1.0, -1.0, 1.0])
    assert orientation_marks(prone, "axial") == {"top": "P", "bottom": "A", "left": "L",
                                                 "right": "R"}
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    oblique = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    assert orientation_marks(oblique, "axial")["right"] == "LP"
    assert orientation_marks(None, "axial") is None


@pytest.mark.parametrize(("modality", "pipeline", "segments", "window"), [
    ("CT", "ct-lung-seg", [], "lung"),
    ("CT", "organs", ["Left lung", "Liver"], "lung"),
    ("CT", "spine-seg", [], "bone"),
    ("CT", "ct-brain", [], "brain"),
    ("CT", "liver-seg", ["Liver"], "soft"),
    ("MR", "lung-mr", ["Lung"], "auto"),
    (None, "ct-lung-seg", [], "auto"),
])
def test_default_window_by_modality_pipeline_and_segments(
        modality: str | None, pipeline: str, segments: list[str], window: str) -> None:
    assert default_window(modality, pipeline, segments) == window


def _write_seg(path: Path, segments: dict[int, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SEG_SOP_CLASS, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SEG_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.Modality = "SEG"
    items = []
    for number, label in segments.items():
        item = Dataset()
        item.SegmentNumber, item.SegmentLabel = number, label
        items.append(item)
    ds.SegmentSequence = items
    ds.save_as(path, enforce_file_format=True)


def test_segment_names_come_from_the_seg_written_from_the_same_output(tmp_path: Path) -> None:
    definition = parse_definition(LUNG_PIPELINE)
    _write_seg(tmp_path / "seg-writer" / "seg.dcm", {1: "Lung"})
    (tmp_path / "volumes").mkdir()
    (tmp_path / "volumes" / "stats.json").write_text("{}")
    results = [("seg-writer/seg.dcm", (tmp_path / "seg-writer" / "seg.dcm").stat().st_size),
               ("volumes/stats.json", 2)]
    maps = ["nifti-writer/path.nii.gz", "lung-seg/body.npy"]
    # nifti-writer and seg-writer both take largest.mask; lung-seg.body feeds no SEG.
    assert segment_names(definition, tmp_path, results, maps) == {
        "nifti-writer/path.nii.gz": {1: "Lung"}}
    assert segment_names(None, tmp_path, results, maps) == {}
    assert pydicom.dcmread(tmp_path / "seg-writer" / "seg.dcm").Modality == "SEG"


def test_viewer_info_names_segments_and_hides_only_identifiers() -> None:
    found = JobVolumes(np.zeros((4, 5, 6), np.int16), (2.5, 0.7, 0.7), True, "input DICOM series",
                       "CT", (0.0, 100.0), labels={"nifti-writer/path.nii.gz":
                                                   np.ones((4, 5, 6), np.uint8)},
                       direction=np.eye(3),
                       patient={"PatientName": "Phantom^Chest", "PatientID": "P1",
                                "StudyDate": "20240102"},
                       names={"nifti-writer/path.nii.gz": {1: "Lung"}})
    info = viewer_info(found, "chest")
    assert info["window"] == "lung"  # from the segment's name
    [(rel, values, _colors, names)] = info["labels"]
    assert (rel, values, names) == ("nifti-writer/path.nii.gz", [1], ["Lung"])
    assert info["marks"]["axial"] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert info["patient"] == [("Patient", "Phantom Chest", True), ("ID", "P1", True),
                               ("Study date", "2024-01-02", False)]

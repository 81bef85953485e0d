"""A DICOM SEG over a multi-frame source (issue 17.7 follow-up): frames reference source frames.

The chest phantom is written as a single-frame CT series and as one Enhanced CT file of the same
slices (frames shuffled, geometry only in the functional groups). ct-lung-seg runs on both with
``clara-rt run``; the SEG of the Enhanced CT must reference, frame by frame, the source frame it
was computed on (ReferencedSOPInstanceUID + ReferencedFrameNumber) at that frame's position, in
its frame of reference, decode (highdicom) to the same masks as the single-frame run's SEG, and
pass dciodvfy; the console viewer loads the Enhanced CT input and the masks, and the DICOM
adapter (``clara-rt dicom``, a real ``clara-rt serve`` and Orthanc) turns a storescu push of it
into a SEG at the PACS that references its frames, and the server's viewer shows that job
(input series, legend named by the SEG). A volume of some frames only lists them in
SourceImageSequence; a meta that does not say which frame a slice is, or names a frame the file
lacks, is refused.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest

from clara_rt import OperatorError, Pipeline, Runtime
from clara_rt.bench import checkout_env
from clara_rt.operators.io import load_series
from clara_rt.operators.output import DicomSegWriterOp
from clara_rt.operators.volume import VolumeMeta
from clara_rt.server.console.volumes import load_job_volumes
from tests.conftest import need_peer
from tests.data.chest_dicom import write_chest_series
from tests.dicom_peers import free_port, orthanc, storescu
from tests.e2e.test_dicom_to_pacs import TOKEN, _adapter, _download, _find_seg, _write_config
from tests.integration.test_dicom_multiframe import enhanced_ct
from tests.server_process import ServerProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
SHAPE = (16, 64, 64)
ORDER = [int(k) for k in np.random.default_rng(11).permutation(SHAPE[0])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ct-lung-seg run with ``clara-rt run`` on the single-frame and the Enhanced CT input."""
    root = tmp_path_factory.mktemp("mf")
    files = write_chest_series(root / "single", shape=SHAPE)
    enhanced_ct(files, root / "multi", order=ORDER)
    for name in ("single", "multi"):
        proc = subprocess.run([sys.executable, "-m", "clara_rt.cli", "run", str(PIPELINE),
                               "--input", str(root / name), "--output", str(root / f"{name}.out")],
                              cwd=ROOT, env=checkout_env(), capture_output=True, text=True,
                              timeout=180, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"root": root, "single": root / "single", "multi": root / "multi" / "enhanced.dcm",
            "single_seg": root / "single.out" / "seg-writer" / "seg.dcm",
            "multi_seg": root / "multi.out" / "seg-writer" / "seg.dcm"}


def _frame_positions(path: Path) -> dict[int, list[float]]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {n: [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
            for n, group in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1)}


def test_ct_lung_seg_on_enhanced_ct_references_each_source_frame(runs: dict[str, Path]) -> None:
    source = pydicom.dcmread(runs["multi"], stop_before_pixels=True)
    seg = pydicom.dcmread(runs["multi_seg"])
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    (instance,) = series.ReferencedInstanceSequence  # one instance, listed once
    assert instance.ReferencedSOPInstanceUID == source.SOPInstanceUID
    (image,) = seg.SourceImageSequence  # all 16 frames used: no frame list (Type 1C)
    assert image.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert image.ReferencedSOPClassUID == source.SOPClassUID
    assert "ReferencedFrameNumber" not in image
    positions = _frame_positions(runs["multi"])
    referenced = []
    for frame in seg.PerFrameFunctionalGroupsSequence:
        (ref,) = frame.DerivationImageSequence[0].SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        number = int(ref.ReferencedFrameNumber)
        referenced.append(number)
        seg_position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(seg_position, positions[number], atol=1e-4)
    assert len(set(referenced)) == len(referenced) > 0
    # frame n of the Enhanced CT holds slice ORDER[n - 1]: the SEG's frames are in slice order
    slices = [ORDER[n - 1] for n in referenced]
    assert slices == sorted(slices)


def test_enhanced_ct_seg_decodes_like_the_single_frame_one(runs: dict[str, Path]) -> None:
    _, single_meta = load_series(runs["single"])
    single = hd.seg.segread(runs["single_seg"]).get_pixels_by_source_instance(
        single_meta.source["SOPInstanceUIDs"], assert_missing_frames_are_empty=True)
    assert single[..., 0].sum() > 1000
    uid = str(pydicom.dcmread(runs["multi"], stop_before_pixels=True).SOPInstanceUID)
    numbers = [ORDER.index(k) + 1 for k in range(SHAPE[0])]  # slice k -> its frame
    multi = hd.seg.segread(runs["multi_seg"]).get_pixels_by_source_frame(
        uid, numbers, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(multi, single)


def test_enhanced_ct_seg_passes_dciodvfy(runs: dict[str, Path]) -> None:
    dciodvfy = shutil.which("dciodvfy")
    need_peer(dciodvfy is not None, "dciodvfy (dicom3tools)")
    assert dciodvfy is not None
    proc = subprocess.run([dciodvfy, str(runs["multi_seg"])], capture_output=True, text=True,
                          check=False)
    report = proc.stdout + proc.stderr
    assert "Segmentation" in report
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report


def test_viewer_shows_the_enhanced_ct_and_its_masks(runs: dict[str, Path]) -> None:
    output = runs["root"] / "multi.out"
    results = [(p.relative_to(output).as_posix(), p.stat().st_size)
               for p in sorted(output.rglob("*")) if p.is_file() and ".clara-rt" not in str(p)]
    volumes = load_job_volumes([runs["multi"].parent], output, results)
    single, _ = load_series(runs["single"])
    np.testing.assert_array_equal(volumes.image, single)
    assert "nifti-writer/path.nii.gz" in volumes.labels
    assert volumes.labels["nifti-writer/path.nii.gz"].shape == SHAPE


def test_adapter_turns_an_enhanced_ct_push_into_a_seg_at_the_pacs(runs: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    need_peer(importlib.util.find_spec("pynetdicom") is not None, "pynetdicom")
    source = pydicom.dcmread(runs["multi"], stop_before_pixels=True)
    port = free_port()
    with orthanc(tmp_path / "orthanc") as pacs, ServerProcess(
            tmp_path / "data", "--workers", "2", token=TOKEN) as server:
        server.client().create_pipeline(PIPELINE)
        config = _write_config(tmp_path, port, destination=(pacs.aet, pacs.port))
        with _adapter(config, server.url, port, tmp_path / "adapter.log"):
            sent = storescu(port, runs["multi"].parent)
            assert sent.returncode == 0, sent.stderr
            seg_id = wait_for(lambda: _find_seg(pacs), 90, "a SEG in Orthanc")
            seg = pydicom.dcmread(_download(pacs, seg_id, tmp_path / "seg.dcm"))
        [job] = server.client().list_jobs()
        with urllib.request.urlopen(f"{server.url}/console/jobs/{job['id']}/viewer",
                                    timeout=30) as page:
            viewer = page.read().decode()
        with urllib.request.urlopen(f"{server.url}/console/jobs/{job['id']}/view.png"
                                    f"?plane=coronal", timeout=30) as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "</svg> Lung</span>" in viewer and "input DICOM series" in viewer, viewer
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    positions = _frame_positions(runs["multi"])
    for frame in seg.PerFrameFunctionalGroupsSequence:
        (ref,) = frame.DerivationImageSequence[0].SourceImageSequence
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0]
                                    .ImagePositionPatient],
                                   positions[int(ref.ReferencedFrameNumber)], atol=1e-4)


# --- the writer on a meta built from the Enhanced CT --------------------------------------------


def _write(meta: VolumeMeta, mask: np.ndarray, workspace: Path) -> Path:
    p = Pipeline("seg-mf")
    p.add(DicomSegWriterOp("seg", labels={1: "Lung"}))
    with Runtime(workers=1) as rt:
        out: dict[str, Any] = rt.submit(p, {"seg.mask": mask, "seg.meta": meta}, timeout=60,
                                        workspace=workspace).result()
    return Path(out["seg.seg"])


@pytest.fixture
def multiframe(tmp_path: Path) -> tuple[np.ndarray, VolumeMeta]:
    files = write_chest_series(tmp_path / "single", shape=(8, 32, 32))
    enhanced_ct(files, tmp_path / "multi", order=[3, 0, 6, 1, 7, 2, 5, 4])
    volume, meta = load_series(tmp_path / "multi")
    return (volume < -500).astype(np.uint8), meta


def test_seg_of_some_frames_lists_them(multiframe: tuple[np.ndarray, VolumeMeta],
                                       tmp_path: Path) -> None:
    mask, meta = multiframe
    kept = slice(2, 6)
    part = replace(meta, files=meta.files[kept], source={
        **meta.source, "SOPInstanceUIDs": meta.source["SOPInstanceUIDs"][kept],
        "FrameNumbers": meta.source["FrameNumbers"][kept]})
    seg = pydicom.dcmread(_write(part, mask[kept], tmp_path / "job"))
    (image,) = seg.SourceImageSequence
    assert list(image.ReferencedFrameNumber) == sorted(meta.source["FrameNumbers"][kept])
    used = {int(f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
            for f in seg.PerFrameFunctionalGroupsSequence}
    assert used <= set(meta.source["FrameNumbers"][kept])


def test_multiframe_meta_without_frame_numbers_is_refused(
        multiframe: tuple[np.ndarray, VolumeMeta], tmp_path: Path) -> None:
    mask, meta = multiframe
    source = {k: v for k, v in meta.source.items() if k != "FrameNumbers"}
    with pytest.raises(OperatorError) as info:
        _write(replace(meta, source=source), mask, tmp_path / "job")
    assert str(info.value.__cause__) == (
        f"operator 'seg': meta.files[0] ({meta.files[0]}) is a multi-frame image of 8 frames "
        "but meta.source has no FrameNumbers saying which frame is slice 0; load the series "
        "with DicomSeriesLoaderOp")
    assert not list((tmp_path / "job").rglob("*.dcm*"))


@pytest.mark.parametrize(("numbers", "message"), [
    ([1, 2, 3, 4, 5, 6, 7, 9], r"FrameNumbers\[7\] is 9 but meta\.files\[7\] \(.*enhanced\.dcm\) "
                               r"has 8 frame\(s\)"),
    ([1, 2, 3, 4, 5, 6, 7, 7], r"slices 6 and 7 both come from SOP instance [0-9.]+ frame 7"),
])
def test_wrong_frame_numbers_are_refused(multiframe: tuple[np.ndarray, VolumeMeta],
                                         tmp_path: Path, numbers: list[int],
                                         message: str) -> None:
    mask, meta = multiframe
    with pytest.raises(OperatorError) as info:
        _write(replace(meta, source={**meta.source, "FrameNumbers": numbers}), mask,
               tmp_path / "job")
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    assert re.search(message, str(cause)), cause


def test_frames_placed_by_grid_offsets_keep_their_positions(tmp_path: Path) -> None:
    """A multi-frame image without per-frame positions (an RT Dose-like grid: one position and
    GridFrameOffsetVector): each SEG frame is at its source frame's place, not the first's."""
    files = write_chest_series(tmp_path / "single", shape=(6, 32, 32))
    order = [4, 1, 5, 0, 3, 2]
    path = enhanced_ct(files, tmp_path / "multi", order=order)
    ds = pydicom.dcmread(path)
    positions = [[float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient]
                 for g in ds.PerFrameFunctionalGroupsSequence]
    for group in ds.PerFrameFunctionalGroupsSequence:
        del group.PlanePositionSequence
    ds.ImagePositionPatient = positions[0]
    ds.GridFrameOffsetVector = [p[2] - positions[0][2] for p in positions]  # axial: z steps
    ds.save_as(path, enforce_file_format=True)
    volume, meta = load_series(tmp_path / "multi")
    seg = pydicom.dcmread(_write(meta, np.ones(volume.shape, np.uint8), tmp_path / "job"))
    assert int(seg.NumberOfFrames) == 6
    for frame in seg.PerFrameFunctionalGroupsSequence:
        number = int(frame.DerivationImageSequence[0].SourceImageSequence[0]
                     .ReferencedFrameNumber)
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0]
                                    .ImagePositionPatient], positions[number - 1], atol=1e-4)


def test_seg_over_pydicoms_enhanced_ct(tmp_path: Path) -> None:
    """A real Enhanced CT (pydicom-data's eCT_Supplemental.dcm: 2 frames of 512x512): the SEG
    references both frames at their positions, decodes by source frame and passes dciodvfy."""
    from pydicom.data import get_testdata_file

    found = get_testdata_file("eCT_Supplemental.dcm")
    need_peer(found is not None, "pydicom-data (pip install pydicom-data)")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ect.dcm").symlink_to(str(found))
    volume, meta = load_series(tmp_path / "in")
    mask = np.zeros(volume.shape, np.uint8)
    mask[0, 100:200, 150:300] = 1
    mask[1, 250:260, 10:500] = 1
    path = _write(meta, mask, tmp_path / "job")
    source = pydicom.dcmread(str(found), stop_before_pixels=True)
    decoded = hd.seg.segread(path).get_pixels_by_source_frame(
        str(source.SOPInstanceUID), meta.source["FrameNumbers"],
        assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(decoded[..., 0], mask)
    seg = pydicom.dcmread(path)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    positions = {n: [float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient]
                 for n, g in enumerate(source.PerFrameFunctionalGroupsSequence, start=1)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        number = int(frame.DerivationImageSequence[0].SourceImageSequence[0]
                     .ReferencedFrameNumber)
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0]
                                    .ImagePositionPatient], positions[number], atol=1e-4)
    dciodvfy = shutil.which("dciodvfy")
    need_peer(dciodvfy is not None, "dciodvfy (dicom3tools)")
    assert dciodvfy is not None
    report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True,
                            check=False)
    errors = [line for line in (report.stdout + report.stderr).splitlines()
              if line.startswith("Error")]
    assert not errors, report.stdout + report.stderr


def test_series_of_two_multiframe_files(tmp_path: Path) -> None:
    """A series split over two Enhanced CT files: each instance is listed once, every SEG frame
    references its own file's frame at that frame's position."""
    files = write_chest_series(tmp_path / "single", shape=(8, 32, 32))
    parts = [enhanced_ct(files[:4], tmp_path / "multi" / "a", order=[2, 0, 3, 1]),
             enhanced_ct(files[4:], tmp_path / "multi" / "b", order=[1, 3, 0, 2])]
    volume, meta = load_series(tmp_path / "multi")
    single, _ = load_series(tmp_path / "single")
    np.testing.assert_array_equal(volume, single)
    seg = pydicom.dcmread(_write(meta, np.ones(volume.shape, np.uint8), tmp_path / "job"))
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in parts]
    listed = [i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0]
              .ReferencedInstanceSequence]
    assert sorted(listed) == sorted(uids)
    assert sorted(i.ReferencedSOPInstanceUID for i in seg.SourceImageSequence) == sorted(uids)
    assert all("ReferencedFrameNumber" not in i for i in seg.SourceImageSequence)
    positions = {uid: _frame_positions(p) for uid, p in zip(uids, parts, strict=True)}
    seen = set()
    for frame in seg.PerFrameFunctionalGroupsSequence:
        (ref,) = frame.DerivationImageSequence[0].SourceImageSequence
        number = int(ref.ReferencedFrameNumber)
        seen.add((ref.ReferencedSOPInstanceUID, number))
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0]
                                    .ImagePositionPatient],
                                   positions[ref.ReferencedSOPInstanceUID][number], atol=1e-4)
    assert len(seen) == 8

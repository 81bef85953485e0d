"""Output operators end to end: DICOM SEG and PNG renders from a generated CT series.

The source series is written here with pydicom (real CT Image Storage files, shuffled names) and
its :class:`VolumeMeta` built by hand from the headers, sorted along the slice normal, so these
tests do not depend on the DICOM loader.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

from clara_rt import Operator, OperatorError, Pipeline, Runtime
from clara_rt.operators.output import DicomSegWriterOp, RenderOp
from clara_rt.operators.output.dicom_seg import (
    SEGMENTATION_STORAGE,
    present_labels,
    save_atomic,
    segment_codes,
)
from clara_rt.operators.output.render import WINDOW_PRESETS, label_color
from clara_rt.operators.volume import VolumeMeta
from tests.conftest import need_peer
from tests.data.phantom import ct_phantom

SHAPE = (12, 64, 64)
PIXEL, THICKNESS = 0.8, 2.5


@dataclass
class Series:
    """A generated CT series: HU volume [k, j, i] and its meta (files in slice order)."""

    volume: np.ndarray
    meta: VolumeMeta


class LabelOp(Operator):
    """Toy segmentation: 1 = lung (air inside the body), 2 = bone (HU > 300)."""

    def setup(self, spec: Any) -> None:
        spec.input("image", dtype="int16", shape=(-1, -1, -1))
        spec.output("mask", dtype="uint8", shape=(-1, -1, -1))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["mask"] = phantom_labels(inputs["image"])


def phantom_labels(volume: np.ndarray) -> np.ndarray:
    """Label map of the phantom: lungs 1, spine 2."""
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[(volume < -500) & (volume > -950)] = 1
    mask[volume > 300] = 2
    return mask


def write_series(folder: Path, volume: np.ndarray) -> None:
    """Write ``volume`` as CT Image Storage files, one per slice, under shuffled names."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    names = np.random.default_rng(0).permutation(volume.shape[0])
    for k, name in enumerate(names):
        ds = _ct_slice(volume[k], k, (study, series, frame))
        ds.save_as(folder / f"IM{name:04d}", enforce_file_format=True)


def meta_from_files(folder: Path) -> VolumeMeta:
    """Build a VolumeMeta by hand: sort by position along the normal, as a loader would."""
    datasets = [(pydicom.dcmread(p, stop_before_pixels=True), str(p)) for p in folder.iterdir()]
    first = datasets[0][0]
    row, col = (np.array(first.ImageOrientationPatient[:3], float),
                np.array(first.ImageOrientationPatient[3:], float))
    normal = np.cross(row, col)
    datasets.sort(key=lambda d: float(np.dot(d[0].ImagePositionPatient, normal)))
    positions = [float(np.dot(d.ImagePositionPatient, normal)) for d, _ in datasets]
    dj, di = (float(v) for v in first.PixelSpacing)
    source = {kw: str(first.get(kw, "")) for kw in (
        "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID",
        "PatientName", "StudyDate", "Modality", "SOPClassUID")}
    source["SOPInstanceUIDs"] = [str(d.SOPInstanceUID) for d, _ in datasets]
    return VolumeMeta(
        spacing=(float(np.mean(np.diff(positions))), dj, di),
        origin=tuple(float(v) for v in datasets[0][0].ImagePositionPatient),  # type: ignore[arg-type]
        direction=tuple(tuple(float(v) for v in r) for r in np.stack([row, col, normal], 1)),
        source=source, files=tuple(p for _, p in datasets))


@pytest.fixture
def series(tmp_path: Path) -> Series:
    volume = ct_phantom(SHAPE)
    write_series(tmp_path / "dicom", volume)
    return Series(volume, meta_from_files(tmp_path / "dicom"))


def run_job(pipeline: Pipeline, payload: dict[str, Any], workspace: Path) -> dict[str, Any]:
    with Runtime(workers=2) as rt:
        return rt.submit(pipeline, payload, timeout=120, workspace=workspace).result()


def seg_pipeline(**params: Any) -> Pipeline:
    p = Pipeline("seg-out")
    p.add(DicomSegWriterOp("seg", **params))
    return p


def decode(path: Path, meta: VolumeMeta) -> np.ndarray:
    """Decode a SEG back to ``[k, j, i, segment]`` over every source slice."""
    seg = hd.seg.segread(path)
    return seg.get_pixels_by_source_instance(meta.source["SOPInstanceUIDs"],
                                             assert_missing_frames_are_empty=True)


# --- DICOM SEG --------------------------------------------------------------------------------


def test_seg_and_render_in_one_pipeline(series: Series, tmp_path: Path) -> None:
    p = Pipeline("ct-out")
    label, seg, render = (p.add(LabelOp("label")),
                          p.add(DicomSegWriterOp("seg", labels={1: "Lung", 2: "Bone tissue"})),
                          p.add(RenderOp("render", window="lung")))
    p.connect(label, "mask", seg, "mask")
    p.connect(label, "mask", render, "mask")
    out = run_job(p, {"label.image": series.volume, "render.image": series.volume,
                      "seg.meta": series.meta, "render.meta": series.meta}, tmp_path / "job")
    assert out["seg.seg"] == tmp_path / "job" / "seg" / "seg.dcm"
    assert out["render.pngs"] == tmp_path / "job" / "render"
    assert sorted(p.name for p in out["render.pngs"].iterdir()) == [
        "axial.png", "coronal.png", "mip.png", "sagittal.png"]
    mask = phantom_labels(series.volume)
    assert set(np.unique(mask)) == {0, 1, 2}
    decoded = decode(out["seg.seg"], series.meta)
    assert decoded.shape == (*SHAPE, 2)
    np.testing.assert_array_equal(decoded[..., 0], mask == 1)
    np.testing.assert_array_equal(decoded[..., 1], mask == 2)


def test_seg_references_source_series(series: Series, tmp_path: Path) -> None:
    mask = phantom_labels(series.volume)
    out = run_job(seg_pipeline(labels={1: "Lung"}, series_description="lungs"),
                  {"seg.mask": mask, "seg.meta": series.meta}, tmp_path)
    ds = pydicom.dcmread(out["seg.seg"])
    src = series.meta.source
    assert ds.SOPClassUID == SEGMENTATION_STORAGE
    assert ds.file_meta.MediaStorageSOPClassUID == SEGMENTATION_STORAGE
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.SeriesDescription == "lungs"
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert str(ds[keyword].value) == src[keyword]
    assert ds.SeriesInstanceUID != src["SeriesInstanceUID"]
    (ref,) = ds.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == src["SeriesInstanceUID"]
    referenced = {item.ReferencedSOPInstanceUID for item in ref.ReferencedInstanceSequence}
    assert referenced and referenced <= set(src["SOPInstanceUIDs"])
    assert {item.ReferencedSOPClassUID for item in ref.ReferencedInstanceSequence} == {
        CTImageStorage}
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["Lung", "Segment 2"]
    lung = ds.SegmentSequence[0]
    assert lung.SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"  # SCT Lung
    assert lung.SegmentAlgorithmType == "AUTOMATIC"
    assert lung.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "clara-rt"


def test_seg_label_numbering(series: Series, tmp_path: Path) -> None:
    """Segments are the named labels plus the present ones, renumbered 1..N in label order."""
    mask = np.zeros(SHAPE, dtype=np.uint16)
    mask[2:5, 10:20, 10:30] = 2
    mask[8, 40:50, 5:9] = 7
    out = run_job(seg_pipeline(labels={2: "Heart", 4: "Liver"}),
                  {"seg.mask": mask, "seg.meta": series.meta}, tmp_path)
    ds = pydicom.dcmread(out["seg.seg"])
    assert [(s.SegmentNumber, s.SegmentLabel) for s in ds.SegmentSequence] == [
        (1, "Heart"), (2, "Liver"), (3, "Segment 7")]
    decoded = decode(out["seg.seg"], series.meta)
    np.testing.assert_array_equal(decoded[..., 0], mask == 2)
    assert not decoded[..., 1].any()
    np.testing.assert_array_equal(decoded[..., 2], mask == 7)


def test_seg_source_without_type2_attributes(series: Series, tmp_path: Path) -> None:
    """Files that omit Type 2 patient/study attributes still give a SEG (written empty)."""
    dropped = ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
               "ReferringPhysicianName")
    for path in series.meta.files:
        ds = pydicom.dcmread(path)
        for keyword in dropped:
            delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
    mask = phantom_labels(series.volume)
    out = run_job(seg_pipeline(), {"seg.mask": mask, "seg.meta": series.meta}, tmp_path / "job")
    ds = pydicom.dcmread(out["seg.seg"])
    assert all(keyword in ds and not ds[keyword].value for keyword in dropped)
    np.testing.assert_array_equal(decode(out["seg.seg"], series.meta)[..., 0], mask == 1)


def test_seg_bool_mask(series: Series, tmp_path: Path) -> None:
    mask = series.volume > 300
    out = run_job(seg_pipeline(), {"seg.mask": mask, "seg.meta": series.meta}, tmp_path)
    decoded = decode(out["seg.seg"], series.meta)
    np.testing.assert_array_equal(decoded[..., 0], mask)


def test_seg_empty_mask_writes_all_empty_frames(series: Series, tmp_path: Path) -> None:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    out = run_job(seg_pipeline(labels={1: "Lung"}),
                  {"seg.mask": mask, "seg.meta": series.meta}, tmp_path)
    ds = pydicom.dcmread(out["seg.seg"])
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["Lung"]
    assert int(ds.NumberOfFrames) == SHAPE[0]
    assert not decode(out["seg.seg"], series.meta).any()


def test_seg_empty_mask_error_policy(series: Series, tmp_path: Path) -> None:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    with pytest.raises(OperatorError) as info:
        run_job(seg_pipeline(on_empty="error"), {"seg.mask": mask, "seg.meta": series.meta},
                tmp_path)
    assert "the mask is empty" in str(info.value.__cause__)
    assert not list(tmp_path.rglob("*.dcm*"))


def test_seg_missing_source_files(series: Series, tmp_path: Path) -> None:
    gone = [Path(series.meta.files[3]), Path(series.meta.files[7])]
    for path in gone:
        path.unlink()
    workspace = tmp_path / "job"
    with pytest.raises(OperatorError) as info:
        run_job(seg_pipeline(), {"seg.mask": phantom_labels(series.volume),
                                 "seg.meta": series.meta}, workspace)
    cause = info.value.__cause__
    assert isinstance(cause, FileNotFoundError)
    assert "2 of 12 source DICOM files are missing" in str(cause)
    assert all(str(path) in str(cause) for path in gone)
    assert not list(workspace.rglob("*.dcm*"))


@pytest.mark.parametrize(("mask_shape", "message"), [
    ((11, 64, 64), "mask has 11 slices but meta.files lists 12"),
    ((12, 64, 32), "is 64x64 but the mask slices are 64x32"),
])
def test_seg_mask_must_match_source(series: Series, tmp_path: Path,
                                    mask_shape: tuple[int, int, int], message: str) -> None:
    with pytest.raises(OperatorError) as info:
        run_job(seg_pipeline(), {"seg.mask": np.ones(mask_shape, np.uint8),
                                 "seg.meta": series.meta}, tmp_path)
    assert message in str(info.value.__cause__)


def test_seg_source_without_frame_of_reference(series: Series, tmp_path: Path) -> None:
    for path in series.meta.files:
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(OperatorError) as info:
        run_job(seg_pipeline(), {"seg.mask": phantom_labels(series.volume),
                                 "seg.meta": series.meta}, tmp_path)
    assert str(info.value.__cause__) == (
        f"operator 'seg': source {series.meta.files[0]} has no FrameOfReferenceUID; a SEG "
        "placed in patient space needs the source's frame of reference")


def test_seg_meta_without_files(series: Series, tmp_path: Path) -> None:
    meta = VolumeMeta(spacing=series.meta.spacing, origin=series.meta.origin)
    with pytest.raises(OperatorError) as info:
        run_job(seg_pipeline(), {"seg.mask": np.ones(SHAPE, np.uint8), "seg.meta": meta},
                tmp_path)
    assert "meta.files is empty" in str(info.value.__cause__)


def test_seg_needs_workspace(series: Series) -> None:
    with Runtime(workers=2) as rt, pytest.raises(OperatorError) as info:
        rt.run(seg_pipeline(), {"seg.mask": np.ones(SHAPE, np.uint8), "seg.meta": series.meta})
    assert "needs a job workspace" in str(info.value.__cause__)


def test_seg_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match=r"on_empty must be one of write, error, got 'skip'"):
        DicomSegWriterOp("seg", on_empty="skip")
    with pytest.raises(ValueError, match=r"output_name must be a plain file name"):
        DicomSegWriterOp("seg", output_name="../seg.dcm")
    with pytest.raises(ValueError, match=r"label values must be >= 1"):
        DicomSegWriterOp("seg", labels={0: "Background"})


@pytest.mark.parametrize("top", [5, 40, 300])
def test_present_labels(top: int) -> None:
    mask = np.zeros((3, 4, 5), dtype=np.uint16)
    mask[0, 0, :3], mask[2, 3, 4] = (1, 3, top - 1), top
    assert present_labels(mask) == sorted({1, 3, top - 1, top})
    assert present_labels(np.zeros((2, 2, 2), np.uint8)) == []


def test_segment_codes_by_name() -> None:
    category, prop = segment_codes("Lung")
    assert (category.meaning, prop.value) == ("Anatomical Structure", "39607008")
    category, prop = segment_codes("bone tissue")
    assert (category.meaning, prop.value) == ("Tissue", "3138006")  # SCT Bone tissue
    category, prop = segment_codes("my lesion")
    assert (category.meaning, prop.meaning) == ("Tissue", "Tissue")


def test_save_atomic_leaves_nothing_on_failure(tmp_path: Path) -> None:
    class Broken(Dataset):
        def save_as(self, fh: Any, **kwargs: Any) -> None:
            fh.write(b"partial")
            raise OSError("disk full")

    target = tmp_path / "out" / "seg.dcm"
    with pytest.raises(OSError, match="disk full"):
        save_atomic(Broken(), target)
    assert list((tmp_path / "out").iterdir()) == []


def test_seg_dcmtk_parses(series: Series, tmp_path: Path) -> None:
    dcmdump = shutil.which("dcmdump")
    need_peer(dcmdump is not None, "dcmdump (dcmtk)")
    assert dcmdump is not None
    out = run_job(seg_pipeline(labels={1: "Lung", 2: "Bone tissue"}),
                  {"seg.mask": phantom_labels(series.volume), "seg.meta": series.meta},
                  tmp_path)
    proc = subprocess.run([dcmdump, "-q", "-Un", str(out["seg.seg"])], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"(0008,0016) UI [{SEGMENTATION_STORAGE}]" in proc.stdout
    assert "(0062,0005) LO [Bone tissue]" in proc.stdout  # SegmentLabel


def test_seg_dciodvfy_no_errors(series: Series, tmp_path: Path) -> None:
    dciodvfy = shutil.which("dciodvfy")
    need_peer(dciodvfy is not None, "dciodvfy (dicom3tools)")
    assert dciodvfy is not None
    out = run_job(seg_pipeline(labels={1: "Lung", 2: "Bone tissue"}),
                  {"seg.mask": phantom_labels(series.volume), "seg.meta": series.meta},
                  tmp_path)
    proc = subprocess.run([dciodvfy, str(out["seg.seg"])], capture_output=True, text=True,
                          check=False)
    report = proc.stdout + proc.stderr
    assert "Segmentation" in report
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report


@pytest.mark.gpu
def test_seg_from_gpu_mask(series: Series, tmp_path: Path) -> None:
    import cupy

    mask = phantom_labels(series.volume)
    out = run_job(seg_pipeline(), {"seg.mask": cupy.asarray(mask), "seg.meta": series.meta},
                  tmp_path)
    decoded = decode(out["seg.seg"], series.meta)
    np.testing.assert_array_equal(decoded[..., 1], mask == 2)


# --- PNG renders ------------------------------------------------------------------------------


def render(image: Any, workspace: Path, mask: Any = None, meta: VolumeMeta | None = None,
           **params: Any) -> Path:
    p = Pipeline("render")
    p.add(RenderOp("render", **params))
    payload = {"render.image": image}
    if mask is not None:
        payload["render.mask"] = mask
    if meta is not None:
        payload["render.meta"] = meta
    return Path(run_job(p, payload, workspace)["render.pngs"])


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def test_render_sizes_follow_spacing(series: Series, tmp_path: Path) -> None:
    folder = render(series.volume, tmp_path, meta=series.meta, window="lung")
    nk, nj, ni = SHAPE
    expected = {"axial": (nj, ni), "coronal": (nk * THICKNESS / PIXEL, ni),
                "sagittal": (nk * THICKNESS / PIXEL, nj), "mip": (nk * THICKNESS / PIXEL, ni)}
    for view, (height, width) in expected.items():
        rgb = load_png(folder / f"{view}.png")
        assert rgb.shape[1] == width
        assert abs(rgb.shape[0] - height) <= 1, (view, rgb.shape)
        assert rgb.dtype == np.uint8 and rgb.shape[2] == 3


def test_render_overlay_colours(series: Series, tmp_path: Path) -> None:
    mask = phantom_labels(series.volume)
    folder = render(series.volume, tmp_path, mask=mask, meta=series.meta, window="lung",
                    alpha=0.4, colors={1: (0, 255, 0)})
    axial = load_png(folder / "axial.png").astype(int)
    k = SHAPE[0] // 2
    level, width = WINDOW_PRESETS["lung"]
    grey = np.rint(np.clip((series.volume[k] - (level - width / 2)) * 255 / width, 0, 255))
    inner = ndimage.binary_erosion(mask[k] == 1)
    j, i = np.argwhere(inner)[0]
    expected = np.rint(0.6 * grey[j, i] + 0.4 * np.array([0, 255, 0]))
    assert np.abs(axial[j, i] - expected).max() <= 1
    edge = (mask[k] == 1) & ~inner
    assert (axial[edge] == [0, 255, 0]).all()  # outline in full colour
    outside = ~ndimage.binary_dilation(mask[k] > 0)
    assert (axial[outside, 0] == axial[outside, 1]).all()
    assert (axial[outside, 1] == axial[outside, 2]).all()
    assert np.abs(axial[outside, 0] - grey[outside]).max() <= 1
    bone = ndimage.binary_erosion(mask[k] == 2)
    if bone.any():
        j, i = np.argwhere(bone)[0]
        expected = np.rint(0.6 * grey[j, i] + 0.4 * np.array(label_color(2)))
        assert np.abs(axial[j, i] - expected).max() <= 1


def test_render_mip_shows_one_bright_voxel(tmp_path: Path) -> None:
    volume = np.zeros((10, 20, 30), dtype=np.float32)
    volume[7, 4, 25] = 1000.0
    meta = VolumeMeta(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    folder = render(volume, tmp_path / "coronal", meta=meta, window=(500.0, 1000.0),
                    views=("mip",))
    mip = load_png(folder / "mip.png")[..., 0]
    assert mip.shape == (10, 30)
    assert np.argwhere(mip == 255).tolist() == [[10 - 1 - 7, 25]]  # head (high k) on top
    assert (mip[mip != 255] == 0).all()
    folder = render(volume, tmp_path / "axial", window=(500.0, 1000.0), views=("mip",),
                    mip_axis="axial")
    assert np.argwhere(load_png(folder / "mip.png")[..., 0] == 255).tolist() == [[4, 25]]


def test_render_mask_centroid_slice(tmp_path: Path) -> None:
    volume = np.zeros((20, 32, 32), dtype=np.int16)
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[3:6, 5:12, 20:28] = 1
    centered = render(volume, tmp_path / "c", mask=mask, views=("axial",), window="soft")
    assert (load_png(centered / "axial.png") == load_png(centered / "axial.png")[0, 0]).all()
    folder = render(volume, tmp_path / "m", mask=mask, views=("axial", "sagittal"),
                    window="soft", slice="mask-centroid")
    axial = load_png(folder / "axial.png")
    colored = axial[..., 0] != axial[..., 1]
    assert colored.any() and np.argwhere(colored).min(0).tolist() == [5, 20]


def test_render_without_mask_is_grey(series: Series, tmp_path: Path) -> None:
    folder = render(series.volume, tmp_path, meta=series.meta)
    for view in ("axial", "coronal", "sagittal", "mip"):
        rgb = load_png(folder / f"{view}.png")
        assert (rgb[..., 0] == rgb[..., 2]).all() and rgb.max() > rgb.min()


def test_render_replaces_previous_output(series: Series, tmp_path: Path) -> None:
    render(series.volume, tmp_path / "job", views=("axial", "mip"))
    folder = render(series.volume, tmp_path / "job", views=("coronal",))
    assert [p.name for p in folder.iterdir()] == ["coronal.png"]
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["render"]  # no staging left


def test_render_mask_shape_mismatch(tmp_path: Path) -> None:
    with pytest.raises(OperatorError) as info:
        render(np.zeros((4, 8, 8)), tmp_path, mask=np.zeros((4, 8, 9), np.uint8))
    assert "mask shape (4, 8, 9) differs from image shape (4, 8, 8)" in str(info.value.__cause__)


def test_render_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown views 'top'; valid: axial, coronal"):
        RenderOp("r", views=("axial", "top"))
    with pytest.raises(ValueError, match=r"unknown window preset 'brain'; presets are: lung"):
        RenderOp("r", window="brain")
    with pytest.raises(ValueError, match=r"unknown slice 'max'"):
        RenderOp("r", slice="max")
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        RenderOp("r", alpha=2.0)


@pytest.mark.gpu
def test_render_gpu_matches_host(series: Series, tmp_path: Path) -> None:
    import cupy

    mask = phantom_labels(series.volume)
    host = render(series.volume, tmp_path / "host", mask=mask, meta=series.meta)
    gpu = render(cupy.asarray(series.volume), tmp_path / "gpu", mask=cupy.asarray(mask),
                 meta=series.meta)
    for view in ("axial", "coronal", "sagittal", "mip"):
        np.testing.assert_array_equal(load_png(host / f"{view}.png"),
                                      load_png(gpu / f"{view}.png"))


def _ct_slice(pixels: np.ndarray, k: int, uids: tuple[str, str, str]) -> Dataset:
    study, series, frame = uids
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = (
        "CLARA-1", "Test^Phantom", "19700101", "O")
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "A1"
    ds.ReferringPhysicianName, ds.Manufacturer, ds.PositionReferenceIndicator = "", "clara-rt", ""
    ds.Modality, ds.SeriesNumber, ds.PatientPosition = "CT", 1, "HFS"
    ds.BodyPartExamined = "CHEST"
    ds.ImageType, ds.InstanceNumber, ds.KVP, ds.AcquisitionNumber = (
        ["ORIGINAL", "PRIMARY", "AXIAL"], k + 1, 120, 1)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-25.6, -25.6, -100.0 + THICKNESS * k]
    ds.PixelSpacing, ds.SliceThickness = [PIXEL, PIXEL], THICKNESS
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.int16).tobytes()
    return ds

"""The console viewer's PNG renderer and volume finder, as data in -> data out."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clara_rt.server.console.render import (
    WINDOWS,
    ViewError,
    auto_window,
    plane_length,
    render_png,
    render_view,
    resolve_window,
    to_grey,
)
from clara_rt.server.console.volumes import JobVolumes, NoVolume, VolumeCache, load_job_volumes

SPACING = (2.5, 0.7, 0.7)
FULL = (-1000.0, 2000.0)  # level, width: -2000 -> 0, 0 -> 255


def ramp(shape: tuple[int, int, int] = (24, 64, 64)) -> np.ndarray:
    """HU = 10 * k: each axial slice has its own value."""
    k = np.arange(shape[0], dtype=np.int16)[:, None, None] * 10
    return np.broadcast_to(k, shape).copy()


# --- planes, shapes, aspect -------------------------------------------------------------------


@pytest.mark.parametrize(("plane", "expected"), [
    ("axial", (64, 64, 3)),
    ("coronal", (86, 64, 3)),  # 24 slices x 2.5 mm = 60 mm over 0.7 mm pixels
    ("sagittal", (86, 64, 3)),
    ("mip", (86, 64, 3)),
])
def test_views_have_square_pixels(plane: str, expected: tuple[int, int, int]) -> None:
    rgb = render_view(ramp(), None, SPACING, plane, None, FULL)
    assert rgb.shape == expected and rgb.dtype == np.uint8


def test_unit_spacing_keeps_the_voxel_grid() -> None:
    image = np.zeros((5, 7, 9), dtype=np.int16)
    assert render_view(image, None, (1, 1, 1), "axial", 0, FULL).shape == (7, 9, 3)
    assert render_view(image, None, (1, 1, 1), "coronal", 0, FULL).shape == (5, 9, 3)
    assert render_view(image, None, (1, 1, 1), "sagittal", 0, FULL).shape == (5, 7, 3)
    assert [plane_length(image.shape, p) for p in ("axial", "coronal", "sagittal", "mip")] == [
        5, 7, 9, 1]


def test_index_picks_the_slice_and_the_head_is_up() -> None:
    image = ramp((24, 8, 8))
    window = (115.0, 230.0)  # 0 HU -> 0, 230 HU -> 255
    axial = render_view(image, None, (1, 1, 1), "axial", 5, window)
    assert np.all(axial == round(50 * 255 / 230))
    coronal = render_view(image, None, (1, 1, 1), "coronal", 3, window)
    assert coronal[0, 0, 0] == 255 and coronal[-1, 0, 0] == 0  # k = 23 (head) at the top
    feet_up = render_view(image, None, (1, 1, 1), "coronal", 3, window, head_up=False)
    assert feet_up[0, 0, 0] == 0


def test_mip_shows_the_brightest_voxel_along_the_rows() -> None:
    image = np.full((4, 6, 5), -1000, dtype=np.int16)
    image[2, 4, 3] = 1000
    mip = render_view(image, None, (1, 1, 1), "mip", None, FULL)
    bright = np.argwhere(mip[:, :, 0] == 255)
    assert bright.tolist() == [[4 - 1 - 2, 3]]  # row = flipped k, column = i


@pytest.mark.parametrize(("plane", "index"), [("axial", 24), ("axial", -1), ("coronal", 64)])
def test_index_outside_the_volume_is_refused(plane: str, index: int) -> None:
    with pytest.raises(ViewError, match=r"outside the .* plane's slices 0\.\.\d+"):
        render_view(ramp(), None, SPACING, plane, index, FULL)


def test_unknown_plane_and_mismatched_labels_are_refused() -> None:
    with pytest.raises(ViewError, match=r"unknown plane 'oblique'; planes are: axial"):
        render_view(ramp(), None, SPACING, "oblique", 0, FULL)
    with pytest.raises(ViewError, match=r"do not match the image"):
        render_view(ramp(), np.zeros((2, 2, 2), np.uint8), SPACING, "axial", 0, FULL)


# --- windows ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "black", "middle", "white"), [
    ("lung", -1350, -600, 150), ("soft", -160, 40, 240), ("bone", -500, 400, 1300),
    ("brain", 0, 40, 80),
])
def test_window_presets_map_hounsfield_units(preset: str, black: float, middle: float,
                                             white: float) -> None:
    level, width = resolve_window(preset, None, (0.0, 1.0))
    assert (level, width) == WINDOWS[preset]
    grey = to_grey(np.array([black - 100, black, middle, white, white + 100]), level, width)
    assert grey[0] == grey[1] == 0
    assert grey[2] in (127, 128)
    assert grey[3] == grey[4] == 255


def test_custom_and_auto_windows() -> None:
    assert resolve_window("lung", "400,40", (0.0, 1.0)) == (40.0, 400.0)  # wl=W,L wins
    assert resolve_window("auto", None, (7.0, 3.0)) == (7.0, 3.0)
    for bad, message in (("0,40", "positive"), ("abc", "WIDTH,LEVEL"), ("1,2,3", "WIDTH,LEVEL"),
                         ("nan,1", "positive")):
        with pytest.raises(ViewError, match=message):
            resolve_window("auto", bad, (0.0, 1.0))
    with pytest.raises(ViewError, match=r"unknown window 'liver'; windows are: lung, soft"):
        resolve_window("liver", None, (0.0, 1.0))
    values = np.linspace(-1000, 1000, 10001).reshape(1, 1, -1)
    level, width = auto_window(values)
    assert level == pytest.approx(0, abs=1) and width == pytest.approx(1980, abs=2)
    assert auto_window(np.zeros((2, 2, 2))) == (0.5, 1.0)  # flat: still a valid window


# --- overlay ----------------------------------------------------------------------------------


def test_labels_are_blended_in_their_colours_and_outlined() -> None:
    image = np.full((1, 20, 20), 100, dtype=np.int16)
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[0, 2:10, 2:10] = 1
    labels[0, 12:18, 12:18] = 2
    rgb = render_view(image, labels, (1, 1, 1), "axial", 0, (127.5, 255.0), alpha=0.4)
    grey = 100
    assert tuple(rgb[0, 0]) == (grey, grey, grey)  # no label: grey
    inside = tuple(int(v) for v in rgb[5, 5])
    assert inside == (round(0.6 * grey + 0.4 * 255), round(0.6 * grey), round(0.6 * grey))
    assert tuple(rgb[2, 5]) == (255, 0, 0)  # outline of label 1 in full red
    assert tuple(rgb[12, 14]) == (0, 200, 0)  # outline of label 2 in full green
    assert rgb[14, 14, 1] > rgb[14, 14, 0]  # label 2 is green inside too
    plain = render_view(image, None, (1, 1, 1), "axial", 0, (127.5, 255.0))
    assert np.all(plain[..., 0] == plain[..., 1])


def test_render_png_is_a_png_of_the_view() -> None:
    data = render_png(ramp(), None, SPACING, "sagittal", 10, WINDOWS["soft"])
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.size == (64, 86) and img.mode == "RGB"


# --- finding volumes --------------------------------------------------------------------------


def _nifti(path: Path, volume: np.ndarray) -> None:
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), np.eye(4)),
                 path)


def _results(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size)
                  for p in folder.rglob("*") if p.is_file())


def test_dicom_input_with_nifti_and_npy_segmentations(tmp_path: Path) -> None:
    from tests.data.chest_dicom import write_chest_series

    write_chest_series(tmp_path / "payload", shape=(8, 32, 32))
    out = tmp_path / "output"
    mask = np.zeros((8, 32, 32), np.uint8)
    mask[2:5, 10:20, 10:20] = 2
    _nifti(out / "seg" / "mask.nii.gz", mask)
    (out / "a").mkdir()
    np.save(out / "a" / "body.npy", (mask > 0).astype(np.uint8))  # sorts before seg/, still 2nd
    np.save(out / "a" / "float-labels.npy", mask.astype(np.float32))
    np.save(out / "a" / "probabilities.npy", np.random.default_rng(0).random((8, 32, 32)))
    np.save(out / "a" / "small.npy", np.zeros((4, 4, 4), np.uint8))
    (out / "notes.txt").write_text("not a volume")
    found = load_job_volumes([tmp_path / "payload"], out, _results(out))
    assert found.source == "input DICOM series" and found.modality == "CT"
    assert found.image.shape == (8, 32, 32) and found.spacing == (2.5, 0.7, 0.7)
    assert list(found.labels) == ["seg/mask.nii.gz", "a/body.npy", "a/float-labels.npy"]
    assert np.array_equal(found.labels["seg/mask.nii.gz"], mask)
    assert found.label_values("seg/mask.nii.gz") == [2]
    assert found.head_up


def test_without_dicom_a_result_volume_is_the_image(tmp_path: Path) -> None:
    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "report.txt").write_text("no images here")
    out = tmp_path / "output"
    image = np.random.default_rng(1).normal(size=(6, 10, 12)).astype(np.float32)
    _nifti(out / "pre" / "image.nii.gz", image)
    np.save(out / "seg.npy", (image > 1).astype(np.int16))
    found = load_job_volumes([tmp_path / "payload"], out, _results(out))
    assert found.source == "result pre/image.nii.gz"
    assert np.allclose(found.image, image)
    assert list(found.labels) == ["seg.npy"]
    with pytest.raises(NoVolume, match="nothing to view"):
        load_job_volumes([tmp_path / "payload"], tmp_path / "none", [])


def test_the_cache_loads_once_remembers_failures_and_evicts(tmp_path: Path) -> None:
    calls: list[str] = []

    def loader(name: str, size: int = 10) -> JobVolumes:
        def load() -> JobVolumes:
            calls.append(name)
            time.sleep(0.05)
            return JobVolumes(np.zeros((size, 10, 10), np.uint8), (1.0, 1.0, 1.0), True, name,
                              None, (0.0, 1.0))
        return load

    cache = VolumeCache(max_entries=2, max_bytes=10_000)
    threads = [threading.Thread(target=cache.get, args=(("a", 1), loader("a")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a"]

    def missing() -> JobVolumes:
        calls.append("missing")
        raise NoVolume("nothing to view here")

    for _ in range(2):
        with pytest.raises(NoVolume, match="nothing to view here"):
            cache.get(("m", 1), missing)
    assert calls == ["a", "missing"]
    cache.get(("b", 1), loader("b"))  # third entry: "a" goes
    cache.get(("a", 1), loader("a"))
    assert calls == ["a", "missing", "b", "a"]
    cache.get(("a", 2), loader("a2"))  # a new version replaces the old one
    cache.get(("c", 1), loader("c", size=95))  # 9,500 bytes: the others go
    cache.get(("a", 2), loader("a2"))
    assert calls[-3:] == ["a2", "c", "a2"]

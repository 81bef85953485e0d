"""LungThresholdOp's slab-parallel path (issues 15 and 19.4): the same masks as SciPy, any threads.

The reference is :func:`clara_rt.bench._lungseg.segment_lungs_sequential`, the implementation the
operator had before (whole-volume ``scipy.ndimage`` calls on one core).
"""

from __future__ import annotations

import threading
import time
from types import ModuleType

import numpy as np
import pytest
from scipy import ndimage

from clara_rt.bench._lungseg import segment_lungs_sequential
from clara_rt.operators.postprocess import runs
from clara_rt.operators.postprocess.components import (
    component_sizes,
    keep_largest,
    label_compact,
    label_components,
)
from clara_rt.operators.segment import LungThresholdOp
from clara_rt.operators.segment.labelling import Backend, fill_holes_in_plane, pick
from clara_rt.operators.segment.lung_threshold import _air, segment_lungs
from clara_rt.operators.segment.morphology import ball, ball_rows, close, dilate, erode, open_
from clara_rt.operators.segment.slabs import SlabRunner
from clara_rt.operators.volume import VolumeMeta
from tests.data.phantom import ct_phantom
from tests.unit.test_image_ops import host

RNG = np.random.default_rng(19)


@pytest.mark.parametrize("shape", [(7, 9, 11), (2, 3, 30), (1, 1, 1), (12, 6, 3)])
@pytest.mark.parametrize("radius", [1, 2, 3])
def test_ball_morphology_matches_scipy(xp: ModuleType, shape: tuple[int, int, int],
                                       radius: int) -> None:
    for density in (0.15, 0.5, 0.85):
        mask = RNG.random(shape) < density
        structure = ball(radius)
        d = xp.asarray(mask)
        assert (host(dilate(d, radius)) == ndimage.binary_dilation(mask, structure)).all()
        assert (host(erode(d, radius)) == ndimage.binary_erosion(mask, structure)).all()
        assert (host(close(d, radius)) == ndimage.binary_closing(mask, structure)).all()
        assert (host(open_(d, radius)) == ndimage.binary_opening(mask, structure)).all()


def test_ball_rows_cover_the_ball() -> None:
    for radius in range(5):
        rebuilt = np.zeros((2 * radius + 1,) * 3, dtype=bool)
        for dz, dy, w in ball_rows(radius):
            rebuilt[dz + radius, dy + radius, radius - w:radius + w + 1] = True
        assert (rebuilt == ball(radius)).all()
    with pytest.raises(ValueError, match=r"needs a 3-D bool mask, got uint8 of rank 3"):
        dilate(np.zeros((2, 2, 2), dtype=np.uint8), 1)


def test_fill_holes_in_plane_matches_scipy(xp: ModuleType) -> None:
    mask = RNG.random((6, 40, 50)) < 0.55
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    expected = ndimage.binary_fill_holes(mask, structure=in_plane)
    filled = xp.asarray(mask.copy())  # filled in place
    fill_holes_in_plane(filled)
    assert (host(filled) == expected).all() and expected.sum() > mask.sum()
    if xp is np:
        by_runs = mask.astype(np.uint8)
        runs.fill_holes_in_plane(by_runs, threads=2)
        assert (by_runs == expected).all()


@pytest.mark.parametrize(("threads", "slab"), [(1, 16), (2, 3), (3, 1)])
@pytest.mark.parametrize(("closing", "opening"), [(2, 1), (0, 1), (3, 0), (1, 2), (0, 0)])
def test_air_slabs_with_halos_match_whole_volume_scipy(threads: int, slab: int, closing: int,
                                                       opening: int) -> None:
    volume = ct_phantom((20, 48, 48), seed=3)
    body = ndimage.binary_fill_holes(volume > -500)
    expected = (volume < -400) & body
    if closing:
        expected = ndimage.binary_closing(expected, structure=ball(closing)) & body
    if opening:
        expected = ndimage.binary_opening(expected, structure=ball(opening))
    with SlabRunner(threads, slab=slab) as slabs:
        air = _air(slabs, volume, body, -400.0, closing, opening)
    assert (air == expected).all() and expected.any()


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("backend", ["scipy", "runs"])
def test_issue_19_masks_equal_the_sequential_implementation(xp: ModuleType, threads: int,
                                                            backend: Backend) -> None:
    if xp is not np and backend == "runs":
        pytest.skip("x-runs label host volumes only")
    volume = ct_phantom((40, 96, 96), seed=1)
    meta = VolumeMeta(spacing=(2.5, 0.7, 0.7), origin=(0.0, 0.0, 0.0))
    body, labels, count = segment_lungs_sequential(volume, meta)
    seg = segment_lungs(xp.asarray(volume), meta, threads=threads, backend=backend)
    assert seg.count == count == 2
    assert (host(seg.body) == body).all() and (host(seg.labels) == labels).all()
    assert host(seg.labels).dtype == np.uint8 and set(np.unique(labels)) == {0, 1, 2}


def test_one_lung_is_placed_against_the_body_centre(xp: ModuleType) -> None:
    volume = ct_phantom((24, 64, 64), seed=2)
    volume[:, :, 32:] = np.where(volume[:, :, 32:] < -400, 40, volume[:, :, 32:])  # no +i lung
    for direction in (1.0, -1.0):
        meta = VolumeMeta(spacing=(2.5, 0.7, 0.7), origin=(0.0, 0.0, 0.0),
                          direction=((direction, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
        body, labels, count = segment_lungs_sequential(volume, meta)
        seg = segment_lungs(xp.asarray(volume), meta, threads=2)
        assert seg.count == count == 1
        if xp is np:
            assert (segment_lungs(volume, meta, backend="runs").labels == labels).all()
        assert (host(seg.labels) == labels).all() and (host(seg.body) == body).all()
        side = int(labels.max())
        assert side == (2 if direction > 0 else 1)  # the -i lung: right, or left when mirrored


def test_no_lungs_in_a_solid_body(xp: ModuleType) -> None:
    volume = np.full((8, 20, 20), -1000, dtype=np.int16)
    volume[:, 4:16, 4:16] = 40
    for backend in ("scipy", "runs") if xp is np else ("scipy",):
        seg = segment_lungs(xp.asarray(volume), threads=2, backend=backend)  # type: ignore[arg-type]
        assert seg.count == 0 and not host(seg.labels).any()
        assert int(host(seg.body).sum()) == 8 * 12 * 12
    with pytest.raises(ValueError, match=r"^backend must be 'auto', 'scipy' or 'runs', got 'x'$"):
        segment_lungs(volume, backend="x")  # type: ignore[arg-type]


def test_slab_lanes_keep_z_order_and_bound_concurrency() -> None:
    running, peak = [0], [0]
    lock = threading.Lock()

    def work(z0: int, z1: int) -> tuple[int, int]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return z0, z1

    like = np.zeros((23, 1, 1))
    with SlabRunner(4, slab=3) as slabs:
        assert slabs.map(work, like) == [(z, min(z + 3, 23)) for z in range(0, 23, 3)]
        peak[0] = 0
        assert slabs.map(work, like, workers=2) == slabs.ranges(like)
        assert peak[0] <= 2


def test_the_operator_takes_threads_and_refuses_zero() -> None:
    assert LungThresholdOp(threads=2).threads == 2 and LungThresholdOp().threads is None
    with pytest.raises(ValueError, match=r"^threads must be >= 1 or None, got 0$"):
        LungThresholdOp(threads=0)
    with pytest.raises(ValueError, match=r"threads and slab must be >= 1"):
        SlabRunner(0)


def test_compact_labels_fall_back_to_int32_past_65535_components() -> None:
    dots = np.zeros((1, 512, 512), dtype=bool)
    dots[:, ::2, ::2] = True  # 65,536 isolated voxels: one more than uint16 labels can hold
    labels, count = label_compact(dots)
    assert count == 65_536 and labels.dtype == np.int32 and int(labels.max()) == 65_536
    few, n = label_compact(dots[:, :8])
    assert n == 4 * 256 and few.dtype == np.uint16
    assert label_components(dots[:, :8])[0].dtype == np.int32


@pytest.mark.parametrize("components", [3, 200])
def test_component_sizes_equal_bincount(components: int) -> None:
    labels = RNG.integers(0, components + 1, (70, 30, 20)).astype(np.uint16)
    expected = np.bincount(labels.ravel(), minlength=components + 1)
    assert component_sizes(labels, components).tolist() == expected.tolist()


def test_keep_largest_ties_go_to_the_lowest_label(xp: ModuleType) -> None:
    mask = np.zeros((1, 3, 9), dtype=bool)
    mask[0, 0, :3] = mask[0, 2, :3] = mask[0, 0, 5:9] = True  # sizes 3, 3, 4 in label order
    two = host(keep_largest(xp.asarray(mask), 2))
    assert two[0, 0, 5:9].all() and two[0, 0, :3].all() and not two[0, 2].any()
    assert not host(keep_largest(xp.asarray(mask), 3, min_size=4))[0, :, :3].any()


def test_bench_lungseg_reports_ratios_and_equal_masks() -> None:
    from clara_rt.bench._lungseg import lungseg

    record = lungseg((16, 48, 48), repeat=1, threads=(1, 2), rss=False)
    assert set(record.ratios) == {"sequential / slabs(1)", "sequential / slabs(2)",
                                  "keep_largest: sequential / clara-rt",
                                  "masks equal (1 = yes, 0 = a mismatch)"}
    assert record.ratios["masks equal (1 = yes, 0 = a mismatch)"] == 1.0
    assert all(fig["seconds"] > 0 for fig in record.figures.values())
    assert all(t.passed for t in record.targets if t.name.startswith("masks"))


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 9), (20, 30, 40), (7, 1, 50), (33, 16, 16)])
def test_runs_number_components_like_scipy(shape: tuple[int, int, int]) -> None:
    for density in (0.2, 0.5, 0.8):
        mask = RNG.random(shape) < density
        labels, n = ndimage.label(mask)
        found = runs.components(mask, threads=2)
        assert found.count == n
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        assert found.sizes()[1:].tolist() == sizes[1:].tolist()
        painted = np.empty(shape, dtype=np.uint8)
        lut = (np.arange(n + 1) % 251).astype(np.uint8)  # every label its own value (mod 251)
        found.paint(lut, painted)
        assert (painted == lut[labels]).all()
        if n:
            centres = np.array(ndimage.center_of_mass(mask, labels, np.arange(1, n + 1)))
            got = found.moments()[1:]
            np.testing.assert_allclose(got[:, 1:] / got[:, :1], centres)
            edge = np.zeros(n + 1, dtype=bool)
            for side in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
                edge[side.ravel()] = True
            assert (found.touching_yx_edge()[1:] == edge[1:]).all()


def test_runs_threshold_a_volume_like_numpy() -> None:
    volume = RNG.integers(-1000, 100, (6, 20, 30)).astype(np.int16)
    for bound in (-500.0, -500.5, -499.5, -2000.0, 40000.0):
        assert runs.components(volume, above=bound).count == ndimage.label(volume > bound)[1]
    as_float = volume.astype(np.float32)
    assert runs.components(as_float, above=-500.5).count == ndimage.label(volume > -500.5)[1]
    signed = np.where(volume > -500, volume, 0).astype(np.int16)  # negative and positive
    assert runs.components(signed).count == ndimage.label(signed != 0)[1]


def test_auto_backend_uses_runs_for_big_host_volumes(xp: ModuleType) -> None:
    big = np.empty((runs.RUNS_MIN_VOXELS // 4096, 64, 64), dtype=np.int16)
    assert pick(big, "auto").__name__ == "LabelRuns"
    assert pick(big[:1], "auto").__name__ == "LabelArray"
    assert pick(xp.asarray(big[:2]), "scipy").__name__ == "LabelArray"


def test_without_numba_big_volumes_label_with_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    big = np.empty((runs.RUNS_MIN_VOXELS // 4096, 64, 64), dtype=np.int16)
    monkeypatch.setattr(runs, "available", lambda: False)
    assert pick(big, "auto").__name__ == "LabelArray" and not runs.worth_it(big)
    with pytest.raises(ValueError, match=r"^backend 'runs' needs a 3-D NumPy volume and numba$"):
        pick(big, "runs")


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int16", "float32"])
def test_keep_largest_on_a_big_volume_takes_runs_and_keeps_the_same(dtype: str) -> None:
    shape = (runs.RUNS_MIN_VOXELS // (128 * 128), 128, 128)  # big enough for runs
    blobs = ndimage.binary_opening(RNG.random(shape) < 0.3)  # many components, some tied
    mask = (blobs * RNG.choice([-2, 1, 3], size=shape)).astype(dtype)
    labels = ndimage.label(mask != 0)[0]
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    for count, min_size in ((1, 0), (3, 0), (50, int(np.median(sizes[1:])))):
        order = np.argsort(-sizes, kind="stable")[:count]
        expected = np.isin(labels, order[sizes[order] >= max(min_size, 1)])
        assert runs.worth_it(mask)
        assert (keep_largest(mask, count, min_size=min_size) == expected).all()


@pytest.mark.gpu
def test_issue_15_lung_seg_on_cupy_copies_nothing_to_the_host() -> None:
    import cupy

    from clara_rt.arrays import transfer_counters

    volume = ct_phantom((40, 96, 96), seed=1)
    body, labels, count = segment_lungs_sequential(volume)
    device = cupy.asarray(volume)
    before = transfer_counters()
    seg = segment_lungs(device)
    kept = keep_largest((seg.labels > 0).view(cupy.uint8), 2)
    after = transfer_counters()
    assert isinstance(seg.labels, cupy.ndarray) and isinstance(kept, cupy.ndarray)
    assert (after.device_to_host, after.host_to_device) == (before.device_to_host,
                                                            before.host_to_device)
    assert seg.count == count and (seg.labels.get() == labels).all()
    assert (seg.body.get() == body).all()

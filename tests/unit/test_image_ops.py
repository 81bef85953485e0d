"""Imaging operators on synthetic volumes with exactly known answers (NumPy, and CuPy on a GPU).

Every operator runs through a one-operator pipeline (so its ports check every value) on inputs
made read-only, which proves it never writes what it receives.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from clara_rt import Operator, Pipeline, Runtime, run
from clara_rt.arrays import device_of
from clara_rt.operators import kernels
from clara_rt.operators.postprocess import ConnectedComponentsOp, KeepLargestOp, LabelStatsOp
from clara_rt.operators.preprocess import CropPadOp, NormalizeOp, ResampleOp, WindowOp
from clara_rt.operators.roi import RoiConfig, RoiMergeOp, RoiSplitOp
from clara_rt.operators.segment import LungThresholdOp
from clara_rt.operators.volume import VolumeMeta
from tests.data.phantom import ct_phantom

META = VolumeMeta(spacing=(2.0, 1.0, 0.5), origin=(-10.0, 20.0, 30.0))


def run_op(op: Operator, **inputs: Any) -> dict[str, Any]:
    """Run ``op`` alone on read-only ``inputs``; check they are unchanged; return its outputs."""
    before = {k: v.copy() for k, v in inputs.items() if device_of(v) is not None}
    for value in inputs.values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    p = Pipeline("one")
    p.add(op)
    out = run(p, {f"{op.name}.{k}": v for k, v in inputs.items()})
    for k, v in before.items():
        assert bool((inputs[k] == v).all()), f"{op.name} modified its input '{k}'"
    return {key.split(".", 1)[1]: value for key, value in out.items()}


def host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def sphere(shape: tuple[int, ...], centre: tuple[float, ...], radius: float,
           spacing: tuple[float, ...] = (1.0, 1.0, 1.0)) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    return np.asarray(dist <= radius ** 2)


# --- kernels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_window_kernel_matches_the_numpy_expression(xp: ModuleType, backend: str) -> None:
    vol = np.random.default_rng(1).integers(-1500, 1500, (7, 33, 40)).astype(np.int16)
    expected = np.clip((vol.astype(np.float32) - -1000.0) / 1400.0, 0, 1)
    got = kernels.window(xp.asarray(vol), -1000.0, 400.0, backend=backend)  # type: ignore[arg-type]
    assert got.dtype == np.float32 and got.shape == vol.shape
    np.testing.assert_allclose(host(got), expected, atol=1e-6)
    strided = kernels.window(xp.asarray(vol)[:, ::3, 1:], -1000.0, 400.0)  # a view, no copy
    np.testing.assert_allclose(host(strided), expected[:, ::3, 1:], atol=1e-6)


def test_window_kernel_keeps_nan_and_rejects_empty_window(xp: ModuleType) -> None:
    img = xp.asarray([[np.nan, -5.0, 5.0, 15.0]], dtype=xp.float32)
    got = host(kernels.window(img, 0.0, 10.0))
    assert np.isnan(got[0, 0]) and got[0, 1:].tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"upper bound must exceed the lower one"):
        kernels.window(img, 1.0, 1.0)


def test_kernels_are_safe_from_many_threads() -> None:
    vol = np.random.default_rng(2).integers(-1000, 1000, (16, 64, 64)).astype(np.int16)
    expected = kernels.window(vol, -500.0, 500.0, backend="numpy")
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(kernels.window(vol, -500, 500)))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(np.allclose(r, expected, atol=1e-6) for r in results)


def test_label_stats_kernel_matches_a_loop_over_labels(xp: ModuleType) -> None:
    rng = np.random.default_rng(3)
    labels = rng.choice([0, 0, 1, 2, 4, 7], size=(9, 20, 31)).astype(np.int32)  # 3 is absent
    image = rng.normal(0, 100, labels.shape).astype(np.float32)
    fast = kernels.label_stats(xp.asarray(labels), xp.asarray(image), num_labels=4)
    slow = kernels.label_stats(xp.asarray(labels), xp.asarray(image), 4, backend="numpy")
    for lab in range(1, 5):
        m = labels == lab
        assert fast.counts[lab] == slow.counts[lab] == m.sum()
        assert fast.sums is not None and slow.sums is not None
        assert fast.sums[lab] == pytest.approx(image[m].sum(dtype=np.float64), rel=1e-9, abs=1e-6)
        assert fast.sums[lab] == pytest.approx(slow.sums[lab], rel=1e-9, abs=1e-6)
        idx = np.nonzero(m)
        lo = [int(i.min()) if m.any() else 0 for i in idx]
        hi = [int(i.max()) + 1 if m.any() else 0 for i in idx]
        assert fast.start[lab].tolist() == slow.start[lab].tolist() == lo
        assert fast.stop[lab].tolist() == slow.stop[lab].tolist() == hi
    assert fast.counts[0] == 0 and len(fast.counts) == 5  # label 7 is beyond num_labels
    mask2d = kernels.label_stats(xp.asarray(labels[0] > 0))  # bool, rank 2, no image
    assert mask2d.sums is None and mask2d.counts[1] == (labels[0] > 0).sum()


@pytest.mark.parametrize("num_labels", [20, 300])  # numba on the host; GPU: shared, global
def test_label_stats_with_many_labels_matches_bincount(xp: ModuleType, num_labels: int) -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, num_labels + 3, size=(6, 17, 23)).astype(np.int16)
    image = rng.integers(-1000, 1000, labels.shape).astype(np.int16)
    fast = kernels.label_stats(xp.asarray(labels), xp.asarray(image), num_labels)
    slow = kernels.label_stats(labels, image, num_labels, backend="numpy")
    assert fast.counts.tolist() == slow.counts.tolist()
    assert fast.sums is not None and slow.sums is not None
    np.testing.assert_allclose(fast.sums, slow.sums, rtol=0, atol=1e-6)  # integer sums: exact
    assert fast.start.tolist() == slow.start.tolist() and fast.stop.tolist() == slow.stop.tolist()


@pytest.mark.parametrize("shape", [(9, 20, 31), (20, 31), (57,)])
def test_label_stats_per_label_numpy_path_matches_bincount(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(7)
    labels = rng.choice([-2, 0, 0, 1, 2, 4, 9], size=shape).astype(np.int32)  # 3 is absent
    for image in (rng.integers(-1000, 1000, shape).astype(np.int16),
                  rng.normal(0, 50, shape).astype(np.float32), None):
        fast = kernels._stats_per_label(labels, image, 5)
        slow = kernels.label_stats(labels, image, 5, backend="numpy")
        assert fast.counts.tolist() == slow.counts.tolist()
        assert fast.start.tolist() == slow.start.tolist()
        assert fast.stop.tolist() == slow.stop.tolist()
        if image is None:
            assert fast.sums is None and slow.sums is None
        else:
            np.testing.assert_allclose(fast.sums, slow.sums, rtol=1e-9, atol=1e-6)


def test_label_stats_of_a_few_labels_needs_no_numba() -> None:
    code = ("import sys, numpy as np; from clara_rt.operators.postprocess.label_stats import "
            "compute_label_stats; lab = np.zeros((8, 32, 32), np.uint8); lab[1:3, 2:9, 4:7] = 1; "
            "lab[4:6, 10:20, 5:9] = 2; s = compute_label_stats(lab, lab.astype(np.int16)); "
            "assert 'numba' not in sys.modules, 'numba imported'; print(s)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_small_ct_lung_seg_job_does_not_import_numba(tmp_path: Any) -> None:
    """Issue 19.1: numba's import (0.4-0.8 s) would dominate a small job that needs no kernel."""
    code = ("import sys; from tests.data.chest_dicom import write_chest_series; "
            "from clara_rt import Runtime; from clara_rt.definition.build import build_pipeline; "
            "from clara_rt.definition.schema import parse_definition; "
            f"write_chest_series({str(tmp_path / 'in')!r}, shape=(16, 48, 48)); "
            "b = build_pipeline(parse_definition('examples/ct-lung-seg/pipeline.yaml')); "
            "rt = Runtime(workers=2); "
            f"j = rt.submit(b.pipeline, b.payload_for({str(tmp_path / 'in')!r}), "
            f"workspace={str(tmp_path / 'ws')!r}); j.result(timeout=120); rt.close(); "
            "assert 'numba' not in sys.modules, 'numba was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=180,
                   cwd=str(Path(__file__).resolve().parents[2]))


def test_mean_std_accumulates_in_float64(xp: ModuleType) -> None:
    ramp = np.arange(24, dtype=np.int16)
    for backend in ("auto", "numpy"):
        mean, std = kernels.mean_std(xp.asarray(ramp), backend=backend)  # type: ignore[arg-type]
        assert mean == 11.5 and std == pytest.approx(np.std(ramp.astype(np.float64)), rel=1e-12)
    big = np.full(1 << 16, 3.0e4, dtype=np.float32) + np.float32(0.5) * (np.arange(1 << 16) % 2)
    mean, std = kernels.mean_std(xp.asarray(big.astype(np.float32)))
    assert mean == pytest.approx(30000.25, abs=1e-9) and std == pytest.approx(0.25, rel=1e-9)
    with pytest.raises(ValueError, match=r"^mean_std needs at least one value"):
        kernels.mean_std(xp.zeros(0))


@pytest.mark.gpu
def test_a_gpu_kernel_that_fails_falls_back_and_logs_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cupy = pytest.importorskip("cupy")
    from clara_rt.operators import _gpu_kernels

    def broken(*args: Any) -> Any:
        raise RuntimeError("nvrtc: cannot compile")

    monkeypatch.setattr(_gpu_kernels, "window", broken)
    monkeypatch.setattr(_gpu_kernels, "label_stats", broken)
    monkeypatch.setattr(kernels, "_GPU_FAILED", set())
    vol = cupy.asarray(np.arange(-20, 20, dtype=np.int16).reshape(2, 4, 5))
    with caplog.at_level(logging.WARNING, logger="clara_rt.operators.kernels"):
        for _ in range(3):
            np.testing.assert_allclose(host(kernels.window(vol, -10, 10)),
                                       np.clip((host(vol) + 10) / 20, 0, 1), atol=1e-6)
            assert kernels.label_stats(vol.clip(0, 3)).counts.tolist() == [0, 1, 1, 17]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all("cannot compile" in m for m in messages), messages


def test_without_numba_kernels_fall_back_to_numpy_and_warn_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    kernels._cpu_kernels.cache_clear()
    monkeypatch.setitem(sys.modules, "numba", None)  # makes ``import numba`` raise ImportError
    try:
        with caplog.at_level(logging.WARNING, logger="clara_rt.operators.kernels"):
            vol = np.arange(-20, 20, dtype=np.int16).reshape(2, 4, 5)
            assert np.allclose(kernels.window(vol, -10, 10), np.clip((vol + 10) / 20, 0, 1))
            assert kernels.label_stats(vol.clip(0, 3)).counts.tolist() == [0, 1, 1, 17]
        assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
        assert "numba is not installed" in caplog.records[0].message
    finally:
        kernels._cpu_kernels.cache_clear()


def test_importing_the_operators_does_not_import_numba_or_scipy_ndimage() -> None:
    code = ("import sys, clara_rt.operators.preprocess, clara_rt.operators.postprocess, "
            "clara_rt.operators.roi, clara_rt.operators.segment; "
            "assert 'numba' not in sys.modules and 'scipy.ndimage' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- preprocess ------------------------------------------------------------------------------


def test_window_op_maps_the_window_to_unit_range_and_passes_meta(xp: ModuleType) -> None:
    vol = xp.asarray([[[-200, -100, 0, 50, 100, 300]]], dtype=xp.int16)
    out = run_op(WindowOp(level=0, width=200), volume=vol, meta=META)
    assert out["windowed"].dtype == np.float32 and out["meta"] is META
    np.testing.assert_allclose(host(out["windowed"]).ravel(), [0, 0, 0.5, 0.75, 1, 1], atol=1e-6)
    lung = run_op(WindowOp(preset="lung", ndim=2), volume=xp.asarray([[-1350, 150]]))
    np.testing.assert_allclose(host(lung["windowed"]), [[0.0, 1.0]], atol=1e-6)
    assert lung["meta"] is None
    with pytest.raises(ValueError, match=r"unknown window preset 'lungs'; presets are: lung"):
        WindowOp(preset="lungs")


def test_normalize_op_zscore_minmax_nonzero(xp: ModuleType) -> None:
    vol = xp.asarray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    z = host(run_op(NormalizeOp(mode="zscore"), volume=vol)["normalized"])
    assert z.dtype == np.float32 and abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1, 1e-6)
    mm = host(run_op(NormalizeOp(mode="minmax"), volume=vol)["normalized"])
    np.testing.assert_allclose(mm.ravel(), np.arange(24) / 23, atol=1e-6)
    nz = host(run_op(NormalizeOp(mode="minmax", nonzero=True), volume=vol)["normalized"])
    assert nz.ravel()[0] == 0 and nz.ravel()[1] == 0 and nz.ravel()[-1] == pytest.approx(1)
    flat = run_op(NormalizeOp(), volume=xp.full((2, 2, 2), 7.0, dtype=xp.float32))
    assert not host(flat["normalized"]).any()


def test_resample_op_interpolates_a_ramp_exactly_and_keeps_the_origin(xp: ModuleType) -> None:
    meta = VolumeMeta(spacing=(2.0, 1.5, 1.0), origin=(5.0, 6.0, 7.0))
    k, j, i = np.indices((10, 9, 8), dtype=np.float32)
    ramp = xp.asarray(k * 2.0 + 10 * j * 1.5 + 100 * i * 1.0)  # value = a linear mix of mm
    out = run_op(ResampleOp(spacing=(1.0, 0.5, 2.0)), volume=ramp, meta=meta)
    res, new = host(out["resampled"]), out["meta"]
    # extents 18, 12, 7 mm -> 19, 25 and 5 voxels (7 / 2 rounds to 4 steps of 1.75 mm)
    assert res.shape == (19, 25, 5) and new.spacing == (1.0, 0.5, 1.75)
    assert new.origin == meta.origin and new.direction == meta.direction
    k2, j2, i2 = np.indices(res.shape)
    np.testing.assert_allclose(res, k2 * 1.0 + 10 * j2 * 0.5 + 100 * i2 * 1.75, atol=2e-3)
    labels = xp.asarray((k.astype(np.int16) // 4) + 1)
    nearest = host(run_op(ResampleOp(spacing=1.0, order=0), volume=labels, meta=meta)["resampled"])
    assert nearest.dtype == np.int16 and set(np.unique(nearest)) == {1, 2, 3}
    same = run_op(ResampleOp(spacing=(None, None, 1.0)), volume=ramp, meta=meta)
    assert same["resampled"] is ramp and same["meta"] is meta  # already on the grid: no copy


def test_crop_pad_op_shapes_values_and_origins(xp: ModuleType) -> None:
    vol = xp.asarray(np.arange(10 * 12 * 14, dtype=np.int16).reshape(10, 12, 14))
    crop = run_op(CropPadOp(shape=(4, 6, None)), volume=vol, meta=META)
    assert host(crop["volume"]).tolist() == host(vol[3:7, 3:9, :]).tolist()
    assert crop["meta"].origin == META.with_grid(offset=(3, 3, 0)).origin
    assert crop["meta"].origin == (-10.0 + 0 * 0.5, 20.0 + 3 * 1.0, 30.0 + 3 * 2.0)
    if xp is np:
        assert np.shares_memory(crop["volume"], vol)  # a pure crop is a view
    pad = run_op(CropPadOp(shape=(12, 16, 14), pad_value=-1024), volume=vol, meta=META)
    padded = host(pad["volume"])
    assert padded.shape == (12, 16, 14) and padded[1:11, 2:14].tolist() == host(vol).tolist()
    assert (padded == -1024).sum() == padded.size - vol.size
    assert pad["meta"].origin == (-10.0, 18.0, 28.0)  # one slice and two rows before
    mixed = host(run_op(CropPadOp(shape=(5, 5, 5), offset=(-2, 9, 3)), volume=vol)["volume"])
    assert mixed[2:, :3].tolist() == host(vol[0:3, 9:12, 3:8]).tolist()
    assert not mixed[:2].any() and not mixed[:, 3:].any()


# --- postprocess -----------------------------------------------------------------------------


def _two_blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    big = sphere((30, 40, 40), (15, 12, 12), 8)
    small = sphere((30, 40, 40), (15, 30, 30), 4)
    return big, small, (big | small).astype(np.uint8)


def test_components_and_keep_largest(xp: ModuleType) -> None:
    big, small, mask = _two_blobs()
    cc = run_op(ConnectedComponentsOp(), mask=xp.asarray(mask), meta=META)
    labels = host(cc["labels"])
    assert cc["count"] == 2 and labels.dtype == np.int32 and cc["meta"] is META
    assert {int(labels[15, 12, 12]), int(labels[15, 30, 30])} == {1, 2}
    one = run_op(KeepLargestOp(), mask=xp.asarray(mask))["mask"]
    assert one.dtype == np.uint8 and (host(one) == big).all()
    both = run_op(KeepLargestOp(count=2, dtype="bool"), mask=xp.asarray(mask))["mask"]
    assert (host(both) == (big | small)).all()
    sized = run_op(KeepLargestOp(count=2, min_size=int(small.sum()) + 1), mask=xp.asarray(mask))
    assert (host(sized["mask"]) == big).all()
    diagonal = xp.zeros((3, 3, 3), dtype=xp.uint8)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = 1
    assert run_op(ConnectedComponentsOp(connectivity=1), mask=diagonal)["count"] == 2
    assert run_op(ConnectedComponentsOp(connectivity=3), mask=diagonal)["count"] == 1


def test_label_stats_op_sphere_volume_mean_and_bbox(xp: ModuleType) -> None:
    meta = VolumeMeta(spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    ball = sphere((30, 60, 60), (15, 30, 30), 20.0, spacing=meta.spacing)  # r = 20 mm
    labels = ball.astype(np.uint8)
    labels[:3, :5, :5] = 3  # a 3x5x5 box far from the ball
    image = np.where(labels == 3, -50.0, 100.0).astype(np.float32)
    out = run_op(LabelStatsOp(names={1: "ball", 3: "box"}), labels=xp.asarray(labels),
                 image=xp.asarray(image), meta=meta)
    stats = out["stats"]
    assert sorted(stats) == [1, 3] and out["meta"] is meta
    assert stats[1].voxels == ball.sum() and stats[1].name == "ball"
    assert stats[1].volume_ml == pytest.approx(4 / 3 * np.pi * 20 ** 3 / 1000, rel=0.02)
    assert stats[1].mean == pytest.approx(100.0) and stats[3].mean == pytest.approx(-50.0)
    assert stats[1].bbox == ((5, 26), (10, 51), (10, 51))  # +-10 slices of 2 mm, +-20 voxels
    assert stats[3].to_dict() == {"label": 3, "name": "box", "voxels": 75, "volume_ml": 0.15,
                                  "mean": -50.0, "bbox": [[0, 3], [0, 5], [0, 5]]}
    bare = run_op(LabelStatsOp(), labels=xp.asarray(ball))["stats"]  # bool mask, no image/meta
    assert bare[1].voxels == ball.sum() and bare[1].volume_ml is None and bare[1].mean is None


# --- roi -------------------------------------------------------------------------------------


class MaskOf(Operator):
    """Stand-in for a segmentation model: ``mask = (image == value)`` as uint8."""

    def __init__(self, name: str, /, *, value: int) -> None:
        super().__init__(name)
        self.value = value

    def setup(self, spec: Any) -> None:
        spec.input("image", shape=("*", "*", "*"))
        spec.output("mask", dtype="uint8", shape=("*", "*", "*"))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["mask"] = (inputs["image"] == self.value).astype("uint8")


ROIS = {"lung": [(0, 10), (None, None), (None, 12)], "liver": [(8, None), (2, -2), (6, None)],
        "spleen": [(-4, None), (0, 6), (0, 6)]}


def test_roi_split_then_merge_round_trips_the_labels(xp: ModuleType) -> None:
    labels = np.zeros((16, 10, 20), dtype=np.uint8)
    labels[1:9, 1:9, 2:10] = 1
    labels[9:15, 3:8, 7:19] = 2
    labels[12:16, 0:4, 0:4] = 3  # inside the liver box too: masks must not carry other labels
    volume = xp.asarray(labels)
    p = Pipeline("multi-ai")
    split = p.add(RoiSplitOp("split", rois=ROIS))
    merge = p.add(RoiMergeOp("merge", rois=list(ROIS)))
    for value, roi in enumerate(ROIS, start=1):
        seg = p.add(MaskOf(f"seg_{roi}", value=value))
        p.connect(split, roi, seg, "image")
        p.connect(seg, "mask", merge, roi)
    p.connect(split, "config", merge, "config")
    with Runtime(workers=2) as rt:
        out = rt.run(p, {"split.volume": volume, "split.meta": META})
    assert host(out["merge.labels"]).tolist() == labels.tolist()
    assert out["merge.meta"] is META
    assert out["split.liver_meta"].origin == META.with_grid(offset=(8, 2, 6)).origin


def test_roi_merge_modes_and_errors(xp: ModuleType) -> None:
    config = RoiConfig(shape=(1, 1, 4), boxes={"a": ((0, 1), (0, 1), (0, 3)),
                                               "b": ((0, 1), (0, 1), (1, 4))})
    a, b = xp.ones((1, 1, 3), dtype=xp.uint8), xp.ones((1, 1, 3), dtype=xp.uint8)
    merged = {mode: host(run_op(RoiMergeOp(rois=["a", "b"], labels={"a": 5}, mode=mode),
                                config=config, a=a, b=b)["labels"]).ravel().tolist()
              for mode in ("last", "first", "max")}
    assert merged == {"last": [5, 2, 2, 2], "first": [5, 5, 5, 2], "max": [5, 5, 5, 2]}
    with pytest.raises(ValueError, match=r"ROI name 'config' must be an identifier, not one of"):
        RoiSplitOp(rois={"config": [(0, 1), (0, 1), (0, 1)]})
    with pytest.raises(ValueError, match=r"box must be three \(start, stop\) pairs"):
        RoiSplitOp(rois={"lung": [(0, 1)]})
    with pytest.raises(Exception, match=r"mask 'b' has shape \(1, 1, 2\) but its box"):
        run_op(RoiMergeOp(rois=["a", "b"]), config=config, a=a, b=b[..., :2])


# --- segment and a pipeline ------------------------------------------------------------------


def _analytic_lung_ml(shape: tuple[int, int, int], meta: VolumeMeta) -> float:
    """One phantom lung: an ellipsoid with semi-axes 0.4 z, 0.25 y, 0.13 x of the shape."""
    return 4 / 3 * np.pi * 0.4 * shape[0] * 0.25 * shape[1] * 0.13 * shape[2] * meta.voxel_volume_ml


def test_lung_threshold_finds_both_lungs_on_the_phantom(xp: ModuleType) -> None:
    volume = ct_phantom()
    out = run_op(LungThresholdOp(), volume=xp.asarray(volume), meta=META)
    labels, mask, body = host(out["labels"]), host(out["mask"]), host(out["body"])
    expected = _analytic_lung_ml(volume.shape, META)
    for side in (1, 2):
        assert (labels == side).sum() * META.voxel_volume_ml == pytest.approx(expected, rel=0.05)
    assert np.nonzero(labels == 1)[2].mean() > np.nonzero(labels == 2)[2].mean()  # +i = left
    assert (mask == (labels > 0)).all() and mask.dtype == np.uint8
    body_voxels = np.pi * (0.45 * 128) ** 2 * 64
    assert body.sum() == pytest.approx(body_voxels, rel=0.02)
    flipped = VolumeMeta(spacing=META.spacing, origin=META.origin,
                         direction=((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
    mirrored = host(run_op(LungThresholdOp(), volume=xp.asarray(volume), meta=flipped)["labels"])
    assert ((mirrored == 1) == (labels == 2)).all()  # +i now points to the patient's right


class ThresholdOp(Operator):
    """``mask = low < image < high`` as uint8 (a stand-in for a generic threshold operator)."""

    def __init__(self, name: str, /, *, low: float, high: float) -> None:
        super().__init__(name)
        self.low, self.high = low, high

    def setup(self, spec: Any) -> None:
        spec.input("image", dtype="float32", shape=("Z", "Y", "X"))
        spec.output("mask", dtype="uint8", shape=("Z", "Y", "X"))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        img = inputs["image"]
        outputs["mask"] = ((img > self.low) & (img < self.high)).view("uint8")


def test_window_threshold_keep_largest_stats_pipeline_on_two_workers(xp: ModuleType) -> None:
    big, _, mask = _two_blobs()
    volume = np.where(mask > 0, 60, -1000).astype(np.int16)  # two soft-tissue blobs in air
    p = Pipeline("chain")
    window = p.add(WindowOp("window", level=40, width=400))
    threshold = p.add(ThresholdOp("threshold", low=0.5, high=1.0))
    largest = p.add(KeepLargestOp("largest"))
    stats = p.add(LabelStatsOp("stats", names=["blob"]))
    p.connect(window, "windowed", threshold, "image")
    p.connect(threshold, "mask", largest, "mask")
    p.connect(window, "meta", largest, "meta")
    p.connect(largest, "mask", stats, "labels")
    p.connect(window, "windowed", stats, "image")
    p.connect(largest, "meta", stats, "meta")
    with Runtime(workers=2) as rt:
        jobs = [rt.submit(p, {"window.volume": xp.asarray(volume), "window.meta": META})
                for _ in range(3)]
        results = [job.result(timeout=60) for job in jobs]
    for out in results:
        blob = out["stats.stats"][1]
        assert blob.voxels == big.sum() and blob.name == "blob"
        assert blob.volume_ml == pytest.approx(big.sum() * META.voxel_volume_ml)
        assert blob.mean == pytest.approx((60 - -160) / 400, abs=1e-6)
        assert out["stats.meta"] is META

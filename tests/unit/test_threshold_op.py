"""ThresholdOp (the multiai-seg stand-in for a segmentation model) on arrays with known answers."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from clara_rt import Pipeline, PortTypeError, Runtime
from clara_rt.operators.segment.threshold import ThresholdOp, threshold
from clara_rt.operators.volume import VolumeMeta
from tests.data.phantom import ct_phantom
from tests.unit.test_image_ops import host, run_op

META = VolumeMeta(spacing=(2.0, 1.0, 0.5), origin=(-10.0, 20.0, 30.0))


def test_mask_is_strictly_between_the_bounds(xp: ModuleType) -> None:
    vol = xp.asarray([[[-3.0, -1.0, 0.0, 0.5, 1.0, 2.0]]], dtype=xp.float32)
    out = run_op(ThresholdOp(low=-1.0, high=1.0), volume=vol, meta=META)
    assert out["mask"].dtype == np.uint8 and out["mask"].shape == vol.shape
    assert host(out["mask"]).ravel().tolist() == [0, 0, 1, 1, 0, 0]  # bounds are outside
    assert out["meta"] is META


def test_one_sided_bounds(xp: ModuleType) -> None:
    vol = xp.asarray(np.arange(-3, 4, dtype=np.int16).reshape(1, 1, 7))
    above = host(run_op(ThresholdOp(low=0.5), volume=vol)["mask"]).ravel()
    below = host(run_op(ThresholdOp(high=-0.5), volume=vol)["mask"]).ravel()
    assert above.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert below.tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_lung_air_of_the_phantom_in_2d_and_3d(xp: ModuleType) -> None:
    hu = ct_phantom((16, 48, 48))
    expected = ((hu > -915.5) & (hu < -749.5)).astype(np.uint8)
    mask = run_op(ThresholdOp(low=-915.5, high=-749.5), volume=xp.asarray(hu))["mask"]
    np.testing.assert_array_equal(host(mask), expected)
    assert 0 < int(expected.sum()) < expected.size // 4  # the lungs, not the body or the air
    slice8 = run_op(ThresholdOp(low=-915.5, high=-749.5, ndim=2), volume=xp.asarray(hu[8]))
    np.testing.assert_array_equal(host(slice8["mask"]), expected[8])


def test_the_function_leaves_its_input_alone_and_nan_outside() -> None:
    vol = np.linspace(0, 1, 11, dtype=np.float32)
    vol[5] = np.nan
    before = vol.copy()
    assert threshold(vol, 0.25, 0.75).tolist() == [0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0]
    assert threshold(vol, None, 0.75)[5] == 0 and threshold(vol, 0.25, None)[5] == 0
    np.testing.assert_array_equal(vol, before)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^ThresholdOp needs low, high or both$"):
        ThresholdOp()
    with pytest.raises(ValueError, match=r"low must be below high, got low=2, high=1"):
        ThresholdOp(low=2, high=1)
    with pytest.raises(ValueError, match=r"^ndim must be 1, 2 or 3, got 4$"):
        ThresholdOp(low=0, ndim=4).spec  # noqa: B018  (setup runs on first access)


def test_rank_is_checked_at_the_port() -> None:
    p = Pipeline("rank")
    p.add(ThresholdOp("t", low=0.0))
    with Runtime(workers=0) as rt, pytest.raises(PortTypeError, match=r"volume"):
        rt.submit(p, {"t.volume": np.zeros((4, 4), dtype=np.float32)}).result()

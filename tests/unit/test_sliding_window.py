"""sliding_window_infer's tiling and blending math, with a pure function as the model.

The server path is tested against real Triton in ``tests/integration/test_triton_backend.py``;
here a tiny in-process backend implements the protocol so that the arithmetic can be pinned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from clara_rt.backends import InferenceBackend, ModelSpec, TensorSpec
from clara_rt.backends.sliding_window import importance_map, sliding_window_infer, window_starts


class FunctionBackend:
    """A model that is a Python function of one array (per request, batched or not)."""

    url = "function://"

    def __init__(self, fn: Callable[[Any], Any], in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...], *, max_batch_size: int = 0,
                 out_dtype: str = "float32") -> None:
        self.fn = fn
        self._spec = ModelSpec("fn", "", (TensorSpec("x", "float32", in_shape),),
                               (TensorSpec("y", out_dtype, out_shape),), max_batch_size)
        self.batches: list[tuple[int, ...]] = []

    def spec(self) -> ModelSpec:
        return self._spec

    def infer(self, inputs: Mapping[str, Any],
              outputs: tuple[str, ...] | None = None) -> dict[str, Any]:
        x = inputs["x"]
        assert x.dtype == np.float32 and x.flags.c_contiguous
        self.batches.append(tuple(x.shape))
        return {"y": self.fn(x)}

    def close(self) -> None:
        pass


def test_is_a_backend() -> None:
    assert isinstance(FunctionBackend(lambda x: x, (-1,), (-1,)), InferenceBackend)


@pytest.mark.parametrize(("size", "roi", "overlap", "starts"), [
    (10, 4, 0.5, [0, 2, 4, 6]),
    (10, 4, 0.25, [0, 3, 6]),
    (11, 4, 0.25, [0, 3, 6, 7]),
    (4, 4, 0.5, [0]),
    (3, 4, 0.5, [0]),
    (5, 4, 0.0, [0, 1]),
])
def test_window_starts(size: int, roi: int, overlap: float, starts: list[int]) -> None:
    assert window_starts(size, roi, overlap) == starts


def test_importance_map(xp: ModuleType) -> None:
    w = importance_map((9, 7), "gaussian", xp)
    assert w.dtype == xp.float32 and w.shape == (9, 7)
    assert float(w[4, 3]) == 1.0 and float(w.min()) >= 1e-3
    assert bool((w == w[::-1, ::-1]).all())  # symmetric
    assert float(w[0, 3]) < float(w[2, 3]) < 1.0
    assert bool((importance_map((3, 3), "constant", xp) == 1).all())


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.6])
def test_identity_model_gives_back_the_volume(xp: ModuleType, blend: str,
                                               overlap: float) -> None:
    volume = xp.asarray(np.random.default_rng(0).random((19, 23, 9), dtype=np.float32))
    model = FunctionBackend(lambda x: x, (-1, -1, -1), (-1, -1, -1))
    out = sliding_window_infer(model, volume, roi=(8, 8, 8), overlap=overlap, blend=blend)
    assert out.dtype == xp.float32 and out.shape == volume.shape
    assert bool(xp.allclose(out, volume, rtol=1e-5, atol=1e-6))


def test_constant_blend_averages_overlapping_windows() -> None:
    # Each window answers with its first value everywhere: windows start at 0 and 2 (roi 4,
    # overlap 0.5) on arange(6), so they say 0 and 2; where both cover, the mean is 1.
    model = FunctionBackend(lambda x: np.full_like(x, x.flat[0]), (-1,), (-1,))
    out = sliding_window_infer(model, np.arange(6, dtype=np.float32), roi=(4,), overlap=0.5,
                               blend="constant")
    np.testing.assert_array_equal(out, [0, 0, 1, 1, 2, 2])


def test_gaussian_blend_favours_window_centres() -> None:
    model = FunctionBackend(lambda x: np.full_like(x, x.flat[0]), (-1,), (-1,))
    out = sliding_window_infer(model, np.arange(6, dtype=np.float32), roi=(4,), overlap=0.5)
    # voxel 2 is near the centre of window 0 (answering 0) and at the edge of window 1 (2)
    w = importance_map((4,), "gaussian", np)
    expected = (0 * w[2] + 2 * w[0]) / (w[2] + w[0])
    assert out[2] == pytest.approx(expected) and out[2] < 1.0


def test_batches_windows_and_handles_channels(xp: ModuleType) -> None:
    # A batched 2-D model with one input and two output channels: [N, 1, H, W] -> [N, 2, H, W].
    model = FunctionBackend(lambda x: xp.concatenate([x, -x], axis=1), (-1, 1, -1, -1),
                            (-1, 2, -1, -1), max_batch_size=4)
    image = xp.asarray(np.random.default_rng(1).random((30, 20), dtype=np.float32))
    out = sliding_window_infer(model, image, roi=(8, 8), overlap=0.5)
    assert out.shape == (2, 30, 20)
    assert bool(xp.allclose(out[0], image, atol=1e-6) and xp.allclose(out[1], -image, atol=1e-6))
    windows = len(window_starts(30, 8, 0.5)) * len(window_starts(20, 8, 0.5))
    assert [b[0] for b in model.batches] == [4] * (windows // 4) + ([windows % 4] if windows % 4
                                                                      else [])
    assert all(b[1:] == (1, 8, 8) for b in model.batches)


def test_pads_volumes_smaller_than_the_window() -> None:
    seen: list[Any] = []

    def model_fn(x: Any) -> Any:
        seen.append(x.copy())
        return x + 1

    model = FunctionBackend(model_fn, (1, -1, -1), (1, -1, -1))
    image = np.ones((1, 5, 3), dtype=np.float32)
    out = sliding_window_infer(model, image, roi=(8, 8), pad_value=-7)
    np.testing.assert_array_equal(out, image + 1)
    assert seen[0].shape == (1, 8, 8) and (seen[0] == -7).sum() == 64 - 15


def test_integer_outputs_come_back_as_float_averages() -> None:
    model = FunctionBackend(lambda x: (x > 0.5).astype(np.uint8), (-1, -1), (-1, -1),
                            out_dtype="uint8")
    image = np.random.default_rng(2).random((40, 33), dtype=np.float32)
    out = sliding_window_infer(model, image, roi=(16, 16), overlap=0.5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image > 0.5)  # thresholding is local: windows agree


@pytest.mark.parametrize(("shape", "kwargs", "message"), [
    ((10, 10), {"roi": (8, 8), "overlap": 1.0}, r"overlap must be in \[0, 1\)"),
    ((10, 10), {"roi": (8, 8), "blend": "linear"}, r"blend gaussian or constant"),
    ((3, 4, 10, 10), {"roi": (8,)}, r"does not fit roi \(8,\)"),
    ((10, 10), {"roi": (8, 8), "batch_size": 2}, r"batch_size 2 .* between 1 and 1"),
    ((10, 10), {"roi": (8, 8), "input_name": "img"}, r"has no input 'img'; inputs are: x"),
    ((2, 10, 10), {"roi": (8, 8)}, r"takes no channel axis, but the volume has 2 channels"),
    ((10, 10, 10), {"roi": (8, 8, 8)}, r"does not take 3-D windows"),
])
def test_errors(shape: tuple[int, ...], kwargs: dict[str, Any], message: str) -> None:
    model = FunctionBackend(lambda x: x, (-1, -1), (-1, -1))
    with pytest.raises(ValueError, match=message):
        sliding_window_infer(model, np.zeros(shape, np.float32), **kwargs)

"""Fused numba kernels of the operator library vs the NumPy they replace, in the same run.

* group ``window``: ``kernels.window`` on a 300x512x512 int16 volume vs
  ``np.clip((v.astype(np.float32) - lo) / w, 0, 1)``;
* group ``label-stats``: ``kernels.label_stats`` (count, sum, bounding box of 5 labels in one
  pass) vs the per-label mask loop a user writes, and vs ``bincount`` + ``find_objects``.

The ratios (baseline median / clara-rt median) are printed at the end of the session.
Run: ``.venv/bin/python -m pytest benchmarks/test_kernels.py --benchmark-only``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from clara_rt.bench._kernels import (
    LABELS,
    LEVEL,
    SHAPE,
    WIDTH,
    label_stats_loop,
    label_volume,
    window_numpy,
    window_volume,
)
from clara_rt.operators import kernels

LO, HI = LEVEL - WIDTH / 2, LEVEL + WIDTH / 2


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return window_volume(SHAPE)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return label_volume(SHAPE, LABELS)


def _info(benchmark: Any) -> None:
    benchmark.extra_info.update(device="cpu", shape=list(SHAPE),
                                numba=kernels.numba_available())


@pytest.mark.benchmark(group="window")
def test_window_numba(compare: Callable[..., Any], benchmark: Any, volume: np.ndarray) -> None:
    _info(benchmark)
    out = compare("clara-rt numba", lambda: kernels.window(volume, LO, HI), rounds=10)
    np.testing.assert_allclose(out[:4], window_numpy(volume[:4], LO, HI), atol=1e-6)


@pytest.mark.benchmark(group="window")
def test_window_numpy(compare: Callable[..., Any], benchmark: Any, volume: np.ndarray) -> None:
    _info(benchmark)
    out = compare("numpy expression", lambda: window_numpy(volume, LO, HI), rounds=10)
    assert out.dtype == np.float32


@pytest.mark.benchmark(group="label-stats")
def test_label_stats_numba(compare: Callable[..., Any], benchmark: Any, volume: np.ndarray,
                           labels: np.ndarray) -> None:
    _info(benchmark)
    table = compare("clara-rt numba", lambda: kernels.label_stats(labels, volume, LABELS),
                    rounds=10)
    loop = label_stats_loop(labels, volume, LABELS)
    for label, (count, mean, bbox) in loop.items():
        assert table.counts[label] == count
        assert table.sums is not None and table.sums[label] / count == pytest.approx(mean)
        assert tuple(zip(table.start[label], table.stop[label], strict=True)) == bbox


@pytest.mark.benchmark(group="label-stats")
def test_label_stats_numpy_loop(compare: Callable[..., Any], benchmark: Any,
                                volume: np.ndarray, labels: np.ndarray) -> None:
    _info(benchmark)
    stats = compare("numpy per-label loop", lambda: label_stats_loop(labels, volume, LABELS),
                    rounds=5)
    assert len(stats) == LABELS


@pytest.mark.benchmark(group="label-stats")
def test_label_stats_bincount_find_objects(compare: Callable[..., Any], benchmark: Any,
                                           volume: np.ndarray, labels: np.ndarray) -> None:
    _info(benchmark)
    table = compare("numpy bincount+find_objects",
                    lambda: kernels.label_stats(labels, volume, LABELS, backend="numpy"),
                    rounds=5)
    assert int(table.counts.sum()) == int((labels > 0).sum())

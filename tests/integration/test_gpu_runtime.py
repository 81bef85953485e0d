"""The CuPy path: streams per worker, event hand-off, zero copy on the device.

These run whenever CuPy finds a CUDA device (`@pytest.mark.gpu`); without one they are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from clara_rt import Operator, Pipeline, Runtime
from clara_rt.arrays import data_pointer, get_array_module

pytestmark = pytest.mark.gpu


class _Heavy(Operator):
    """out = sin(in) * k + 1, repeated so kernels take long enough to expose a missing sync."""

    k = 1.0
    rounds = 20

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,), device="cuda")
        spec.output("out", dtype="float32", shape=(-1,), device="cuda")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        x = inputs["in"]
        outputs["out"] = _heavy(x, self.k, self.rounds)


class _Sum(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("a", dtype="float32", shape=(-1,), device="cuda")
        spec.input("b", dtype="float32", shape=(-1,), device="cuda")
        spec.output("out", dtype="float32", shape=(-1,), device="cuda")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = inputs["a"] + inputs["b"]


def _heavy(x: Any, k: float, rounds: int) -> Any:
    xp = get_array_module(x)
    for _ in range(rounds):
        x = xp.sin(x) * k + 1
    return x.astype(xp.float32)


def _expected(x: Any, k1: float, k2: float, rounds: int) -> np.ndarray:
    """The same float32 kernels called directly, on one stream, with no runtime in between.

    Elementwise CuPy kernels are deterministic, so a job must match this bit for bit: any
    difference is a missing wait between streams. (A float64 NumPy reference cannot be matched
    tightly: ``x -> 2 sin x + 1`` amplifies a 1-ulp difference between CUDA's and libm's ``sin``
    by up to 2 per round, to about 1e-4 after 20 rounds.)
    """
    import cupy

    out = _heavy(x, k1, rounds) + _heavy(x, k2, rounds)
    cupy.cuda.get_current_stream().synchronize()
    return cupy.asnumpy(out)


def test_gpu_diamond_many_jobs_matches_numpy() -> None:
    import cupy

    p = Pipeline("gpu-diamond")
    left, right, total = p.add(_Heavy("l", k=0.5)), p.add(_Heavy("r", k=2.0)), p.add(_Sum("s"))
    p.connect(left, "out", total, "a")
    p.connect(right, "out", total, "b")
    rng = np.random.default_rng(0)
    hosts = [rng.random(1 << 20, dtype=np.float32) for _ in range(8)]
    expected = [_expected(cupy.asarray(h), 0.5, 2.0, 20) for h in hosts]
    with Runtime(workers=4) as rt:
        jobs = []
        for i in range(64):
            x = cupy.asarray(hosts[i % 8])  # made on this thread's stream just before submit
            jobs.append((rt.submit(p, {"l.in": x, "r.in": x}), i % 8))
        for job, k in jobs:
            got = cupy.asnumpy(job.result()["s.out"])
            np.testing.assert_array_equal(got, expected[k])


def test_gpu_zero_copy_pointer_identity() -> None:
    import cupy

    class Pass(Operator):
        def setup(self, spec: Any) -> None:
            spec.input("in", device="cuda")
            spec.output("out", device="cuda")

        def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
            outputs["out"] = inputs["in"]

    p = Pipeline("gpu-pass")
    a, b = p.add(Pass("a")), p.add(Pass("b"))
    p.connect(a, "out", b, "in")
    x = cupy.arange(1 << 16, dtype=cupy.float32)
    with Runtime(workers=2) as rt:
        out = rt.run(p, {"a.in": x})["b.out"]
    assert out is x and data_pointer(out) == x.data.ptr

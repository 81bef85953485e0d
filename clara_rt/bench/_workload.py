"""The workload every scenario runs -- a chain of no-op operators -- and the timing helpers."""

from __future__ import annotations

import gc
import itertools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.job import Context
from clara_rt.operator import Inputs, Operator, OperatorSpec, Outputs
from clara_rt.pipeline import Pipeline

_now = time.perf_counter_ns
_ARRAY = np.zeros(1024, dtype=np.float32)  # moved by reference: its size does not matter


class NoopOp(Operator):
    """Forward the input array unchanged (one float32 port in, one out)."""

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``in`` and ``out``: float32 vectors of any length."""
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Emit the input object itself."""
        outputs["out"] = inputs["in"]


def chain_pipeline(stages: int, name: str = "chain") -> Pipeline:
    """Build ``op0 -> op1 -> ... -> op{stages-1}`` of :class:`NoopOp`; payload key ``op0.in``."""
    pipe = Pipeline(name)
    ops = [pipe.add(NoopOp(f"op{i}")) for i in range(stages)]
    for a, b in itertools.pairwise(ops):
        pipe.connect(a, "out", b, "in")
    return pipe


# --- private ------------------------------------------------------------------------------


def _noop(inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
    """The baselines' operator body: the same work as :meth:`NoopOp.compute`."""
    outputs["out"] = inputs["in"]


def _noop_task(value: Any) -> Any:
    """One dask task: the operator body with the same dict in / dict out."""
    outputs: dict[str, Any] = {}
    _noop({"in": value}, outputs)
    return outputs["out"]


@contextmanager
def _collected() -> Iterator[None]:
    """Start a timed phase with no garbage left over from setup."""
    gc.collect()
    yield


def _bind(func: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: func(*args)


def checkout_env() -> dict[str, str]:
    """Environment for a child Python that must import this clara-rt (checkout or install)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env

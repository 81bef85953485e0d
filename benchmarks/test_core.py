"""Dispatches/s of the C++ scheduler alone vs the same loop driven from Python.

``_core.bench_dispatch`` submits its jobs inside the timed call (a small handicap for C++); the
Python-driven rounds get their jobs submitted in ``setup``, outside the timing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clara_rt import _core
from clara_rt.bench import loaded_scheduler, python_drain

JOBS, CHAIN = 20_000, 10
pytestmark = pytest.mark.benchmark(group="core")


@pytest.mark.parametrize("threads", [1, 2])
def test_clara_rt_cpp(compare: Callable[..., Any], threads: int) -> None:
    compare(f"clara-rt c++ ({threads} thr)",
            lambda: _core.bench_dispatch(JOBS, CHAIN, threads), units=JOBS * CHAIN, rounds=20)


def test_python_driven(compare: Callable[..., Any]) -> None:
    compare("python-driven", python_drain, units=JOBS * CHAIN, rounds=10,
            setup=lambda: ((loaded_scheduler(JOBS, CHAIN),), {}))

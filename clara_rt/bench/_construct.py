"""The ``construct`` scenario: time to build and validate a chain pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from clara_rt.bench._baselines import _have_dask, dask_order_baseline, toposort_baseline
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _bind, _now, chain_pipeline


def construct(n: int = 100, *, repeat: int = 30,
              progress: Progress | None = None) -> BenchRecord:
    """Measure the time to build and ``validate()`` an ``n``-operator chain pipeline.

    clara-rt: create ``n`` :class:`NoopOp`, ``add`` them (runs ``setup``), ``connect`` each pair
    (port and cycle checks) and ``validate()`` (compiles the plan). Baselines, given the same
    names: ``python-dict+toposort`` builds a dict of successors and sorts it with Kahn's
    algorithm (the least any DAG runtime does); ``dask-graph+order`` builds the equivalent dask
    graph dict and runs ``dask.order.order`` on it (what dask does before executing a graph).

    Args:
        n: Operators in the chain.
        repeat: Builds per system; best and median are reported.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    runners: dict[str, Callable[[], Any]] = {
        "clara-rt": lambda: chain_pipeline(n, "construct").validate(),
        "python-dict+toposort": _bind(toposort_baseline, n)}
    if _have_dask():
        runners["dask-graph+order"] = _bind(dask_order_baseline, n)
    say(f"construct: {n} operators, {repeat} builds per system")
    samples = _build_times(runners, repeat)
    figures = {name: {"best_ms": min(s) / 1e6, "median_ms": float(np.median(s)) / 1e6}
               for name, s in samples.items()}
    clara = figures["clara-rt"]
    return BenchRecord(
        scenario="construct",
        title=f"build + validate a {n}-operator chain, {repeat} builds",
        machine=machine_info(),
        params={"n": n, "repeat": repeat},
        figures=figures,
        ratios={f"{name} / clara-rt best_ms": _ratio(fig["best_ms"], clara["best_ms"])
                for name, fig in figures.items() if name != "clara-rt"},
        targets=(Target("clara-rt best build+validate", clara["best_ms"], 5.0, "ms"),),
        notes="clara-rt also runs setup(), checks port types and cycles on every connect and "
              "compiles a plan; the baselines check nothing, so a ratio below 1 is expected.")


# --- private ------------------------------------------------------------------------------


def _build_times(runners: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[int]]:
    """Time ``repeat`` builds per system, alternating systems; return the ns samples."""
    samples: dict[str, list[int]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, run in runners.items():
            t0 = _now()
            run()
            samples[name].append(_now() - t0)
    return samples

"""The ``core`` scenario: dispatches/s of the C++ scheduler alone, and from Python."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from clara_rt import _core
from clara_rt.bench._baselines import loaded_scheduler, python_drain
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _bind


def core(jobs: int = 200_000, chain: int = 10, *, repeat: int = 3,
         progress: Progress | None = None) -> BenchRecord:
    """Measure dispatches/s of the C++ scheduler, and what driving it from Python costs.

    ``_core.bench_dispatch(jobs, chain, threads)`` submits ``jobs`` no-op chains and times
    ``threads`` C++ threads draining them (``wait_next`` / ``complete``). The baseline runs the
    same loop from Python on one thread through the bindings (``try_next`` / ``complete``),
    jobs submitted before the clock starts, as in C++.

    Args:
        jobs: Chains per round.
        chain: Nodes per chain.
        repeat: Rounds; the best of each system is reported.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    runners: dict[str, Callable[[], float]] = {
        f"c++ ({t} thread{'s' if t > 1 else ''})": _bind(_core.bench_dispatch, jobs, chain, t)
        for t in (1, 2)}
    runners["python-driven (1 thread)"] = _bind(_python_dispatch, jobs, chain)
    best = _best_seconds(runners, jobs, chain, repeat, say)
    n = jobs * chain
    figures = {name: {"dispatch_per_s": n / s, "ns_per_dispatch": s * 1e9 / n, "ms": s * 1e3}
               for name, s in best.items()}
    py = figures["python-driven (1 thread)"]["dispatch_per_s"]
    cpp = [name for name in figures if name.startswith("c++")]
    return BenchRecord(
        scenario="core",
        title=f"C++ scheduler, {jobs} chains x {chain} nodes, best of {repeat} round(s)",
        machine=machine_info(),
        params={"jobs": jobs, "chain": chain, "repeat": repeat},
        figures=figures,
        ratios={f"{name} / python-driven": _ratio(figures[name]["dispatch_per_s"], py)
                for name in cpp},
        targets=tuple(Target(f"{name} dispatches/s", figures[name]["dispatch_per_s"],
                             2_000_000.0, "/s", True) for name in cpp),
        notes="no operator runs here: this is the scheduler's bookkeeping alone; the python-"
              "driven row is the floor of what the Python runtime can reach.")


# --- private ------------------------------------------------------------------------------


def _python_dispatch(jobs: int, chain: int) -> float:
    sched = loaded_scheduler(jobs, chain)
    t0 = time.perf_counter()
    python_drain(sched)
    return time.perf_counter() - t0


def _best_seconds(runners: dict[str, Callable[[], float]], jobs: int, chain: int, repeat: int,
                  say: Progress) -> dict[str, float]:
    """Run every system ``repeat`` rounds, alternating within a round; keep each one's best."""
    best: dict[str, float] = {}
    for r in range(repeat):
        for name, run in runners.items():
            say(f"core: round {r + 1}/{repeat}: {name}, {jobs} x {chain} dispatches")
            gc.collect()
            elapsed = run()
            best[name] = min(best.get(name, elapsed), elapsed)
    return best

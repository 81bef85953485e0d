"""The ``core`` scenario (dispatches/s of the C++ scheduler alone, and from Python) and the
``dispatch`` scenario (an outside harness: per hop from two chain lengths, the job round trip,
throughput, each next to a threads + ``queue.Queue`` chain)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import numpy as np

from clara_rt import _core
from clara_rt.bench._baselines import QueueChain, loaded_scheduler, python_drain
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _ARRAY, _bind, _collected, _now, chain_pipeline
from clara_rt.executor import Runtime
from clara_rt.pipeline import Pipeline


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


def dispatch(jobs: int = 2000, *, long: int = 21, throughput_jobs: int = 100_000,
             window: int = 1000, repeat: int = 3,
             progress: Progress | None = None) -> BenchRecord:
    """Measure dispatch the way an outside harness does, interleaved with a queue baseline.

    * per hop = (p50 submit->result of a ``long``-stage no-op chain - p50 of a 1-stage chain)
      / (``long`` - 1), one job in flight, for ``Runtime(workers=1)``, ``Runtime(workers=2)``
      and :class:`QueueChain` (one thread per stage joined by ``queue.Queue``); every round
      runs every system at both lengths, so all share the machine's state of the moment.
    * submit -> result of a 1-operator job (p50, p99): the short chain's samples.
    * throughput: ``throughput_jobs`` 10-stage jobs, at most ``window`` in flight, clara-rt
      (workers=1 and 2) vs the queue chain (best round of each).

    Args:
        jobs: Jobs per system, length and round for the latency part.
        long: Stages of the long chain (the short one has 1).
        throughput_jobs: Jobs per round for the throughput part (0 skips it).
        window: Most jobs in flight for the throughput part.
        repeat: Rounds; latency samples are pooled, throughput keeps the best round.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    systems = ("clara-rt (workers=1)", "clara-rt (workers=2)", "queue-threads")
    e2e: dict[tuple[str, int], list[int]] = {(s, n): [] for s in systems for n in (1, long)}
    secs: dict[str, float] = {}
    pipes = {n: chain_pipeline(n, f"dispatch-{n}") for n in (1, long, 10)}
    for r in range(repeat):
        for name in systems:
            for n in (1, long):
                say(f"dispatch: round {r + 1}/{repeat}: {name}, {n} stage(s), {jobs} jobs")
                e2e[name, n] += _latency_run(name, pipes[n], n, jobs)
            if throughput_jobs:
                say(f"dispatch: round {r + 1}/{repeat}: {name}, {throughput_jobs} jobs stream")
                s = _stream_run(name, pipes[10], throughput_jobs, window)
                secs[name] = min(secs.get(name, s), s)
    figures = {name: _dispatch_figures(e2e[name, 1], e2e[name, long], long,
                                       throughput_jobs / secs[name] if secs else 0.0)
               for name in systems}
    return BenchRecord(
        scenario="dispatch",
        title=f"independent harness: per hop = (p50 {long}-stage - p50 1-stage) / {long - 1}, "
              f"{jobs} jobs x {repeat} round(s); throughput {throughput_jobs} 10-stage jobs",
        machine=machine_info(),
        params={"jobs": jobs, "long": long, "throughput_jobs": throughput_jobs,
                "window": window, "repeat": repeat},
        figures=figures, ratios=_dispatch_ratios(figures, throughput_jobs > 0),
        targets=_dispatch_targets(figures, throughput_jobs > 0),
        notes="submit->result of the 1-stage chain is the job round trip; a caller that waits "
              "in result() runs its job's ready tasks itself (no worker wake-up, no hand-back).")


# --- private: the dispatch harness ----------------------------------------------------------


def _latency_run(name: str, pipe: Pipeline, stages: int, jobs: int) -> list[int]:
    out: list[int] = []
    warmup = max(50, jobs // 20)
    if name.startswith("clara-rt"):
        payload = {"op0.in": _ARRAY}
        with Runtime(workers=int(name[-2])) as rt:
            submit = rt.submit
            for _ in range(warmup):
                submit(pipe, payload).result()
            with _collected():
                for _ in range(jobs):
                    t0 = _now()
                    submit(pipe, payload).result()
                    out.append(_now() - t0)
        return out
    with QueueChain(stages) as chain:
        run_one = chain.run_one
        for _ in range(warmup):
            run_one(_ARRAY)
        with _collected():
            for _ in range(jobs):
                t0 = _now()
                run_one(_ARRAY)
                out.append(_now() - t0)
    return out


def _stream_run(name: str, pipe: Pipeline, jobs: int, window: int) -> float:
    from clara_rt.bench._throughput import clara_stream

    if name.startswith("clara-rt"):
        with Runtime(workers=int(name[-2])) as rt:
            clara_stream(rt, pipe, min(jobs, 100), window)
            with _collected():
                t0 = time.perf_counter()
                clara_stream(rt, pipe, jobs, window)
                return time.perf_counter() - t0
    with QueueChain(10) as chain:
        chain.stream(min(jobs, 100), _ARRAY, window)
        with _collected():
            t0 = time.perf_counter()
            chain.stream(jobs, _ARRAY, window)
            return time.perf_counter() - t0


def _dispatch_figures(short: list[int], long: list[int], stages: int,
                      jobs_per_s: float) -> dict[str, float]:
    s = np.asarray(short, dtype=np.float64) / 1000.0
    g = np.asarray(long, dtype=np.float64) / 1000.0
    p50_s, p50_l = float(np.percentile(s, 50)), float(np.percentile(g, 50))
    return {"per_hop_us": (p50_l - p50_s) / (stages - 1), "e2e_1_p50_us": p50_s,
            "e2e_1_p99_us": float(np.percentile(s, 99)), "e2e_long_p50_us": p50_l,
            "jobs_per_s": jobs_per_s}


def _dispatch_ratios(figures: dict[str, dict[str, float]], rates: bool) -> dict[str, float]:
    base = figures["queue-threads"]
    ratios: dict[str, float] = {}
    for w in (1, 2):
        clara = figures[f"clara-rt (workers={w})"]
        ratios[f"queue / clara-rt(w={w}) per_hop_us"] = _ratio(base["per_hop_us"],
                                                               clara["per_hop_us"])
        ratios[f"queue / clara-rt(w={w}) e2e_1_p50_us"] = _ratio(base["e2e_1_p50_us"],
                                                                 clara["e2e_1_p50_us"])
        if rates:
            ratios[f"clara-rt(w={w}) / queue jobs_per_s"] = _ratio(clara["jobs_per_s"],
                                                                   base["jobs_per_s"])
    return ratios


def _dispatch_targets(figures: dict[str, dict[str, float]], rates: bool) -> tuple[Target, ...]:
    targets: list[Target] = []
    for w in (1, 2):
        clara = figures[f"clara-rt (workers={w})"]
        targets.append(Target(f"clara-rt(w={w}) per hop", clara["per_hop_us"], 2.0, "us"))
        if rates:
            targets.append(Target(f"clara-rt(w={w}) / queue jobs/s",
                                  clara["jobs_per_s"] / figures["queue-threads"]["jobs_per_s"],
                                  1.0, "x", True))
    one = figures["clara-rt (workers=1)"]
    targets.append(Target("clara-rt(w=1) 1-op submit->result p50", one["e2e_1_p50_us"], 30.0,
                          "us"))
    targets.append(Target("clara-rt(w=1) 1-op submit->result p99", one["e2e_1_p99_us"], 100.0,
                          "us"))
    return tuple(targets)


# --- private: the core scenario ------------------------------------------------------------


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

"""The ``throughput`` scenario: jobs/s and dispatches/s with many jobs in flight."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from clara_rt.bench._baselines import QueueChain, _have_dask, dask_stream
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _ARRAY, _bind, _collected, chain_pipeline
from clara_rt.executor import Runtime
from clara_rt.pipeline import Pipeline

_StreamRunners = dict[str, tuple[int, Callable[[], float]]]
"""System name -> (jobs it runs, one timed round returning seconds)."""


def throughput(jobs: int = 100_000, stages: int = 10, *, window: int = 1000, workers: int = 2,
               extra_workers: tuple[int, ...] = (1,), dask_jobs: int | None = None,
               repeat: int = 1, progress: Progress | None = None) -> BenchRecord:
    """Measure jobs/s and operator dispatches/s with up to ``window`` jobs in flight.

    * clara-rt: ``Runtime(workers)``; ``submit`` until ``window`` jobs are pending, then
      ``result()`` of the oldest before each further submit (:func:`clara_stream`). Also run
      with each of ``extra_workers`` for reference (no target).
    * queue-threads: :class:`QueueChain` with one thread per stage, same window.
    * dask: ``dask.threaded.get(graph, keys, num_workers=workers)`` on one graph per batch of
      ``window`` jobs, each job the same ``stages``-task chain under unique keys
      (:func:`dask_stream`). Batching is the fairest choice: one ``get`` per job would charge
      dask its per-call setup (thread pool lookup, state building) for every 10 tasks, while one
      graph for all jobs would hold every job in flight at once. Building the graph dict is
      timed, as ``submit`` is for clara-rt. dask runs ``dask_jobs`` jobs (default
      ``min(jobs, 10_000)``): it is slower per task, and rates are comparable.

    Best round per system is reported; runtime and thread start-up are not timed.

    Args:
        jobs: Jobs per round for clara-rt and the queue baseline.
        stages: Operators per job.
        window: Most jobs in flight.
        workers: clara-rt worker threads (the figure the target applies to) and dask threads.
        extra_workers: Further clara-rt worker counts to report.
        dask_jobs: Jobs per round for dask; 0 skips dask.
        repeat: Rounds (systems alternate within a round).
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    dask_jobs = min(jobs, 10_000) if dask_jobs is None else dask_jobs
    dask_jobs = dask_jobs if _have_dask() else 0
    runners = _stream_runners(jobs, stages, window, workers, extra_workers, dask_jobs)
    best = _best_seconds(runners, repeat, say)
    figures = _rate_figures(runners, best, stages)
    claras = [name for name in figures if name.startswith("clara-rt")]
    return BenchRecord(
        scenario="throughput",
        title=f"{stages}-stage no-op chain, <= {window} jobs in flight, best of {repeat} round(s)",
        machine=machine_info(),
        params={"jobs": jobs, "stages": stages, "window": window, "workers": workers,
                "extra_workers": list(extra_workers), "dask_jobs": dask_jobs, "repeat": repeat},
        figures=figures, ratios=_rate_ratios(figures, claras),
        targets=(Target(f"{claras[0]} dispatches/s", figures[claras[0]]["dispatch_per_s"],
                        100_000.0, "/s", True),),
        notes="dask runs one graph per batch of `window` jobs (graph building timed) and "
              "fewer jobs than the others; rates are comparable. No-op operators hold the GIL, "
              "so extra workers only add contention here.")


def clara_stream(rt: Runtime, pipe: Pipeline, jobs: int, window: int) -> None:
    """Run ``jobs`` jobs of a :func:`chain_pipeline` on ``rt``, at most ``window`` in flight.

    Submits until ``window`` jobs are pending, then waits for the oldest before each further
    submit; returns when every job has finished (``result()`` raises if one failed).
    """
    payload = {"op0.in": _ARRAY}
    submit = rt.submit
    pending: deque[Any] = deque()
    for _ in range(jobs):
        if len(pending) >= window:
            pending.popleft().result()
        pending.append(submit(pipe, payload))
    while pending:
        pending.popleft().result()


# --- private: one system's run ------------------------------------------------------------


def _clara_stream(pipe: Pipeline, jobs: int, window: int, workers: int) -> float:
    with Runtime(workers=workers) as rt:
        clara_stream(rt, pipe, min(jobs, 100), window)
        with _collected():
            t0 = time.perf_counter()
            clara_stream(rt, pipe, jobs, window)
            return time.perf_counter() - t0


def _queue_stream(stages: int, jobs: int, window: int) -> float:
    with QueueChain(stages) as chain:
        chain.stream(min(jobs, 100), _ARRAY, window)
        with _collected():
            t0 = time.perf_counter()
            chain.stream(jobs, _ARRAY, window)
            return time.perf_counter() - t0


def _dask_stream(stages: int, jobs: int, window: int, workers: int) -> float:
    dask_stream(stages, min(jobs, 100), window, workers)  # creates dask's thread pool
    with _collected():
        t0 = time.perf_counter()
        dask_stream(stages, jobs, window, workers)
        return time.perf_counter() - t0


# --- private: helpers ---------------------------------------------------------------------


def _stream_runners(jobs: int, stages: int, window: int, workers: int,
                    extra_workers: tuple[int, ...], dask_jobs: int) -> _StreamRunners:
    """Return every system's round: clara-rt per worker count, queue-threads, dask if run."""
    pipe = chain_pipeline(stages, "throughput")
    runners: _StreamRunners = {
        f"clara-rt (workers={w})": (jobs, _bind(_clara_stream, pipe, jobs, window, w))
        for w in (workers, *extra_workers)}
    runners["queue-threads"] = (jobs, _bind(_queue_stream, stages, jobs, window))
    if dask_jobs > 0:
        runners[f"dask-threaded (workers={workers})"] = (
            dask_jobs, _bind(_dask_stream, stages, dask_jobs, window, workers))
    return runners


def _best_seconds(runners: _StreamRunners, repeat: int, say: Progress) -> dict[str, float]:
    """Run every system ``repeat`` rounds, alternating within a round; keep each one's best."""
    best: dict[str, float] = {}
    for r in range(repeat):
        for name, (count, run) in runners.items():
            say(f"throughput: round {r + 1}/{repeat}: {name}, {count} jobs")
            elapsed = run()
            best[name] = min(best.get(name, elapsed), elapsed)
    return best


def _rate_figures(runners: _StreamRunners, best: dict[str, float],
                  stages: int) -> dict[str, dict[str, float]]:
    return {name: {"jobs": count, "seconds": best[name], "jobs_per_s": count / best[name],
                   "dispatch_per_s": count * stages / best[name],
                   "us_per_dispatch": best[name] * 1e6 / (count * stages)}
            for name, (count, _) in runners.items()}


def _rate_ratios(figures: dict[str, dict[str, float]], claras: list[str]) -> dict[str, float]:
    return {f"{clara} / {name} jobs_per_s": _ratio(figures[clara]["jobs_per_s"],
                                                   fig["jobs_per_s"])
            for clara in claras for name, fig in figures.items() if name not in claras}

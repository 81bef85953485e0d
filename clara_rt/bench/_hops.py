"""The ``hops`` scenario: per-hop latency of a no-op chain, one job in flight."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from clara_rt.bench._baselines import QueueChain
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _ARRAY, _bind, _collected, _noop, _now, chain_pipeline
from clara_rt.executor import Runtime
from clara_rt.pipeline import Pipeline

_HopRunner = Callable[[], tuple[list[int], list[int]]]
"""One system's round: returns (hop gaps, end-to-end times), in ns."""


def hops(stages: int = 10, jobs: int = 3000, *, repeat: int = 1, warmup: int = 100,
         progress: Progress | None = None) -> BenchRecord:
    """Measure per-hop latency of a ``stages``-long no-op chain, one job in flight.

    A hop is the gap between one operator's end and the next one's start, read from
    ``job.timings`` for clara-rt (``Runtime(workers=1)`` and ``(workers=2)``) and from the stage
    timestamps of :class:`QueueChain`; all gaps of all jobs are pooled. End-to-end is submit ->
    result per job. ``python-inline`` calls the same no-op body in a plain loop: the floor.

    Args:
        stages: Operators in the chain.
        jobs: Measured jobs per system and round.
        repeat: Rounds; systems alternate within a round, samples are pooled.
        warmup: Unmeasured jobs before each system's measured ones.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    pipe = chain_pipeline(stages, "hops")
    runners: dict[str, _HopRunner] = {
        f"clara-rt (workers={w})": _bind(_clara_hops, pipe, jobs, warmup, w) for w in (1, 2)}
    runners["queue-threads"] = _bind(_queue_hops, stages, jobs, warmup)
    runners["python-inline (floor)"] = _bind(_inline_hops, stages, jobs)
    gaps, e2e = _pooled_samples(runners, jobs, repeat, say)
    figures = {name: _hop_figures(gaps[name], e2e[name], stages) for name in runners}
    ratios, targets = _hop_ratios(figures)
    return BenchRecord(
        scenario="hops",
        title=f"{stages}-stage no-op chain, one job in flight, {jobs} jobs x {repeat} round(s); "
              "per hop: end of op i -> start of op i+1",
        machine=machine_info(),
        params={"stages": stages, "jobs": jobs, "repeat": repeat, "warmup": warmup},
        figures=figures, ratios=ratios, targets=tuple(targets),
        notes="clara-rt runs a linear chain on one worker (complete() hands it the next node), "
              "the queue baseline hands every hop to another thread; e2e is submit->result "
              "per job and includes waking a worker and the caller.")


# --- private: one system's run ------------------------------------------------------------


def _clara_hops(pipe: Pipeline, jobs: int, warmup: int,
                workers: int) -> tuple[list[int], list[int]]:
    names = [op.name for op in pipe.operators]
    payload = {"op0.in": _ARRAY}
    gaps: list[int] = []
    e2e: list[int] = []
    with Runtime(workers=workers) as rt:
        for _ in range(warmup):
            rt.submit(pipe, payload).result()
        with _collected():
            for _ in range(jobs):
                t0 = _now()
                job = rt.submit(pipe, payload)
                job.result()
                e2e.append(_now() - t0)
                spans = [job.timings[n] for n in names]
                gaps += [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    return gaps, e2e


def _queue_hops(stages: int, jobs: int, warmup: int) -> tuple[list[int], list[int]]:
    e2e: list[int] = []
    with QueueChain(stages, timed=True) as chain:
        for _ in range(warmup):
            chain.run_one(_ARRAY)
        for s in chain.stamps:
            s.clear()
        with _collected():
            for _ in range(jobs):
                t0 = _now()
                chain.run_one(_ARRAY)
                e2e.append(_now() - t0)
    st = chain.stamps
    gaps = [st[i + 1][j][0] - st[i][j][1] for j in range(jobs) for i in range(stages - 1)]
    return gaps, e2e


def _inline_hops(stages: int, jobs: int) -> tuple[list[int], list[int]]:
    gaps: list[int] = []
    e2e: list[int] = []
    with _collected():
        for _ in range(jobs):
            t0 = end = _now()
            value = _ARRAY
            for i in range(stages):
                outputs: dict[str, Any] = {}
                inputs = {"in": value}
                start = _now()
                _noop(inputs, outputs)
                if i:
                    gaps.append(start - end)
                end = _now()
                value = outputs["out"]
            e2e.append(_now() - t0)
    return gaps, e2e


# --- private: helpers ---------------------------------------------------------------------


def _pooled_samples(runners: dict[str, _HopRunner], jobs: int, repeat: int,
                    say: Progress) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Run every system ``repeat`` rounds, alternating within a round; pool gaps and e2e."""
    gaps: dict[str, list[int]] = {name: [] for name in runners}
    e2e: dict[str, list[int]] = {name: [] for name in runners}
    for r in range(repeat):
        for name, run in runners.items():
            say(f"hops: round {r + 1}/{repeat}: {name}, {jobs} jobs")
            g, e = run()
            gaps[name] += g
            e2e[name] += e
    return gaps, e2e


def _hop_figures(gaps: list[int], e2e: list[int], stages: int) -> dict[str, float]:
    g = np.asarray(gaps, dtype=np.float64) / 1000.0
    e = np.asarray(e2e, dtype=np.float64) / 1000.0
    return {"p50_us": float(np.percentile(g, 50)), "p99_us": float(np.percentile(g, 99)),
            "mean_us": float(g.mean()), "e2e_p50_us": float(np.percentile(e, 50)),
            "e2e_p99_us": float(np.percentile(e, 99)),
            "e2e_per_stage_us": float(np.percentile(e, 50)) / stages, "hops": float(g.size)}


def _hop_ratios(figures: dict[str, dict[str, float]]) -> tuple[dict[str, float], list[Target]]:
    """Return queue / clara-rt ratios and the latency targets, per clara-rt worker count."""
    ratios: dict[str, float] = {}
    targets: list[Target] = []
    base = figures["queue-threads"]
    for w in (1, 2):
        clara = figures[f"clara-rt (workers={w})"]
        for metric in ("p50_us", "p99_us", "e2e_p50_us"):
            ratios[f"queue / clara-rt(w={w}) {metric}"] = _ratio(base[metric], clara[metric])
        targets.append(Target(f"clara-rt(w={w}) p50 per hop", clara["p50_us"], 2.0, "us"))
        targets.append(Target(f"queue / clara-rt(w={w}) p50 per hop",
                              ratios[f"queue / clara-rt(w={w}) p50_us"], 5.0, "x", True))
    return ratios, targets

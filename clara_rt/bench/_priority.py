"""The ``priority`` scenario: latency of urgent jobs behind a backlog, and shares per class.

Runs the ``ct-lung-seg`` reference pipeline (``examples/ct-lung-seg/pipeline.yaml``: DICOM
series -> HU threshold lung mask -> largest components -> SEG, NIfTI, PNGs, volumes) on a chest
phantom (:mod:`clara_rt.bench._chest`) with ``Runtime(workers=2)``:

1. **idle**: the submit -> result latency of a lone ``normal`` job (the floor).
2. **backlog**: ``backlog`` ``normal`` jobs are queued, then ``immediate`` and ``high`` jobs are
   submitted one at a time; their submit -> result latency is compared with the idle latency and
   with what a FIFO queue would make them wait (the normal jobs still queued x the measured time
   per job / workers). The backlog is cancelled afterwards.
3. **saturation**: ``high``, ``normal`` and ``low`` jobs are kept queued (``depth`` each) for
   ``window`` seconds; the share of completed jobs per class is compared with the configured
   weights (4:2:1 -> 57 / 29 / 14 %).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.bench._chest import chest_series
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.executor import Runtime
from clara_rt.job import Job

__all__ = ["ct_lung_seg", "priority"]

_WEIGHTS = (4, 2, 1)
_CLASSES = ("high", "normal", "low")


def ct_lung_seg() -> Any:
    """Build the ``ct-lung-seg`` reference pipeline (a ``BuiltPipeline``) from its YAML."""
    from clara_rt.definition import parse_definition
    from clara_rt.definition.build import build_pipeline

    return build_pipeline(parse_definition(_pipeline_yaml()))


def priority(backlog: int = 1000, *, probes: int = 5, window: float = 8.0, depth: int = 12,
             shape: tuple[int, int, int] = (16, 64, 64), workers: int = 2, repeat: int = 1,
             progress: Progress | None = None) -> BenchRecord:
    """Measure urgent-job latency behind ``backlog`` normal jobs and shares under saturation.

    Args:
        backlog: Normal jobs queued before the urgent ones.
        probes: Immediate (and high) jobs measured, one at a time, behind the backlog.
        window: Seconds of saturation for the per-class shares.
        depth: Jobs kept queued per class during saturation.
        shape: Phantom shape (slices, rows, columns).
        workers: Runtime worker threads.
        repeat: Accepted for the CLI's ``--repeat``: multiplies ``probes``.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    probes *= repeat
    idle, urgent, fifo_wait_s, per_job_s, shares, completed = _measure(
        backlog, probes, window, depth, shape, workers, say)
    want = {c: w / sum(_WEIGHTS) for c, w in zip(_CLASSES, _WEIGHTS, strict=True)}
    figures = _figures(backlog, idle, urgent, fifo_wait_s, shares, completed, want)
    worst_pp = max(abs(shares[c] - want[c]) for c in _CLASSES) * 100
    imm_p50 = float(np.median(urgent["immediate"]))
    high_p50 = float(np.median(urgent["high"]))
    idle_p50 = float(np.median(idle))
    ratios = {
        "FIFO wait / immediate p50": _ratio(fifo_wait_s, imm_p50),
        "FIFO wait / high p50": _ratio(fifo_wait_s, high_p50),
        "idle normal / immediate p50": _ratio(idle_p50, imm_p50),
        "idle normal / high p50": _ratio(idle_p50, high_p50),
    }
    return BenchRecord(
        scenario="priority",
        title=f"ct-lung-seg on a {shape[0]}x{shape[1]}x{shape[2]} phantom, Runtime(workers="
              f"{workers}), weights 4:2:1; latency behind {backlog} queued normal jobs, shares "
              f"over a {window:.0f} s saturation window",
        machine=machine_info(),
        params={"backlog": backlog, "probes": probes, "window_s": window, "depth": depth,
                "shape": list(shape), "workers": workers, "per_job_s": per_job_s},
        figures=figures, ratios=ratios,
        targets=(Target("immediate p50 / idle p50", _ratio(imm_p50, idle_p50), 3.0, "x"),
                 Target("worst class share vs weight", worst_pp, 10.0, "pp")),
        notes="FIFO estimate = normal jobs still queued when the probe is submitted x measured "
              "seconds per job / workers (what the probe would wait in one FIFO queue). An "
              "urgent job still waits for the operators already running (up to one job's "
              "length), so 'idle / immediate' is below 1. Shares count jobs completed inside "
              "the window after a 1 s warm-up.")


# --- private ------------------------------------------------------------------------------


def _measure(backlog: int, probes: int, window: float, depth: int, shape: tuple[int, int, int],
             workers: int, say: Progress) -> tuple[list[float], dict[str, list[float]], float,
                                                   float, dict[str, float], dict[str, int]]:
    """Run the three phases on one Runtime.

    Returns:
        The idle latencies, the urgent latencies per class, the FIFO estimate and the seconds
        per job (both s), and the saturation shares and completed jobs per class.
    """
    folder = chest_series(shape)
    built = ct_lung_seg()
    payload = built.payload_for(folder)
    scratch = Path(tempfile.mkdtemp(prefix="clara-rt-bench-priority-"))
    counter = iter(range(10**9))

    def submit(rt: Runtime, prio: str) -> Job:
        return rt.submit(built.pipeline, payload, priority=prio,
                         workspace=scratch / f"{next(counter)}")

    try:
        with Runtime(workers=workers, weights=_WEIGHTS) as rt:
            say(f"priority: idle latency, shape {shape}")
            idle = _idle(rt, submit, max(5, probes))
            say(f"priority: {backlog} normal jobs queued, {probes} immediate + high probes")
            urgent, fifo_wait_s, per_job_s = _behind_backlog(rt, submit, backlog, probes,
                                                             workers)
            say(f"priority: saturation, {window:.0f} s, {depth} queued per class")
            shares, completed = _saturation(rt, submit, window, depth)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return idle, urgent, fifo_wait_s, per_job_s, shares, completed


def _figures(backlog: int, idle: list[float], urgent: dict[str, list[float]],
             fifo_wait_s: float, shares: dict[str, float], completed: dict[str, int],
             want: dict[str, float]) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {
        "normal, idle runtime": _lat(idle),
        f"immediate, behind {backlog} normal": _lat(urgent["immediate"]),
        f"high, behind {backlog} normal": _lat(urgent["high"]),
        f"FIFO estimate (normal #{backlog})": {"p50_ms": fifo_wait_s * 1e3},
    }
    for c in _CLASSES:
        figures[f"saturation: {c}"] = {"share_pct": 100 * shares[c],
                                       "weight_pct": 100 * want[c],
                                       "completed": float(completed[c])}
    return figures


def _pipeline_yaml() -> Path:
    here = Path(__file__).resolve()
    for root in (here.parents[2], Path.cwd()):
        path = root / "examples" / "ct-lung-seg" / "pipeline.yaml"
        if path.exists():
            return path
    raise FileNotFoundError("examples/ct-lung-seg/pipeline.yaml not found (run from a checkout)")


def _lat(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1e3
    return {"p50_ms": float(np.median(arr)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean()), "n": float(len(arr))}


def _timed(rt: Runtime, submit: Any, prio: str) -> float:
    t0 = time.perf_counter()
    submit(rt, prio).result()
    return time.perf_counter() - t0


def _idle(rt: Runtime, submit: Any, n: int) -> list[float]:
    for _ in range(3):  # warm-up: imports, numba compilation, page cache
        submit(rt, "normal").result()
    return [_timed(rt, submit, "normal") for _ in range(n)]


def _behind_backlog(rt: Runtime, submit: Any, backlog: int, probes: int,
                    workers: int) -> tuple[dict[str, list[float]], float, float]:
    jobs = [submit(rt, "normal") for _ in range(backlog)]
    t0 = time.perf_counter()
    while sum(j.done for j in jobs) < 2 * workers:  # steady state: both workers busy
        time.sleep(0.005)
    urgent: dict[str, list[float]] = {"immediate": [], "high": []}
    waits: list[float] = []
    for _ in range(probes):
        for prio in urgent:
            queued = backlog - sum(j.done for j in jobs)
            done = sum(j.done for j in jobs)
            per_job = (time.perf_counter() - t0) / max(done, 1) * workers
            waits.append(queued * per_job / workers)
            urgent[prio].append(_timed(rt, submit, prio))
    done = sum(j.done for j in jobs)
    per_job = (time.perf_counter() - t0) / max(done, 1) * workers
    for j in jobs:
        j.cancel()
    for j in jobs:
        j.wait()
    return urgent, float(np.median(waits)), per_job


def _saturation(rt: Runtime, submit: Any, window: float,
                depth: int) -> tuple[dict[str, float], dict[str, int]]:
    lock = threading.Lock()
    finished: list[tuple[float, str]] = []
    pending: dict[str, set[Job]] = {c: set() for c in _CLASSES}

    def on_done(job: Job, cls: str) -> None:
        with lock:
            pending[cls].discard(job)
            if job.state.value == "succeeded":
                finished.append((time.perf_counter(), cls))

    t0 = time.perf_counter()
    end = t0 + window
    while time.perf_counter() < end:
        for cls in _CLASSES:
            with lock:
                missing = depth - len(pending[cls])
            for _ in range(missing):
                job = submit(rt, cls)
                with lock:
                    pending[cls].add(job)
                job.add_done_callback(lambda j, c=cls: on_done(j, c))
        time.sleep(0.002)
    with lock:
        left = [j for jobs in pending.values() for j in jobs]
        counted = [c for t, c in finished if t0 + min(1.0, window / 4) <= t <= end]
    for j in left:
        j.cancel()
    for j in left:
        j.wait()
    completed = {c: counted.count(c) for c in _CLASSES}
    total = max(sum(completed.values()), 1)
    return {c: completed[c] / total for c in _CLASSES}, completed

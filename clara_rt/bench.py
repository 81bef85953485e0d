"""Benchmark scenarios behind ``clara-rt bench`` and ``benchmarks/run_all.py``.

Every scenario measures clara-rt *and* a baseline in the same process and the same run, and
reports their ratio: on a shared machine absolute times are noise, ratios are not. Scenarios:

* :func:`hops` -- per-hop latency of a chain of no-op operators, one job in flight; baseline:
  one thread per stage joined by ``queue.Queue``.
* :func:`throughput` -- jobs/s and operator dispatches/s with many jobs in flight; baselines: the
  queue chain and dask's threaded scheduler.
* :func:`core` -- dispatches/s of the C++ scheduler alone; baseline: the same loop driven from
  Python through the bindings.
* :func:`construct` -- time to build and validate a chain pipeline; baseline: a plain
  dict-of-successors graph and its topological sort.
* :func:`idle_rss` -- resident memory of a fresh process with a Runtime; baseline: numpy only.

Each returns a frozen :class:`BenchRecord`; :func:`format_table` renders it. Ratios are always
oriented so that **a value above 1 means clara-rt is better**: baseline/clara-rt for times and
memory, clara-rt/baseline for rates.

Not thread-safe: run one scenario at a time (they start and stop their own threads).
"""

from __future__ import annotations

import gc
import importlib.metadata
import itertools
import os
import platform
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import clara_rt
from clara_rt import _core
from clara_rt.executor import Runtime
from clara_rt.job import Context
from clara_rt.operator import Inputs, Operator, OperatorSpec, Outputs
from clara_rt.pipeline import Pipeline

__all__ = [
    "SCENARIOS",
    "BenchRecord",
    "NoopOp",
    "Progress",
    "QueueChain",
    "Target",
    "chain_pipeline",
    "clara_stream",
    "construct",
    "core",
    "dask_order_baseline",
    "dask_stream",
    "format_table",
    "hops",
    "idle_rss",
    "loaded_scheduler",
    "machine_info",
    "python_drain",
    "run_scenario",
    "throughput",
    "toposort_baseline",
]

Progress = Callable[[str], None]
"""Receives one-line progress messages (the CLI prints them to stderr)."""

_now = time.perf_counter_ns
_STOP = object()
_ARRAY = np.zeros(1024, dtype=np.float32)  # moved by reference: its size does not matter


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for one figure, e.g. ``p50 per hop <= 2 us``."""

    name: str
    value: float
    limit: float
    unit: str
    higher_is_better: bool = False

    @property
    def passed(self) -> bool:
        """Whether ``value`` meets ``limit``."""
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


@dataclass(frozen=True, slots=True)
class BenchRecord:
    """The outcome of one scenario: per-system figures, ratios and targets.

    Attributes:
        scenario: Scenario name (``hops``, ``throughput``...).
        title: One line saying what was measured.
        machine: Host, CPUs and versions (:func:`machine_info`).
        params: The sizes the scenario ran with.
        figures: ``{system: {metric: value}}``; clara-rt and its baseline(s).
        ratios: ``{description: value}``; above 1 means clara-rt is better.
        targets: Goals checked against the figures.
        notes: How to read the figures (fairness choices, caveats).
    """

    scenario: str
    title: str
    machine: dict[str, Any]
    params: dict[str, Any]
    figures: dict[str, dict[str, float]]
    ratios: dict[str, float]
    targets: tuple[Target, ...] = ()
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-ready data (targets carry ``passed``)."""
        data = asdict(self)
        data["targets"] = [{**asdict(t), "passed": t.passed} for t in self.targets]
        return data


def machine_info() -> dict[str, Any]:
    """Describe this machine: hostname, CPUs, Python, numpy, clara-rt and dask versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    try:
        dask_version: str | None = importlib.metadata.version("dask")
    except importlib.metadata.PackageNotFoundError:
        dask_version = None
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "clara_rt": clara_rt.__version__,
        "clara_rt_core": _core.__version__,
        "dask": dask_version,
    }


def format_table(record: BenchRecord) -> str:
    """Render a record as a text table, then its ratios and targets (PASS/MISS)."""
    cols: list[str] = []
    for fig in record.figures.values():
        cols.extend(k for k in fig if k not in cols)
    rows = [["system", *cols]]
    rows += [[name, *(_fmt(fig.get(c)) for c in cols)] for name, fig in record.figures.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"== {record.scenario}: {record.title}"]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:],
                                                                        strict=True)]
        lines.append("  " + "  ".join(cells))
    if record.ratios:
        lines.append("  ratios (above 1: clara-rt better)")
        width = max(len(k) for k in record.ratios)
        lines += [f"    {k.ljust(width)}  {v:8.2f}x" for k, v in record.ratios.items()]
    for t in record.targets:
        op = ">=" if t.higher_is_better else "<="
        lines.append(f"  {'PASS' if t.passed else 'MISS'}  {t.name}: {_fmt(t.value)} {t.unit} "
                     f"(target {op} {_fmt(t.limit)} {t.unit})")
    if record.notes:
        lines.append(f"  note: {record.notes}")
    return "\n".join(lines)


# --- the workload: a chain of no-op operators ---------------------------------------------


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


def _noop(inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
    """The baselines' operator body: the same work as :meth:`NoopOp.compute`."""
    outputs["out"] = inputs["in"]


def _noop_task(value: Any) -> Any:
    """One dask task: the operator body with the same dict in / dict out."""
    outputs: dict[str, Any] = {}
    _noop({"in": value}, outputs)
    return outputs["out"]


class QueueChain:
    """Baseline: one thread per stage, stages joined by unbounded ``queue.Queue``s.

    Each stage runs ``get -> no-op -> put``. With ``timed=True`` it stamps ``perf_counter_ns``
    right after ``get`` and right before ``put`` (the same points clara-rt records as an
    operator's start and end), one ``(in_ns, out_ns)`` pair per item in :attr:`stamps`.

    Args:
        stages: Number of stage threads.
        timed: Record per-stage timestamps (for hop latency).

    Use as a context manager: threads start on entry and are joined on exit.
    """

    def __init__(self, stages: int, *, timed: bool = False) -> None:
        self.queues: list[queue.Queue[Any]] = [queue.Queue() for _ in range(stages + 1)]
        self.stamps: list[list[tuple[int, int]]] = [[] for _ in range(stages)]
        target = _timed_stage if timed else _plain_stage
        self._threads = [
            threading.Thread(target=target, name=f"bench-queue-stage-{i}", daemon=True,
                             args=(self.queues[i], self.queues[i + 1], self.stamps[i]))
            for i in range(stages)]

    def __enter__(self) -> QueueChain:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queues[0].put(_STOP)
        for t in self._threads:
            t.join()
        self.queues[-1].get()  # the stop marker that went all the way through

    def run_one(self, value: Any) -> Any:
        """Send one value through every stage and wait for it to come out."""
        self.queues[0].put(value)
        return self.queues[-1].get()

    def stream(self, jobs: int, value: Any, window: int) -> None:
        """Send ``jobs`` values through, at most ``window`` in flight, and collect them all."""
        put, get = self.queues[0].put, self.queues[-1].get
        in_flight = 0
        for _ in range(jobs):
            if in_flight >= window:
                get()
                in_flight -= 1
            put(value)
            in_flight += 1
        for _ in range(in_flight):
            get()


def _plain_stage(q_in: queue.Queue[Any], q_out: queue.Queue[Any],
                 stamps: list[tuple[int, int]]) -> None:
    get, put = q_in.get, q_out.put
    while (value := get()) is not _STOP:
        outputs: dict[str, Any] = {}
        _noop({"in": value}, outputs)
        put(outputs["out"])
    put(_STOP)


def _timed_stage(q_in: queue.Queue[Any], q_out: queue.Queue[Any],
                 stamps: list[tuple[int, int]]) -> None:
    get, put, record = q_in.get, q_out.put, stamps.append
    while (value := get()) is not _STOP:
        t_in = _now()
        outputs: dict[str, Any] = {}
        _noop({"in": value}, outputs)
        record((t_in, _now()))
        put(outputs["out"])
    put(_STOP)


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


def dask_stream(stages: int, jobs: int, window: int, workers: int) -> None:
    """Run ``jobs`` no-op chains with ``dask.threaded.get``, one merged graph per ``window`` jobs.

    Each job is ``stages`` tasks under unique keys (``"j{job}-{stage}"``), each task the same
    dict-in / dict-out no-op body as :class:`NoopOp`. Building the graph is part of the work.
    """
    from dask.threaded import get

    for first in range(0, jobs, window):
        last = min(first + window, jobs)
        dsk: dict[str, Any] = {"x": _ARRAY}
        for j in range(first, last):
            dsk[f"j{j}-0"] = (_noop_task, "x")
            for i in range(1, stages):
                dsk[f"j{j}-{i}"] = (_noop_task, f"j{j}-{i - 1}")
        get(dsk, [f"j{j}-{stages - 1}" for j in range(first, last)], num_workers=workers)


def loaded_scheduler(jobs: int, chain: int) -> _core.Scheduler:
    """Return a ``_core.Scheduler`` holding ``jobs`` submitted ``chain``-node linear jobs."""
    sched = _core.Scheduler()
    graph = sched.add_graph(chain, [(i, i + 1) for i in range(chain - 1)], [-1] * chain)
    submit, normal = sched.submit, _core.PRIORITY_NORMAL
    for _ in range(jobs):
        submit(graph, normal)
    return sched


def python_drain(sched: _core.Scheduler) -> None:
    """Dispatch every ready task from Python, as a C++ worker of ``bench_dispatch`` does."""
    try_next, complete = sched.try_next, sched.complete
    while (task := try_next()) is not None:
        job, node = task
        while job >= 0:
            _, job, node = complete(job, node)


def toposort_baseline(n: int) -> list[str]:
    """Build an ``n``-node chain as a dict of successors and sort it (Kahn): no checks at all."""
    names = [f"op{i}" for i in range(n)]
    succ: dict[str, list[str]] = {name: [] for name in names}
    for a, b in itertools.pairwise(names):
        succ[a].append(b)
    indegree = dict.fromkeys(names, 0)
    for out in succ.values():
        for b in out:
            indegree[b] += 1
    ready = deque(k for k, d in indegree.items() if d == 0)
    order: list[str] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for b in succ[node]:
            indegree[b] -= 1
            if indegree[b] == 0:
                ready.append(b)
    return order


def dask_order_baseline(n: int) -> dict[Any, Any]:
    """Build the equivalent ``n``-task dask graph dict and run ``dask.order.order`` on it."""
    from dask.order import order

    dsk: dict[Any, Any] = {"op0": (_noop_task, _ARRAY)}
    for i in range(1, n):
        dsk[f"op{i}"] = (_noop_task, f"op{i - 1}")
    return order(dsk)


# --- scenarios ----------------------------------------------------------------------------


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
    runners: dict[str, Callable[[], tuple[list[int], list[int]]]] = {
        f"clara-rt (workers={w})": _bind(_clara_hops, pipe, jobs, warmup, w) for w in (1, 2)}
    runners["queue-threads"] = _bind(_queue_hops, stages, jobs, warmup)
    runners["python-inline (floor)"] = _bind(_inline_hops, stages, jobs)
    gaps: dict[str, list[int]] = {name: [] for name in runners}
    e2e: dict[str, list[int]] = {name: [] for name in runners}
    for r in range(repeat):
        for name, run in runners.items():
            say(f"hops: round {r + 1}/{repeat}: {name}, {jobs} jobs")
            g, e = run()
            gaps[name] += g
            e2e[name] += e
    figures = {name: _hop_figures(gaps[name], e2e[name], stages) for name in runners}
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
    pipe = chain_pipeline(stages, "throughput")
    runners: dict[str, tuple[int, Callable[[], float]]] = {
        f"clara-rt (workers={w})": (jobs, _bind(_clara_stream, pipe, jobs, window, w))
        for w in (workers, *extra_workers)}
    runners["queue-threads"] = (jobs, _bind(_queue_stream, stages, jobs, window))
    if dask_jobs > 0:
        runners[f"dask-threaded (workers={workers})"] = (
            dask_jobs, _bind(_dask_stream, stages, dask_jobs, window, workers))
    best: dict[str, float] = {}
    for r in range(repeat):
        for name, (count, run) in runners.items():
            say(f"throughput: round {r + 1}/{repeat}: {name}, {count} jobs")
            elapsed = run()
            best[name] = min(best.get(name, elapsed), elapsed)
    figures = {name: {"jobs": count, "seconds": best[name], "jobs_per_s": count / best[name],
                      "dispatch_per_s": count * stages / best[name],
                      "us_per_dispatch": best[name] * 1e6 / (count * stages)}
               for name, (count, _) in runners.items()}
    claras = [name for name in figures if name.startswith("clara-rt")]
    ratios = {f"{clara} / {name} jobs_per_s": _ratio(figures[clara]["jobs_per_s"],
                                                     fig["jobs_per_s"])
              for clara in claras for name, fig in figures.items() if name not in claras}
    return BenchRecord(
        scenario="throughput",
        title=f"{stages}-stage no-op chain, <= {window} jobs in flight, best of {repeat} round(s)",
        machine=machine_info(),
        params={"jobs": jobs, "stages": stages, "window": window, "workers": workers,
                "extra_workers": list(extra_workers), "dask_jobs": dask_jobs, "repeat": repeat},
        figures=figures, ratios=ratios,
        targets=(Target(f"{claras[0]} dispatches/s", figures[claras[0]]["dispatch_per_s"],
                        100_000.0, "/s", True),),
        notes="dask runs one graph per batch of `window` jobs (graph building timed) and "
              "fewer jobs than the others; rates are comparable. No-op operators hold the GIL, "
              "so extra workers only add contention here.")


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
    best: dict[str, float] = {}
    for r in range(repeat):
        for name, run in runners.items():
            say(f"core: round {r + 1}/{repeat}: {name}, {jobs} x {chain} dispatches")
            gc.collect()
            elapsed = run()
            best[name] = min(best.get(name, elapsed), elapsed)
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
    samples: dict[str, list[int]] = {name: [] for name in runners}
    say(f"construct: {n} operators, {repeat} builds per system")
    for _ in range(repeat):
        for name, run in runners.items():
            t0 = _now()
            run()
            samples[name].append(_now() - t0)
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


_RSS_SNIPPETS = {
    "numpy (baseline)": "import numpy",
    "clara-rt import": "import clara_rt",
    "clara-rt Runtime()": "import clara_rt\nrt = clara_rt.Runtime()",
}
_RSS_PRINT = ("\nimport re\nwith open('/proc/self/status') as f:\n"
              "    print(re.search(r'VmRSS:\\s+(\\d+)', f.read()).group(1))\n")


def idle_rss(*, repeat: int = 3, progress: Progress | None = None) -> BenchRecord:
    """Measure resident memory (VmRSS) of a fresh interpreter after each import / setup.

    Runs ``sys.executable -c`` with: ``import numpy`` (baseline), ``import clara_rt``, and
    ``import clara_rt; rt = Runtime()`` (one worker per CPU, idle). Median of ``repeat`` runs.
    Linux only (reads ``/proc/self/status``).

    Args:
        repeat: Processes per snippet.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    figures: dict[str, dict[str, float]] = {}
    say(f"rss: {len(_RSS_SNIPPETS)} snippets x {repeat} processes")
    for name, snippet in _RSS_SNIPPETS.items():
        tail = "\nrt.close()\n" if "rt =" in snippet else ""
        kb = [_subprocess_int(snippet + _RSS_PRINT + tail) for _ in range(repeat)]
        figures[name] = {"rss_mb": float(np.median(kb)) / 1024}
    base = figures["numpy (baseline)"]["rss_mb"]
    for fig in figures.values():
        fig["delta_mb"] = fig["rss_mb"] - base
    rt_mb = figures["clara-rt Runtime()"]["rss_mb"]
    return BenchRecord(
        scenario="rss",
        title=f"idle VmRSS of a fresh process, median of {repeat}",
        machine=machine_info(),
        params={"repeat": repeat},
        figures=figures,
        ratios={"numpy / clara-rt Runtime() rss_mb": _ratio(base, rt_mb)},
        notes="delta_mb is against the numpy-only process; clara-rt imports numpy itself.")


SCENARIOS: dict[str, Callable[..., BenchRecord]] = {
    "hops": hops,
    "throughput": throughput,
    "core": core,
    "construct": construct,
    "rss": idle_rss,
}
"""Scenario name (as on the command line) -> function."""

_TAKES_JOBS = frozenset({"hops", "throughput", "core"})


def run_scenario(name: str, *, jobs: int | None = None, repeat: int | None = None,
                 progress: Progress | None = None) -> BenchRecord:
    """Run scenario ``name`` with its defaults, overriding ``jobs`` / ``repeat`` when given.

    ``jobs`` applies to ``hops``, ``throughput`` and ``core`` and is ignored by the others.

    Raises:
        KeyError: ``name`` is not in :data:`SCENARIOS`.
    """
    func = SCENARIOS[name]
    kwargs: dict[str, Any] = {"progress": progress}
    if jobs is not None and name in _TAKES_JOBS:
        kwargs["jobs"] = jobs
    if repeat is not None:
        kwargs["repeat"] = repeat
    return func(**kwargs)


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


def _python_dispatch(jobs: int, chain: int) -> float:
    sched = loaded_scheduler(jobs, chain)
    t0 = time.perf_counter()
    python_drain(sched)
    return time.perf_counter() - t0


# --- private: helpers ---------------------------------------------------------------------


def _hop_figures(gaps: list[int], e2e: list[int], stages: int) -> dict[str, float]:
    g = np.asarray(gaps, dtype=np.float64) / 1000.0
    e = np.asarray(e2e, dtype=np.float64) / 1000.0
    return {"p50_us": float(np.percentile(g, 50)), "p99_us": float(np.percentile(g, 99)),
            "mean_us": float(g.mean()), "e2e_p50_us": float(np.percentile(e, 50)),
            "e2e_p99_us": float(np.percentile(e, 99)),
            "e2e_per_stage_us": float(np.percentile(e, 50)) / stages, "hops": float(g.size)}


@contextmanager
def _collected() -> Iterator[None]:
    """Start a timed phase with no garbage left over from setup."""
    gc.collect()
    yield


def _subprocess_int(code: str) -> int:
    root = str(Path(clara_rt.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env, timeout=120).stdout
    match = re.search(r"(\d+)\s*$", out)
    if match is None:
        raise RuntimeError(f"no number in the output of the rss probe: {out!r}")
    return int(match.group(1))


def _bind(func: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: func(*args)


def _have_dask() -> bool:
    try:
        import dask.threaded  # noqa: F401
    except ImportError:
        return False
    return True


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("inf")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _quiet(message: str) -> None:
    """Default progress sink: drop the message."""

"""What clara-rt is measured against: a queue-joined thread chain, dask's threaded scheduler,
the C++ scheduler driven from Python, and plain / dask topological sorts."""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from typing import Any

from clara_rt import _core
from clara_rt.bench._workload import _ARRAY, _noop, _noop_task, _now

_STOP = object()


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


# --- private ------------------------------------------------------------------------------


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


def _have_dask() -> bool:
    try:
        import dask.threaded  # noqa: F401
    except ImportError:
        return False
    return True

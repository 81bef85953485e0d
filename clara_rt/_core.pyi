"""Type stub for the C++ scheduler core (csrc/, built as ``clara_rt._core``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__version__: str

PRIORITY_IMMEDIATE: int  # 0: lower value is more urgent
PRIORITY_HIGH: int  # 1
PRIORITY_NORMAL: int  # 2
PRIORITY_LOW: int  # 3

class Scheduler:
    """Decide which (job, node) runs next, by job priority, DAG readiness and resource limits.

    Thread-safe; only ``wait_next`` blocks, and it releases the GIL.
    """

    def __init__(self, weights: Sequence[int] = (4, 2, 1)) -> None:
        """Create a scheduler; three weights: high, normal, low (each >= 1, else ValueError)."""

    def add_graph(
        self, num_nodes: int, edges: Sequence[tuple[int, int]], resources: Sequence[int]
    ) -> int:
        """Register an immutable graph and return its id (ValueError on a bad graph or a cycle)."""

    def remove_graph(self, graph: int) -> None:
        """Forget a graph (freed when its last active job ends); ValueError if unknown."""

    def set_resource_limit(self, resource: int, limit: int) -> None:
        """Let at most ``limit`` (>= 1) tasks of ``resource`` (>= 0) run at once."""

    def set_max_running(self, limit: int) -> None:
        """Let at most ``limit`` tasks run at once over all jobs (0: no cap, the default)."""

    def submit(self, graph: int, priority: int) -> int:
        """Start a job and return its id; RuntimeError after ``shutdown()``."""

    def try_next(self) -> tuple[int, int] | None:
        """Pop the next ready ``(job, node)`` by priority policy, or None; never blocks."""

    def wait_next(self, timeout_s: float) -> tuple[int, int] | None:
        """Wait (GIL released) for a ready ``(job, node)``; None on timeout or shutdown."""

    def complete(self, job: int, node: int) -> tuple[bool, int, int]:
        """Record success of a running task; return ``(finished, next_job, next_node)``.

        The next task is ``(-1, -1)`` when none is ready.
        """

    def take_own(self, job: int) -> tuple[int, int] | None:
        """Pop a ready ``(job, node)`` of ``job`` for the thread that waits on it, or None (none
        ready, a more urgent class has a ready task, or its resource is at its limit)."""

    def complete_own(self, job: int, node: int) -> tuple[bool, int, int]:
        """Like ``complete``, but the next task is one of the same job, never another job's."""

    def fail(self, job: int) -> bool:
        """Stop a job after a failure; True if none of its tasks is running (the job is over)."""

    def cancel(self, job: int) -> bool:
        """Stop a job at a user's request; same semantics as ``fail``."""

    def shutdown(self) -> None:
        """Wake every waiter; ``wait_next`` then returns None at once and ``submit`` raises."""

    def fast_calls(self) -> tuple[Callable[[int, int], tuple[bool, int, int]],
                                  Callable[[int, int], tuple[bool, int, int]],
                                  Callable[[], tuple[int, int] | None],
                                  Callable[[int], tuple[int, int] | None],
                                  Callable[[int, int], int]]:
        """Return ``(complete, complete_own, try_next, take_own, submit)`` bound to this scheduler:
        same calls and results through the plain C API (the per-task path); they keep it alive."""

    def task_loop(self, types: tuple[Any, Any, Any, Any]
                  ) -> Callable[[Any, Any, int, int, bool], tuple[bool, int, int]]:
        """Return ``run_tasks(runtime, job, job_id, node, own) -> (finished, next_job,
        next_node)``: the runtime's task loop in C (csrc/task_loop.cpp; ``clara_rt.tasks`` is
        the reference). ``types`` is ``(Inputs, Outputs, JobState.PENDING, JobState.RUNNING)``.
        Runs ``(job_id, node)`` and the job's next tasks while ``complete()`` (``complete_own()``
        when ``own``) hands them to this thread; keeps the scheduler alive."""

    def stats(self) -> dict[str, int]:
        """Return counters: jobs, ready tasks per class, parked, running, dispatched, slots,
        graphs."""

def bench_dispatch(num_jobs: int, chain_length: int, threads: int) -> float:
    """Time ``num_jobs * chain_length`` dispatches in pure C++ and return elapsed seconds."""

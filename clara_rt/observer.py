"""RuntimeObserver: hooks a :class:`~clara_rt.Runtime` calls as its jobs run.

Like dask's scheduler callbacks or taskflow's observers: they watch without changing the run.
Subclass :class:`RuntimeObserver`, override what you need and register it with
:meth:`Runtime.add_observer <clara_rt.Runtime.add_observer>`::

    class Timings(RuntimeObserver):
        def task_ended(self, job, operator, error):
            print(job.id, operator.name, "failed" if error else "ok")

* ``task_started(job, operator)`` and ``task_ended(job, operator, error)`` run on the worker
  thread that runs the operator, right before and right after its ``compute`` (``error`` is
  the exception it raised, or ``None``), so a thread-local set in one is seen by the operator's
  own logging and cleared in the other.
* ``job_ended(job)`` runs once per job, on the thread that finishes it, after its final state
  is set (``job.state``, ``job.operator_states()``) and after its done-callbacks.

Hooks must be quick (they run on the scheduler's hot path) and must not block; an exception in
a hook is logged and ignored, never failing the job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clara_rt.job import Job
    from clara_rt.operator import Operator

__all__ = ["RuntimeObserver"]


class RuntimeObserver:
    """Base class of runtime observers: every hook does nothing unless overridden."""

    def task_started(self, job: Job, operator: Operator) -> None:
        """``operator`` of ``job`` is about to compute (on its worker thread)."""

    def task_ended(self, job: Job, operator: Operator, error: BaseException | None) -> None:
        """``operator`` of ``job`` returned (``error`` None) or raised ``error``."""

    def job_ended(self, job: Job) -> None:
        """``job`` reached its final state."""

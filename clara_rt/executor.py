"""Runtime: worker threads that run operators as the C++ scheduler releases them.

Design
------
* ``clara_rt._core.Scheduler`` (C++) owns all scheduling state as integers: one immutable graph
  per compiled pipeline, one dependency-counter set per job, ready queues per priority, per-
  operator concurrency limits. It never holds a Python object, so it never needs the GIL; its
  blocking wait releases it.
* Python keeps the id -> object tables: ``_jobs`` (job id -> :class:`Job`) and each job's
  :class:`~clara_rt.plan.Plan` (node id -> operator, slots). Port values live in the job's slot
  list; handing a value over is a list store, never a copy.
* Each worker loops: take a ready ``(job, node)`` (``try_next`` with the GIL held, else
  ``wait_next`` without it), run the operator, then ``complete(job, node)``. ``complete``
  releases the successors and immediately returns the next task *for this worker* by the
  priority policy, so a linear chain runs on one thread with no hand-off, while a waiting
  immediate job still overtakes at the operator boundary (:mod:`clara_rt.workers`).
* Running one task and settling a job are :mod:`clara_rt.tasks`. Failures are caught on the
  worker, stored on their job (first one wins) and re-raised by ``job.result()``. The scheduler
  then stops that job; other jobs and the worker carry on.
* This module is the runtime's API: submit (a payload checked against the plan's open-input
  table, a :class:`~clara_rt.job.Job` of a few attribute sets, one scheduler call), help,
  stop, close, observers and stats.
* Pipelines are released when nobody references them: each compiled plan carries a
  ``weakref.finalize`` that removes its C++ graph and stops the operators no other live plan
  uses (``stop()``), so a long-lived runtime holds only the pipelines still in use. Jobs hold
  their plan, so a plan outlives every job of it. The release runs on the thread that dropped
  the last reference, or, when that thread is inside the runtime's release itself, on the
  next submit or at close.
* ``Runtime(workers=0)`` runs everything inline on the submitting thread (like dask's
  synchronous scheduler): deterministic, for debugging and tests.

Locks: each job's ``_lock`` guards its ending (failure, cancel, timeout, finalize), so workers
finishing different jobs never contend; ``Runtime._lock`` guards submit, graph registration,
deadlines and close. Either may be held while calling into the scheduler; the scheduler's own
mutex is never held while calling Python.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from clara_rt import _core
from clara_rt.arrays import cuda_available, record_event
from clara_rt.deadlines import Deadlines
from clara_rt.errors import PipelineError, PortTypeError, RuntimeClosedError, SchedulerError
from clara_rt.graphs import GraphTable, stop_operator
from clara_rt.job import Job, JobState, Priority
from clara_rt.observer import RuntimeObserver
from clara_rt.operator import Inputs, Outputs
from clara_rt.pipeline import Pipeline
from clara_rt.plan import Plan
from clara_rt.preload import preload
from clara_rt.workers import WorkerLoop

__all__ = ["Runtime", "RuntimeStats", "run"]

_perf_ns = time.perf_counter_ns


@dataclass(frozen=True, slots=True)
class RuntimeStats:
    """A snapshot of a runtime: threads, jobs, the scheduler's counters and what it holds.

    ``pipelines`` counts the compiled pipelines still referenced (released ones leave),
    ``graphs`` the scheduler's graphs (a released pipeline's graph stays until its last job
    ends), ``operators`` the started operators not yet stopped.
    """

    workers: int
    jobs_active: int
    jobs_submitted: int
    jobs_finished: int
    tasks_dispatched: int
    ready: dict[str, int]
    running: int
    parked: int
    pipelines: int = 0
    graphs: int = 0
    operators: int = 0


class Runtime(WorkerLoop):
    """Runs jobs of any number of pipelines on a pool of worker threads.

    Args:
        workers: Worker threads; ``None`` means one per CPU core, ``0`` runs every job inline on
            the thread that submits it.
        weights: Shares of the ``high``, ``normal`` and ``low`` classes (``immediate`` is always
            served first).
        freeze_shared: Mark NumPy arrays read-only (``flags.writeable = False``) when they fan
            out to several consumers, so that an operator that writes into a shared input fails
            loudly instead of corrupting another branch.

    Use as a context manager, or call :meth:`close`.

    A runtime runs jobs in this process only. Jobs of pipeline *definitions* on the nodes of a
    Ray cluster are run by :class:`clara_rt.cluster.ClusterRuntime` (another contract: YAML and
    folders in, folders out), which the core never imports.
    """

    def __init__(self, workers: int | None = None, *, weights: tuple[int, int, int] = (4, 2, 1),
                 freeze_shared: bool = False) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ValueError(f"workers must be an int >= 0 (0 runs jobs inline), got {workers!r}")
        try:
            self._sched = _core.Scheduler(weights=tuple(weights))
        except (ValueError, TypeError) as exc:
            raise SchedulerError(f"invalid priority weights {weights!r}: {exc}") from exc
        self.workers = workers
        # The per-task calls through the plain C API (pybind11's dispatcher costs more than
        # the scheduler's work there).
        (self._complete, self._complete_own, self._try_next, self._take_own,
         self._submit) = self._sched.fast_calls()
        # A caller that runs its own job (help) takes a worker's slot, never an extra thread.
        self._sched.set_max_running(workers)
        self._freeze_shared = freeze_shared
        self._cuda = cuda_available()
        self._gpu_or_freeze = self._cuda or freeze_shared
        # The common case's task loop in C; CUDA events and freezing take the Python loop.
        self._run_tasks = None if self._gpu_or_freeze else self._sched.task_loop(
            (Inputs, Outputs, JobState.PENDING, JobState.RUNNING))
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}  # scheduler job number -> job, while it runs
        self._graphs = GraphTable(self._sched)  # plans, graphs, operators; released when dead
        self._observers: tuple[RuntimeObserver, ...] = ()  # replaced whole: read without a lock
        self._closed = False
        self._stopping = False
        self._deadlines = Deadlines(lambda job: self.stop_job(job, JobState.TIMED_OUT))
        self._threads = [threading.Thread(target=self._worker, name=f"clara-rt-worker-{i}",
                                          daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    # --- public ---------------------------------------------------------------------------

    def submit(self, pipeline: Pipeline, payload: Mapping[str, Any] | None = None, *,
               priority: Priority | str | int = "normal", timeout: float | None = None,
               workspace: str | os.PathLike[str] | None = None, job_id: str | None = None,
               name: str | None = None) -> Job:
        """Start a job of ``pipeline`` on ``payload`` and return at once.

        Args:
            pipeline: The pipeline to run (validated and compiled on first use).
            payload: A value for every unconnected input, keyed ``"op.port"``.
            priority: ``immediate``, ``high``, ``normal`` or ``low``.
            timeout: Seconds after which the job is stopped as ``timed_out``.
            workspace: The job's scratch folder, passed to operators as
                ``context.workspace`` (created if missing).
            job_id: The job's public id (``job.id``, ``context.job_id``, ``${{JOB_ID}}``,
                ``NVIDIA_CLARA_JOBID``, messages); default: 32 fresh random hex digits.
            name: The job's name (``job.name``, ``NVIDIA_CLARA_JOBNAME``); default
                ``<pipeline>-<job id>``.

        Raises:
            PipelineError: invalid pipeline, or payload keys that do not match its open inputs.
            PortTypeError: a payload value does not fit its port.
            OperatorError: an operator's ``start()`` raised (first use in this runtime).
            RuntimeClosedError: the runtime is closed.
        """
        prio = Priority.parse(priority)
        if timeout is not None and not 0 < timeout < float("inf"):
            raise ValueError(f"timeout must be > 0 and finite seconds, or None, got {timeout!r}")
        plan = pipeline.validate()
        values = _payload_values(plan, payload or {})
        graph = self._graph_for(plan)
        job = Job(self, plan, prio, values, _perf_ns(), job_id=job_id, name=name)
        if workspace is not None:
            job.context.workspace = Path(workspace)
            job.context.workspace.mkdir(parents=True, exist_ok=True)
        if self._cuda:
            job._events[-1] = record_event(values)
        with self._lock:
            if self._closed:
                raise RuntimeClosedError("this Runtime is closed; create a new one to run jobs")
            try:
                job._key = self._submit(graph, prio)
            except (ValueError, RuntimeError) as exc:
                raise SchedulerError(f"job {job.id} ('{plan.name}'): {exc}") from exc
            self._jobs[job._key] = job
            if timeout is not None:
                self._deadlines.add(job, timeout)
        if not self._threads:
            self._run_inline()
        return job

    def run(self, pipeline: Pipeline, payload: Mapping[str, Any] | None = None,
            **kwargs: Any) -> dict[str, Any]:
        """Submit a job and wait for its results (keyword arguments as for :meth:`submit`)."""
        return self.submit(pipeline, payload, **kwargs).result()

    def close(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Stop accepting jobs, finish (or with ``cancel=True`` cancel) the rest, stop threads.

        Calls every started operator's ``stop()``. Idempotent.

        Args:
            cancel: Cancel unfinished jobs instead of letting them finish.
            timeout: Seconds to wait for jobs to drain before cancelling what is left.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs.values())
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in jobs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if cancel or not job.wait(left):
                self.stop_job(job, JobState.CANCELLED)
        for job in jobs:
            job.wait()
        self._stopping = True
        self._sched.shutdown()
        for t in self._threads:
            t.join()
        self._deadlines.close()
        for op in self._graphs.close():
            stop_operator(op)

    def help(self, job: Job) -> None:
        """Run ``job``'s ready operators on the calling thread, as long as it has some.

        ``job.result()`` and ``job.wait()`` call this before they block, so a caller that waits
        runs its own job instead of waking a worker and being woken back (two context switches
        per job). The scheduler hands out only this job's tasks, and none while a more urgent
        class has a ready task or its operator is at its concurrency limit: priorities and limits
        hold as for a worker. Not used with CUDA (workers own the streams) nor after close.
        """
        if self._cuda or self._stopping or job._runtime is not self:
            return
        key = job._key
        if key < 0 or job._done.is_set():
            return
        task = self._take_own(key)
        if task is not None:
            self._run_own(job, task[1])

    def add_observer(self, observer: RuntimeObserver) -> None:
        """Call ``observer``'s hooks (task start and end, job end) from now on; see
        :mod:`clara_rt.observer`."""
        with self._lock:
            self._observers = (*self._observers, observer)

    def remove_observer(self, observer: RuntimeObserver) -> None:
        """Stop calling ``observer`` (ValueError if it was not added)."""
        with self._lock:
            observers = list(self._observers)
            observers.remove(observer)
            self._observers = tuple(observers)

    def stats(self) -> RuntimeStats:
        """Return a frozen snapshot of threads, jobs and scheduler counters."""
        s = self._sched.stats()
        return RuntimeStats(
            workers=self.workers,
            jobs_active=int(s["jobs_active"]),
            jobs_submitted=int(s["jobs_submitted"]),
            jobs_finished=int(s["jobs_finished"]),
            tasks_dispatched=int(s["dispatched"]),
            ready={p.label: int(s[f"ready_{p.label}"]) for p in Priority},
            running=int(s["running"]),
            parked=int(s["parked"]),
            pipelines=self._graphs.plans,
            graphs=int(s["graphs"]),
            operators=self._graphs.operators,
        )

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(cancel=exc_type is not None)

    # --- graphs and operators -------------------------------------------------------------

    def _graph_for(self, plan: Plan) -> int:
        graph = self._graphs.lookup(plan)
        if graph is not None:
            return graph
        with self._lock:
            if self._closed:
                raise RuntimeClosedError("this Runtime is closed; create a new one to run jobs")
            graph = self._graphs.register(plan)
        preload(plan)  # what its operators import lazily, on a background thread
        return graph

    def stop_job(self, job: Job, state: JobState) -> bool:
        """Stop ``job`` as ``state`` (CANCELLED or TIMED_OUT): nothing more of it is
        dispatched; running operators see ``context.cancelled``. Returns whether this call
        stopped it (``job.cancel()`` calls this)."""
        quiescent = job._stop(state, self._sched.cancel)
        if quiescent is None:
            return False
        if quiescent:
            self._finalize(job)
        return True


def run(pipeline: Pipeline, payload: Mapping[str, Any] | None = None, *,
        workers: int | None = 0, priority: Priority | str | int = "normal",
        timeout: float | None = None) -> dict[str, Any]:
    """Run one job of ``pipeline`` in a fresh runtime and return its results.

    ``workers=0`` (default) runs it inline on this thread.
    """
    with Runtime(workers=workers) as rt:
        return rt.submit(pipeline, payload, priority=priority, timeout=timeout).result()


def _payload_values(plan: Plan, payload: Mapping[str, Any]) -> list[Any]:
    """Check ``payload`` against the plan's open inputs and lay it out in a slot list."""
    if payload.keys() != plan.payload.keys():  # the common case (exact keys) skips the lists
        problem = plan.payload_problem(payload)
        if problem is not None:
            raise PipelineError(problem)
    values: list[Any] = [None] * plan.num_slots
    get = payload.get
    for key, slot, spec in plan.open_inputs:
        value = get(key)
        if value is None and spec.optional:  # absent, or None for an optional input
            continue
        problem = spec._check(value)
        if problem is not None:
            raise PortTypeError(f"payload '{key}' of pipeline '{plan.name}': {problem}; the port "
                                f"is {spec.describe()}")
        values[slot] = value
    return values

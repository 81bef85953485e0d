"""Jobs: one run of a pipeline on one payload.

States::

    pending --(first operator starts)--> running --> succeeded
                                            |   \\--> failed      (an operator raised, or a value
                                            |                       broke its port type)
        (pending or running) ---------------+-----> cancelled   (job.cancel(), runtime closed)
                                                \\--> timed_out  (ran past its timeout)

A job is finished once it reaches one of the last four states; it never leaves it.

Each operator of a finished job ends in exactly one of :data:`OPERATOR_STATES`: ``succeeded``
(it returned and its outputs were kept), ``failed`` (it raised or emitted a bad value),
``cancelled`` / ``timed_out`` (it was running when the job was cancelled or timed out, so its
outputs were discarded, whether it then returned or raised) or ``not_run`` (it never started).
While the job runs an operator may also be ``running``.

Identity: a job has a public ``id`` (a string; the server's job id, ``--job-id`` of ``clara-rt
run``, or a fresh random hex id) and a ``name`` (default ``<pipeline>-<id>``). Messages, logs,
``${{JOB_ID}}`` and ``NVIDIA_CLARA_JOBID`` use them; the scheduler's integer is internal. The first
failure of a job stops the rest of that job (no further operator of it is dispatched) and is
raised from :meth:`Job.result`; later failures of the same job go to the log. Other jobs never
notice.

Transitions are the job's own (``_stop``, ``_settle``): data in, data out under the job's lock,
so they are tested without threads; the runtime adds only the scheduler's side (a callable
``_stop`` runs under that lock when the stop is the first) and the threads.

Thread-safety: a job is written by the runtime's worker threads and read by anyone. ``result``,
``wait``, ``cancel`` and the properties may be called from any thread.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clara_rt.errors import ClaraRTError, JobCancelledError, JobTimeoutError
from clara_rt.priority import PRIORITY_NAMES, Priority, PriorityName

if TYPE_CHECKING:
    from clara_rt.executor import Runtime
    from clara_rt.operator import Operator
    from clara_rt.plan import Plan

__all__ = ["OPERATOR_STATES", "PRIORITY_NAMES", "Context", "Job", "JobState", "JobStats",
           "Priority", "PriorityName", "new_job_id"]

log = logging.getLogger("clara_rt")

#: Final states of an operator in a finished job (see the module docstring).
OPERATOR_STATES = ("succeeded", "failed", "cancelled", "timed_out", "not_run")


def new_job_id() -> str:
    """A fresh job id: 32 random hex digits, like a Clara job id (a uuid without dashes).

    Drawn from a generator seeded by ``os.urandom`` once per process (and again in a forked
    child): calling ``os.urandom`` per job releases the GIL inside ``submit``, which hands it to
    a busy worker and makes a streaming caller wait a whole switch interval (issue 19.3).
    Unique, not secret: access to a job is guarded by the server's token, not by its id.
    """
    return _ids.getrandbits(128).to_bytes(16, "big").hex()


_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


class JobState(enum.Enum):
    """Where a job is in its life; the last four are final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        """Whether the state is final."""
        return self not in (JobState.PENDING, JobState.RUNNING)


_PENDING, _SUCCEEDED = JobState.PENDING, JobState.SUCCEEDED


@dataclass(frozen=True, slots=True)
class JobStats:
    """A snapshot of a job, safe to keep and pass around.

    Times are ``time.perf_counter_ns()`` values; ``queued_ns`` is submit to first operator start,
    ``run_ns`` first start to finish (``None`` while not known).
    """

    id: str
    pipeline: str
    priority: Priority
    state: JobState
    queued_ns: int | None
    run_ns: int | None
    operators_run: int
    operators_total: int


class Context:
    """What ``compute`` gets besides its ports: which job it serves and whether to stop early.

    One per job, shared by its operators. ``cancelled`` turns true when the job is cancelled,
    times out or fails elsewhere; a long ``compute`` may poll it and return early.
    ``workspace`` is the job's scratch folder (given to ``Runtime.submit``), where operators
    that exchange files (Clara folder ports, command operators) put what they write; ``None``
    when the job was submitted without one.
    """

    __slots__ = ("_stopped", "job_id", "job_name", "pipeline", "priority", "workspace")

    def __init__(self, job: Job) -> None:
        # No reference back to the job: a Job <-> Context cycle would keep every finished job
        # (and its arrays) alive until the cyclic garbage collector happens to run.
        self._stopped = False
        self.job_id: str = job.id
        self.job_name: str = job.name
        self.pipeline = job.pipeline
        self.priority = job.priority
        self.workspace: Path | None = None

    @property
    def cancelled(self) -> bool:
        """Whether the job has been stopped (cancel, timeout or another operator's failure)."""
        return self._stopped

    def __repr__(self) -> str:
        return f"<Context job={self.job_id} pipeline='{self.pipeline}'>"


class _Latch:
    """A one-shot event whose lock is made only when someone has to wait (under ``guard``, the
    job's lock, which ``set`` is called under). Each waiter takes the wait lock and hands it
    straight back, so every waiter wakes."""

    __slots__ = ("_guard", "_is_set", "_lock")

    def __init__(self, guard: threading.Lock) -> None:
        self._guard = guard
        self._is_set = False
        self._lock: threading.Lock | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        """Set the latch and wake every waiter; call with ``guard`` held."""
        if not self._is_set:
            self._is_set = True
            if self._lock is not None:
                self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        if self._is_set:
            return True
        with self._guard:
            if self._is_set:
                return True
            lock = self._lock
            if lock is None:
                lock = self._lock = threading.Lock()
                lock.acquire()
        acquired = (lock.acquire() if timeout is None
                    else lock.acquire(timeout=max(timeout, 0.0)))
        if acquired:
            lock.release()
        return acquired or self._is_set


class Job:
    """A submitted run of a pipeline. Made by :meth:`Runtime.submit`, not by users."""

    __slots__ = ("__weakref__", "_callbacks", "_done", "_error", "_events", "_key", "_lock",
                 "_op_states", "_plan", "_runtime", "_state", "_stop_reason", "_times",
                 "_values", "context", "finished_ns", "id", "name", "pipeline", "priority",
                 "started_ns", "submitted_ns")

    def __init__(self, runtime: Runtime | None, plan: Plan, priority: Priority,
                 values: list[Any], submitted_ns: int, *, job_id: str | None = None,
                 name: str | None = None) -> None:
        self.id: str = new_job_id() if job_id is None else str(job_id)
        self.name: str = name or f"{plan.name}-{self.id}"
        self.pipeline = plan.name
        self._key = -1  # the scheduler's job number: internal, never shown
        self.priority = priority
        self.submitted_ns = submitted_ns
        self.started_ns: int | None = None
        self.finished_ns: int | None = None
        self._runtime = runtime
        self._plan = plan
        self._values = values
        n = len(plan.nodes)
        self._times = [0] * (2 * n)
        self._op_states: list[str | None] = [None] * n  # final state per node
        self._state = _PENDING
        self._stop_reason: JobState | None = None  # set once when the job must stop early
        self._error: ClaraRTError | None = None
        self._lock = threading.Lock()  # guards the ending: stop reason, error, state, callbacks
        self._done = _Latch(self._lock)
        self._callbacks: list[Callable[[Job], None]] = []
        self._events: dict[int, Any] = {}  # node -> CUDA event recorded after it ran (GPU only)
        self.context = Context(self)

    # --- for users ------------------------------------------------------------------------

    @property
    def state(self) -> JobState:
        """The current :class:`JobState`."""
        return self._state

    @property
    def done(self) -> bool:
        """Whether the job is finished (any final state)."""
        return self._done.is_set()

    @property
    def error(self) -> ClaraRTError | None:
        """Why the job did not succeed (``None`` while running or after success)."""
        return self._error

    @property
    def operators(self) -> tuple[Operator, ...]:
        """The pipeline's operators in run (topological) order."""
        return tuple(node.operator for node in self._plan.nodes)

    @property
    def timings(self) -> dict[str, tuple[int, int]]:
        """``{operator: (start_ns, end_ns)}`` for each operator that ran (perf_counter_ns)."""
        times = self._times
        return {node.operator.name: (times[2 * i], times[2 * i + 1])
                for i, node in enumerate(self._plan.nodes) if times[2 * i + 1]}

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is finished; return whether it is (``False`` on timeout).

        Without a timeout, the waiting thread first runs the job's ready operators itself
        (:meth:`Runtime.help`)."""
        if timeout is None and self._runtime is not None and not self._done.is_set():
            self._runtime.help(self)
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the job and return its results: every unconnected output, keyed ``op.port``.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes.

        Raises:
            TimeoutError: ``timeout`` passed first (the job goes on).
            OperatorError / PortTypeError: the job failed (original exception in ``__cause__``).
            JobCancelledError: the job was cancelled.
            JobTimeoutError: the job ran past the timeout given at submit.
        """
        done = self._done
        if timeout is None and self._runtime is not None and not done._is_set:
            self._runtime.help(self)  # run the job's ready operators here rather than sleep
        if not done._is_set and not done.wait(timeout):
            raise TimeoutError(f"job {self.id} ('{self.pipeline}') still {self._state.value} "
                               f"after {timeout} s")
        if self._state is _SUCCEEDED:
            values = self._values
            return {key: values[slot] for key, slot in self._plan.results.items()}
        assert self._error is not None
        raise self._error

    def cancel(self) -> bool:
        """Stop the job: nothing more of it is dispatched; running operators finish first.

        Returns whether this call cancelled it (``False`` if it was already finished).
        """
        if self._runtime is None:  # a job outside a runtime (tests of its transitions)
            return self._stop(JobState.CANCELLED, lambda key: True) is not None
        return self._runtime.stop_job(self, JobState.CANCELLED)

    def add_done_callback(self, fn: Callable[[Job], None]) -> None:
        """Call ``fn(job)`` once the job is finished (at once if it already is).

        Runs on the thread that finishes the job; exceptions are logged and ignored.
        """
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        call_done_callback(self, fn)

    def operator_states(self) -> list[dict[str, Any]]:
        """Each operator in run order: name, state and times (ns from submit and durations).

        ``state`` is one of :data:`OPERATOR_STATES`, or ``"running"`` while it runs;
        ``start_ns``/``end_ns`` are ``perf_counter_ns`` values (``None`` until known),
        ``start_ms`` is the start relative to the submit, ``duration_ms`` the run time.
        Safe to call while the job runs (a snapshot; an operator may start right after).
        """
        times, states = self._times, self._op_states
        rows = []
        for i, node in enumerate(self._plan.nodes):
            name = node.operator.name
            start, end = times[2 * i], times[2 * i + 1]
            state = states[i] or ("running" if start else "not_run")
            rows.append({
                "name": name, "state": state,
                "start_ns": start or None, "end_ns": end or None,
                "start_ms": (start - self.submitted_ns) / 1e6 if start else None,
                "duration_ms": (end - start) / 1e6 if end else None,
            })
        return rows

    def stats(self) -> JobStats:
        """Return a frozen snapshot of this job."""
        queued = None if self.started_ns is None else self.started_ns - self.submitted_ns
        run = None
        if self.started_ns is not None and self.finished_ns is not None:
            run = self.finished_ns - self.started_ns
        ran = sum(1 for i in range(1, len(self._times), 2) if self._times[i])
        return JobStats(self.id, self.pipeline, self.priority, self._state, queued, run, ran,
                        len(self._plan.nodes))

    def __repr__(self) -> str:
        return (f"<Job {self.id} '{self.pipeline}' {self.priority.label} "
                f"{self._state.value}>")

    # --- transitions (for the runtime) -----------------------------------------------------

    def _stop(self, reason: JobState, scheduler_stop: Callable[[int], bool],
              error: ClaraRTError | None = None) -> bool | None:
        """Stop the job early: ``reason`` is CANCELLED, TIMED_OUT or FAILED (with ``error``).

        The first stop wins: it records the reason (and error), tells operators through
        ``context.cancelled`` and calls ``scheduler_stop(scheduler number)`` under the job's
        lock, returning what it returns (whether no operator of the job is running). A later
        stop, or one after the job finished, changes nothing and returns None.
        """
        with self._lock:
            if self._stop_reason is not None or self._done.is_set():
                return None
            self._stop_reason = reason
            if reason is JobState.FAILED:
                self._error = error
            self.context._stopped = True
            return scheduler_stop(self._key)

    def _settle(self, now_ns: int) -> list[Callable[[Job], None]] | None:
        """Make the job final: its state (a failure wins, then a stop request, else success),
        error, end time; drop every value but the results of a success; wake waiters.

        Returns the done-callbacks to call (outside the lock), or None if it was final already.
        """
        with self._lock:
            if self._done._is_set:
                return None
            values = self._values
            kept: list[Any] = [None] * len(values)
            # A stop request wins even when the operators it interrupted went on to finish.
            reason = self._stop_reason
            if self._error is not None:
                state = JobState.FAILED
            elif reason is not None:
                state = reason
                self._error = self._final_error(state)
            else:
                state = _SUCCEEDED
                for slot in self._plan.results.values():
                    kept[slot] = values[slot]
            self._state = state
            self.finished_ns = now_ns
            self._values = kept
            if self._events:
                self._events.clear()
            callbacks = self._callbacks
            if callbacks:
                self._callbacks = []
            self._done.set()
            return callbacks

    def _final_error(self, state: JobState) -> ClaraRTError | None:
        if state is JobState.CANCELLED:
            return JobCancelledError(f"job {self.id} ('{self.pipeline}') was cancelled")
        if state is JobState.TIMED_OUT:
            return JobTimeoutError(f"job {self.id} ('{self.pipeline}') ran past its timeout "
                                   "and was stopped")
        return self._error


def call_done_callback(job: Job, fn: Callable[[Job], None]) -> None:
    try:
        fn(job)
    except Exception:
        log.exception("done-callback of job %s raised", job.id)

"""TaskRunner: how a runtime runs one operator of one job, and how a job ends.

The runtime's hot path, shared by its worker threads and by a caller that runs its own job
(:mod:`clara_rt.workers`). One task is: gather the operator's inputs from the job's slot list
(the very objects the producers emitted), stamp its start, call ``compute``, stamp its end,
check every output against its port and store it in its slot, then drop the inputs nobody else
reads. Nothing here allocates per task beyond the two port dicts the operator sees, and
observers cost one tuple test unless some are registered.

``_run_task`` is the reference. The C task loop (``Scheduler.task_loop``, csrc/task_loop.cpp)
does the same for the common case (no observers, no CUDA, no shared-input freezing, no symbolic
ports) and calls back into ``_run_task``, ``_compute_failed``, ``_bad_outputs`` and
``_stopped_outcome`` for the rest.

A failure (``compute`` raised, a value broke its port, outputs missing or unknown) is recorded
on its job and never raised: the first one stops the job (``Scheduler.fail``) and is re-raised
by ``job.result()``. ``_finalize`` settles a job whose last task has completed (or that was
stopped while idle): final state, done-callbacks, the ``job_ended`` observers.

:class:`TaskRunner` is the part of :class:`~clara_rt.executor.Runtime` that does this; it reads
the runtime's scheduler, job table, observers and CUDA/freeze flags as plain attributes, so the
hot path pays no indirection.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any

import numpy as np

from clara_rt import _core
from clara_rt.arrays import record_event, synchronize, wait_event
from clara_rt.errors import ClaraRTError, OperatorError, PipelineError, PortTypeError
from clara_rt.job import Job, JobState, call_done_callback
from clara_rt.observer import RuntimeObserver
from clara_rt.operator import Inputs, Outputs
from clara_rt.plan import Plan, PlanNode
from clara_rt.ports import bind_symbols

__all__ = ["TaskRunner"]

log = logging.getLogger("clara_rt")
_perf_ns = time.perf_counter_ns
_PENDING, _RUNNING = JobState.PENDING, JobState.RUNNING


class TaskRunner:
    """Runs tasks and settles jobs for a runtime (a base class of ``Runtime``)."""

    _sched: _core.Scheduler
    _lock: threading.Lock
    _jobs: dict[int, Job]
    _observers: tuple[RuntimeObserver, ...]
    _cuda: bool
    _freeze_shared: bool
    _gpu_or_freeze: bool

    def _run_task(self, job: Job, pn: PlanNode) -> None:
        """Run one operator of one job; on failure record it on the job (never raise)."""
        if job._stop_reason is not None:
            return
        values = job._values
        inputs = Inputs()
        inputs._operator = pn.operator
        for port, slot in pn.inputs:
            inputs[port] = values[slot]
        outputs = Outputs()
        if self._cuda:  # wait for the producers' streams only, never the whole device
            for producer in pn.producers:
                wait_event(job._events.get(producer))
        times = job._times
        times[pn.start] = t0 = _perf_ns()  # visible while it runs (Job.operator_states)
        if job._state is _PENDING:
            job._state = _RUNNING
            job.started_ns = t0
        observers = self._observers
        if observers:
            _notify(observers, "task_started", job, pn.operator)
        try:
            pn.compute(inputs, outputs, job.context)
        except BaseException as exc:  # SystemExit from operator code must not kill the worker
            times[pn.end] = _perf_ns()
            self._compute_failed(job, pn, exc, observers)
            return
        times[pn.end] = _perf_ns()
        if observers:
            _notify(observers, "task_ended", job, pn.operator, None)
        ok = len(outputs) == len(pn.outputs)
        if ok:
            try:
                for port, slot, check in pn.checks:
                    value = outputs[port]
                    if check(value) is not None:
                        ok = False
                        break
                    values[slot] = value
            except KeyError:  # as many outputs as declared, but not the declared names
                ok = False
        if not ok or (pn.symbolic and not self._symbols_fit(job, pn, inputs, outputs)):
            if not ok:
                self._bad_outputs(job, pn, outputs)
            return
        job._op_states[pn.index] = ("succeeded" if job._stop_reason is None
                                    else _outcome(job, "succeeded"))
        if self._gpu_or_freeze:
            self._after_task(job, pn, values, outputs)
        else:
            for slot in pn.release:  # free inputs nobody else reads as soon as possible
                values[slot] = None

    def _compute_failed(self, job: Job, pn: PlanNode, exc: BaseException,
                        observers: tuple[RuntimeObserver, ...]) -> None:
        """``compute`` raised ``exc``: mark the operator, tell the observers that saw it start,
        record the failure on the job."""
        job._op_states[pn.index] = _outcome(job, "failed")
        if observers:
            _notify(observers, "task_ended", job, pn.operator, exc)
        self._operator_failed(job, pn, exc)

    def _stopped_outcome(self, job: Job) -> str:
        """The state of an operator that returned after its job was stopped (C task loop)."""
        return _outcome(job, "succeeded")

    def _bad_outputs(self, job: Job, pn: PlanNode, outputs: Outputs) -> None:
        """Record why ``outputs`` do not fit the operator's output ports (unknown or missing
        names, or the first value that breaks its port)."""
        if outputs.keys() != pn.output_names:
            self._task_failed(job, pn, _outputs_error(job, pn, outputs))
            return
        for port, _, check in pn.checks:
            problem = check(outputs[port])
            if problem is not None:
                spec = pn.operator.spec.outputs[port]
                self._task_failed(job, pn, PortTypeError(
                    f"operator '{pn.operator.name}' emitted a bad value on output '{port}' "
                    f"(job {job.id}): {problem}; the port is {spec.describe()}"))
                return

    def _symbols_fit(self, job: Job, pn: PlanNode, inputs: Inputs, outputs: Outputs) -> bool:
        """Check the symbolic dimensions across the operator's ports; False (recorded on the
        job) when they disagree."""
        problem = bind_symbols((spec, inputs.get(port) if not is_out else outputs[port])
                               for spec, is_out, port in pn.symbolic)
        if problem is None:
            return True
        self._task_failed(job, pn, PortTypeError(
            f"operator '{pn.operator.name}' (job {job.id}): {problem}"))
        return False

    def _after_task(self, job: Job, pn: PlanNode, values: list[Any], outputs: Outputs) -> None:
        if self._freeze_shared:
            _freeze(job._plan, pn, values)
        if self._cuda:
            job._events[pn.index] = record_event(outputs.values())
            # GPU inputs stay referenced until the job ends: this node's kernels may still be
            # reading them on its stream, and CuPy's pool would hand freed memory to the
            # producer's stream at once.
        else:
            for slot in pn.release:
                values[slot] = None

    # --- job endings ----------------------------------------------------------------------

    def _task_failed(self, job: Job, pn: PlanNode, error: ClaraRTError) -> None:
        job._op_states[pn.index] = _outcome(job, "failed")
        self._record_failure(job, error)

    def _operator_failed(self, job: Job, pn: PlanNode, exc: BaseException) -> None:
        name = pn.operator.name
        error = OperatorError(f"operator '{name}' failed in job {job.id} ('{job.pipeline}'): "
                              f"{type(exc).__name__}: {exc}", operator=name, job_id=job.id,
                              traceback="".join(traceback.format_exception(exc)))
        error.__cause__ = exc
        self._record_failure(job, error)

    def _record_failure(self, job: Job, error: ClaraRTError) -> None:
        # The failing task is still running, so the scheduler never reports the job quiescent.
        if job._stop(JobState.FAILED, self._sched.fail, error) is None:
            # An operator that stops because its job was cancelled or timed out raises as a
            # matter of course; a second real failure in a failed job is worth a warning.
            level = logging.WARNING if job._stop_reason is JobState.FAILED else logging.DEBUG
            log.log(level, "job %s: further failure after the job stopped: %s", job.id, error)

    def _finalize(self, job: Job) -> None:
        if self._cuda:
            # Results must be complete when job.result() hands them to any stream, and no
            # kernel may still read the intermediate arrays this job is about to drop.
            synchronize(list(job._events.values()))
        callbacks = job._settle(_perf_ns())
        if callbacks is None:
            return
        self._jobs.pop(job._key, None)
        for fn in callbacks:
            call_done_callback(job, fn)
        if self._observers:
            _notify(self._observers, "job_ended", job)


def _outcome(job: Job, ended: str) -> str:
    """An operator's final state: how it ended, unless its job was cancelled or timed out while
    it ran (its outputs are then discarded, whatever it did)."""
    reason = job._stop_reason
    if reason is JobState.CANCELLED or reason is JobState.TIMED_OUT:
        return str(reason.value)
    return ended


def _notify(observers: tuple[RuntimeObserver, ...], hook: str, *args: Any) -> None:
    for observer in observers:
        try:
            getattr(observer, hook)(*args)
        except Exception:
            log.exception("runtime observer %r raised in %s", observer, hook)


def _outputs_error(job: Job, pn: PlanNode, outputs: Outputs) -> PipelineError:
    name = pn.operator.name
    unknown = sorted(set(outputs) - pn.output_names)
    if unknown:
        return PipelineError(f"operator '{name}' emitted unknown output '{unknown[0]}' in job "
                             f"{job.id}; outputs are: {', '.join(sorted(pn.output_names))}")
    missing = sorted(pn.output_names - set(outputs))
    return PipelineError(f"operator '{name}' did not emit output(s) {', '.join(missing)} in job "
                         f"{job.id}; compute() must set every declared output")


def _freeze(plan: Plan, pn: PlanNode, values: list[Any]) -> None:
    for _, slot, _ in pn.outputs:
        if slot in plan.shared_slots and isinstance(values[slot], np.ndarray):
            values[slot].flags.writeable = False

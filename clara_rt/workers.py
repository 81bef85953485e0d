"""WorkerLoop: the threads (and the waiting caller) that take tasks from the C++ scheduler.

* A worker thread loops: take a ready ``(job, node)`` (``try_next`` with the GIL held, else
  ``wait_next`` without it), then run a *chain*: run the task, ``complete(job, node)``, which
  releases the successors and returns the next task for this thread by the priority policy in
  the same call, and so on until none is ready. A linear chain runs on one thread with one
  scheduler call per operator and no wake-up, while a waiting immediate job still overtakes at
  the operator boundary.
* A caller waiting in ``job.result()`` runs its own job's ready tasks (``take_own`` /
  ``complete_own``) instead of sleeping while a worker does (:meth:`Runtime.help`).
* ``Runtime(workers=0)`` runs every job inline on the submitting thread.

The scheduler's job number of a task is looked up in the runtime's job table only when the
chain moves to another job; a worker never dies of an error (it is logged, naming the job's
public id and the operator).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from clara_rt.arrays import worker_stream
from clara_rt.errors import SchedulerError
from clara_rt.job import Job, JobState
from clara_rt.tasks import TaskRunner

__all__ = ["WorkerLoop"]

log = logging.getLogger("clara_rt")
_FAILED = JobState.FAILED


class WorkerLoop(TaskRunner):
    """Worker threads' loop and the chains they run (a base class of ``Runtime``)."""

    _stopping: bool
    _complete: Callable[[int, int], tuple[bool, int, int]]
    _complete_own: Callable[[int, int], tuple[bool, int, int]]
    _try_next: Callable[[], tuple[int, int] | None]
    _run_tasks: Callable[[Any, Job, int, int, bool], tuple[bool, int, int]] | None

    def _worker(self) -> None:
        if self._cuda:
            worker_stream()
        try_next, wait_next = self._try_next, self._sched.wait_next
        while True:
            task = try_next()
            if task is None:
                task = wait_next(0.5)
                if task is None:
                    if self._stopping:
                        return
                    continue
            try:
                self._run_chain(*task)
            except Exception:  # never let a worker die silently; _run_chain reports per job
                job = self._jobs.get(task[0])  # name the job's public id, not the number
                where = (f"job {job.id} ('{job.pipeline}'), operator "
                         f"'{job._plan.nodes[task[1]].operator.name}'" if job is not None
                         else "a job that has ended")
                log.exception("clara-rt worker: unexpected error in %s", where)

    def _run_inline(self) -> None:
        try_next = self._try_next
        while (task := try_next()) is not None:
            self._run_chain(*task)

    def _run_chain(self, job_id: int, node: int, own: Job | None = None) -> None:
        """Run ``(job_id, node)`` and whatever the scheduler hands this thread next; with
        ``own``, only that job's tasks (the caller that waits on it).

        A job's consecutive tasks run in the C task loop unless observers are registered or the
        runtime runs CUDA or freezes shared inputs; those take the Python loop (the reference).
        """
        complete = self._complete if own is None else self._complete_own
        run_task, run_tasks, is_own = self._run_task, self._run_tasks, own is not None
        while job_id >= 0:
            job = own if own is not None else self._job_of(job_id)
            try:
                if run_tasks is not None and not self._observers:
                    finished, next_job, node = run_tasks(self, job, job_id, node, is_own)
                else:
                    nodes = job._plan.nodes
                    while True:  # this job's tasks, as long as the scheduler hands out its own
                        run_task(job, nodes[node])
                        finished, next_job, node = complete(job_id, node)
                        if finished or next_job != job_id:
                            break
            except Exception as exc:  # a bug in clara-rt itself: fail the job, keep the worker
                log.exception("internal error on job %s", job.id)
                self._record_failure(job, SchedulerError(f"internal error: {exc!r}"))
                return
            if finished:
                self._finalize(job)
            job_id = next_job

    def _job_of(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:  # submit() may still be between sched.submit and the dict insert
            with self._lock:
                job = self._jobs[job_id]
        return job

    def _run_own(self, job: Job, node: int) -> None:
        """Run ``node`` of ``job`` and the job's next ready tasks on the caller's thread."""
        self._run_chain(job._key, node, job)
        if job._stop_reason is _FAILED and isinstance(
                getattr(job._error, "__cause__", None), KeyboardInterrupt):
            # Ctrl-C reached the waiting (main) thread inside an operator: the job failed and is
            # settled (or its last running task will settle it); the caller gets the interrupt,
            # as when it slept.
            raise KeyboardInterrupt

"""Job state transitions as data in -> data out: no runtime, no threads (the runtime adds only
the scheduler's side and the worker threads)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from clara_rt import (
    JobCancelledError,
    JobState,
    JobTimeoutError,
    OperatorError,
    Pipeline,
    Priority,
)
from clara_rt.job import Job
from tests.ops import Scale, vec


def _job(**kw: Any) -> Job:
    p = Pipeline("two")
    a, b = p.add(Scale("a")), p.add(Scale("b"))
    p.connect(a, "out", b, "in")
    plan = p.validate()
    values: list[Any] = [None] * plan.num_slots
    return Job(None, plan, Priority.NORMAL, values, 100, **kw)


def _calls() -> tuple[list[int], Any]:
    seen: list[int] = []

    def scheduler_stop(key: int) -> bool:
        seen.append(key)
        return True

    return seen, scheduler_stop


def test_success_keeps_only_the_results() -> None:
    job = _job(job_id="j1")
    job._key = 7
    [(_, a_out, _)] = job._plan.nodes[0].outputs
    job._values[a_out] = vec()
    b_out = job._plan.results["b.out"]
    job._values[b_out] = vec(2)
    done: list[str] = []
    job.add_done_callback(lambda j: done.append(j.state.value))
    callbacks = job._settle(200)
    assert callbacks is not None and job.done and job.state is JobState.SUCCEEDED
    for fn in callbacks:
        fn(job)
    assert done == ["succeeded"] and job.finished_ns == 200
    assert list(job.result()) == ["b.out"] and job._values[a_out] is None  # intermediate dropped
    assert job._settle(300) is None and job.finished_ns == 200  # final once


def test_first_stop_wins_and_reaches_the_scheduler_once() -> None:
    job = _job()
    job._key = 3
    seen, stop = _calls()
    assert job._stop(JobState.CANCELLED, stop) is True and seen == [3]
    assert job.context.cancelled
    assert job._stop(JobState.TIMED_OUT, stop) is None and seen == [3]
    assert job._stop(JobState.FAILED, stop, OperatorError("x", operator="a", job_id=job.id)) \
        is None
    job._settle(5)
    assert job.state is JobState.CANCELLED
    with pytest.raises(JobCancelledError, match=rf"job {job.id} \('two'\) was cancelled"):
        job.result()
    assert job._stop(JobState.CANCELLED, stop) is None  # finished: nothing to stop


def test_failure_wins_over_success_and_names_the_operator() -> None:
    job = _job(job_id="f1", name="failing")
    error = OperatorError("operator 'a' failed in job f1", operator="a", job_id="f1")
    _, stop = _calls()
    assert job._stop(JobState.FAILED, stop, error) is True
    job._settle(9)
    assert job.state is JobState.FAILED and job.error is error
    with pytest.raises(OperatorError, match="job f1"):
        job.result()


def test_timeout_and_cancel_without_a_runtime() -> None:
    job = _job()
    _, stop = _calls()
    job._stop(JobState.TIMED_OUT, stop)
    job._settle(1)
    assert isinstance(job.error, JobTimeoutError) and job.state is JobState.TIMED_OUT
    other = _job()
    assert other.cancel() is True and other.cancel() is False
    other._settle(1)
    assert other.state is JobState.CANCELLED


def test_operator_states_of_a_job_that_was_stopped_mid_operator() -> None:
    job = _job()
    job._times[0], job._times[1] = 150, 180  # a ran and returned...
    job._op_states[0] = "cancelled"  # ...after the job was cancelled: its output discarded
    rows = {r["name"]: r for r in job.operator_states()}
    assert rows["a"]["state"] == "cancelled" and rows["a"]["duration_ms"] == 30 / 1e6
    assert rows["b"]["state"] == "not_run" and rows["b"]["start_ms"] is None
    job._times[2] = 190
    assert job.operator_states()[1]["state"] == "running"
    assert [op.name for op in job.operators] == ["a", "b"]


def test_wait_lock_is_made_only_for_a_caller_that_waits() -> None:
    """A job read after it finished never makes its wait lock; a waiter that came first is woken
    by the settle (the lock is made under the job's lock, so neither side can miss the other)."""
    done = _job()
    assert done._settle(200) == [] and done._done._lock is None
    assert done.wait(0) and done._done._lock is None
    job = _job()
    assert not job.wait(0.01) and job._done._lock is not None  # timed out: made the lock
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(job.wait(10)))
    waiter.start()
    job._settle(300)
    waiter.join(10)
    assert woken == [True] and job.state is JobState.SUCCEEDED and job.finished_ns == 300

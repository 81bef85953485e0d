"""The baseline of the ``load`` scenario (see ``_load.py``): the same jobs on an in-process Runtime.

No HTTP, no SQLite, no admission queue: the pipeline is built from the same definition text, the
jobs are submitted with the same priorities and pacing to a :class:`~clara_rt.Runtime` with the
server's worker count, and each result is written to disk by
:func:`~clara_rt.runner.outputs.collect_outputs` on one finishing thread (:class:`_Finisher`), as
the server does.
"""

from __future__ import annotations

import functools
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clara_rt.job import Job, JobState

if TYPE_CHECKING:
    from clara_rt.definition.build import BuiltPipeline

__all__ = ["run_in_process"]


def run_in_process(text: str, name: str, input_dir: Path, sequence: list[str], *,
                   delay: float, workers: int, timeout: float) -> dict[str, Any]:
    """The same jobs on an in-process Runtime; per-job latency and queue wait (seconds)."""
    from clara_rt.definition import parse_definition
    from clara_rt.definition.build import build_pipeline

    built = build_pipeline(parse_definition(f"{name}.yaml", text=text, environ={}))
    payload = built.payload_for(input_dir)
    scratch = Path(tempfile.mkdtemp(prefix="clara-rt-bench-load-local-"))
    finisher = _Finisher(scratch, len(sequence))
    try:
        submitted = _submit_all(built, payload, sequence, finisher, scratch, delay=delay,
                                workers=workers, timeout=timeout)
    finally:
        finisher.close()
        shutil.rmtree(scratch, ignore_errors=True)
    stopped_ns = finisher.stopped_ns
    return {
        "latency": [(stopped_ns[i] - j.submitted_ns) / 1e9 for i, j in enumerate(submitted)],
        "wait": [None if j.started_ns is None else (j.started_ns - j.submitted_ns) / 1e9
                 for j in submitted],
        "healthy": finisher.healthy,
        "wall": (max(stopped_ns) - min(j.submitted_ns for j in submitted)) / 1e9,
    }


def _submit_all(built: BuiltPipeline, payload: dict[str, Any], sequence: list[str],
                finisher: _Finisher, scratch: Path, *, delay: float, workers: int,
                timeout: float) -> list[Job]:
    """Run one warm-up job, then submit ``sequence`` at the pace of ``delay`` and wait for all."""
    from clara_rt.executor import Runtime
    from clara_rt.runner.outputs import collect_outputs

    with Runtime(workers=workers) as rt:
        warm = rt.submit(built.pipeline, payload, workspace=scratch / "warm")
        warm.wait(timeout)
        collect_outputs(warm.result(), scratch / "out-warm", scratch / "warm",
                        overwrite=True)
        submitted: list[Job] = []
        start = time.perf_counter()
        for i, prio in enumerate(sequence):
            pause = start + i * delay - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            job = rt.submit(built.pipeline, payload, priority=prio,
                            workspace=scratch / f"work-{i}")
            job.add_done_callback(functools.partial(finisher.put, i))
            submitted.append(job)
        deadline = time.monotonic() + timeout
        for job in submitted:
            if not job.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"in-process baseline unfinished after {timeout} s")
    return submitted


class _Finisher:
    """The server's finish loop, minus the database: one thread writes each job's results.

    ``stopped_ns[i]`` is when job ``i``'s results were written (``perf_counter_ns``) and
    ``healthy[i]`` whether it succeeded and its results could be written.
    """

    def __init__(self, scratch: Path, n: int) -> None:
        self.scratch = scratch
        self.stopped_ns = [0] * n
        self.healthy = [False] * n
        self._queue: queue.Queue[tuple[int, Job] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="bench-load-finish", daemon=True)
        self._thread.start()

    def put(self, index: int, job: Job) -> None:
        """Hand over job ``index`` once it has ended (a done callback)."""
        self._queue.put((index, job))

    def close(self) -> None:
        """Finish the jobs handed over and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        from clara_rt.runner.outputs import collect_outputs

        while (item := self._queue.get()) is not None:
            i, job = item
            if job.state is JobState.SUCCEEDED:
                try:
                    collect_outputs(job.result(), self.scratch / f"out-{i}",
                                    self.scratch / f"work-{i}", overwrite=True)
                    self.healthy[i] = True
                except OSError:
                    pass
            shutil.rmtree(self.scratch / f"work-{i}", ignore_errors=True)
            self.stopped_ns[i] = time.perf_counter_ns()

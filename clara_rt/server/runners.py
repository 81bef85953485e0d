"""Where a server job runs: the seam between the job manager and an execution backend.

The job manager decides *when* a job runs (queue, priorities, admission, records); a runner
decides *where*. :class:`LocalRunner` runs jobs on this process's :class:`~clara_rt.Runtime`;
a cluster runner (``clara-rt serve --cluster``) runs them elsewhere behind the same interface:

* ``runner.has_capacity(needs)`` says whether a job with those resource needs could start now;
  the job manager takes no job off its queue while it is false (a cluster whose node runtimes
  are all busy, or unreachable).
* ``runner.prepare(job)`` checks the job can be built (raising ``NotFound``, ``ClaraRTError``
  or ``ValueError`` with the reason) and returns a function that starts it:
  ``start(input_dir, workspace) -> RunHandle``.
* A :class:`RunHandle` is cancellable, calls back once when the run ends, reports its operators'
  states while it runs, and writes the results into the job's output folder (``collect``). A
  run that moves while it runs (re-queued on another cluster node) says so through its note
  callbacks, with ``placement`` updated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from clara_rt.cli._report import collect_outputs
from clara_rt.executor import Runtime
from clara_rt.job import Job, JobState
from clara_rt.observer import RuntimeObserver
from clara_rt.server.admission import JobNeeds
from clara_rt.server.config import ServerConfig
from clara_rt.server.pipelines import PipelineRegistry

__all__ = ["LocalRun", "LocalRunner", "RunHandle", "Runner", "operator_rows"]


class RunHandle(Protocol):
    """One job run, wherever it happens."""

    placement: str
    """Where it runs (``"local"``, a cluster node id, ...)."""
    transport: str
    """How its payload and results travel (``"in-process"``, ``"shared-path"``,
    ``"object-store"``)."""

    @property
    def state(self) -> JobState: ...

    @property
    def error(self) -> str | None: ...

    def cancel(self) -> None: ...

    def add_done_callback(self, fn: Callable[[RunHandle], None]) -> None: ...

    def add_note_callback(self, fn: Callable[[RunHandle, str], None]) -> None:
        """Call ``fn(run, note)`` with a line for the job's history when the run moves."""

    def operator_rows(self) -> list[dict[str, Any]]: ...

    def collect(self, output: Path, workspace: Path) -> None: ...


class Runner(Protocol):
    """Starts job runs; closed once when the server stops."""

    def has_capacity(self, needs: JobNeeds) -> bool:
        """Whether a job with ``needs`` can start now (called often, under the job manager's
        lock: answer from memory)."""

    def prepare(self, job: dict[str, Any]) -> Callable[[Path, Path], RunHandle]: ...

    def close(self) -> None: ...


def operator_rows(job: Job) -> list[dict[str, Any]]:
    """The operator rows a job record keeps: name, state, start (ms after submit), duration."""
    return [{"name": row["name"], "state": row["state"], "start_ms": row["start_ms"],
             "duration_ms": row["duration_ms"]} for row in job.operator_states()]


class LocalRun:
    """A job on this process's runtime."""

    placement = "local"
    transport = "in-process"

    def __init__(self, job: Job) -> None:
        self._job = job

    @property
    def state(self) -> JobState:
        return self._job.state

    @property
    def error(self) -> str | None:
        return None if self._job.error is None else str(self._job.error)

    def cancel(self) -> None:
        self._job.cancel()

    def add_done_callback(self, fn: Callable[[RunHandle], None]) -> None:
        self._job.add_done_callback(lambda _: fn(self))

    def add_note_callback(self, fn: Callable[[RunHandle, str], None]) -> None:
        """A local run never moves: nothing to say."""

    def operator_rows(self) -> list[dict[str, Any]]:
        return operator_rows(self._job)

    def collect(self, output: Path, workspace: Path) -> None:
        collect_outputs(self._job.result(), output, workspace, overwrite=True)


class LocalRunner:
    """Runs every job on one in-process :class:`Runtime`."""

    def __init__(self, config: ServerConfig, pipelines: PipelineRegistry,
                 observer: RuntimeObserver | None = None) -> None:
        self._pipelines = pipelines
        self._runtime = Runtime(workers=config.workers)
        if observer is not None:  # e.g. the server's operator logs
            self._runtime.add_observer(observer)

    def has_capacity(self, needs: JobNeeds) -> bool:
        """Always: the runtime queues what its workers cannot run yet."""
        return True

    def prepare(self, job: dict[str, Any]) -> Callable[[Path, Path], RunHandle]:
        built = self._pipelines.build(job["pipeline_id"], job["variables"], job.get("device"))

        def start(input_dir: Path, workspace: Path) -> RunHandle:
            return LocalRun(self._runtime.submit(
                built.pipeline, built.payload_for(input_dir), priority=job["priority"],
                timeout=job["timeout"], workspace=workspace, job_id=job["id"],
                name=job["name"]))

        return start

    def close(self) -> None:
        self._runtime.close(cancel=True, timeout=10.0)

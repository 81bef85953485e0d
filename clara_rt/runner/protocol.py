"""The runner contract: what the server's job manager asks of wherever a job runs.

The job manager decides *when* a job runs (queue, priorities, admission, records); a runner
decides *where*. ``clara_rt.server.runners.LocalRunner`` runs jobs on the server's own
:class:`~clara_rt.Runtime`; ``clara_rt.cluster.RayRunner`` runs them on a Ray cluster behind
the same interface:

* ``runner.has_capacity(needs)`` says whether a job with those resource needs could start now;
  the job manager takes no job off its queue while it is false (a cluster whose node runtimes
  are all busy, or unreachable).
* ``runner.prepare(job)`` checks the job can be built (raising :class:`~clara_rt.errors.
  NotFound`, ``ClaraRTError`` or ``ValueError`` with the reason) and returns a function that
  starts it: ``start(input_dir, workspace) -> RunHandle``.
* A :class:`RunHandle` is cancellable, calls back once when the run ends, reports its operators'
  states while it runs, and writes the results into the job's output folder (``collect``). A
  run that moves while it runs (re-queued on another cluster node) says so through its note
  callbacks, with ``placement`` updated.
* A runner reads pipelines through :class:`PipelineSource` (the server's registry), never
  through the server itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from clara_rt.job import Job, JobState
from clara_rt.runner.needs import JobNeeds

__all__ = ["PipelineSource", "RunHandle", "Runner", "operator_rows"]


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


class PipelineSource(Protocol):
    """Where a runner reads a server job's pipeline (the server's pipeline registry)."""

    def get(self, ref: str) -> dict[str, Any]:
        """The pipeline's record (``id``, ``name``, ``updated``, ...); raises
        :class:`~clara_rt.errors.NotFound` for a deleted pipeline."""

    def definition_text(self, ref: str) -> str:
        """The pipeline's YAML as uploaded."""

    def needs(self, pipeline_id: str) -> JobNeeds:
        """What one job of the pipeline asks for."""

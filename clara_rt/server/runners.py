"""The runner that runs server jobs in this process: :class:`LocalRunner`.

The runner contract (:class:`~clara_rt.runner.protocol.Runner`, :class:`~clara_rt.runner.
protocol.RunHandle`) lives in :mod:`clara_rt.runner`, below the server and the cluster, so that
``clara-rt serve --cluster`` plugs :class:`clara_rt.cluster.RayRunner` in without the cluster
importing the server. :class:`LocalRunner` runs every job on this process's
:class:`~clara_rt.Runtime`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clara_rt.executor import Runtime
from clara_rt.job import Job, JobState
from clara_rt.observer import RuntimeObserver
from clara_rt.runner.needs import JobNeeds
from clara_rt.runner.outputs import collect_outputs
from clara_rt.runner.protocol import RunHandle, operator_rows
from clara_rt.server.config import ServerConfig
from clara_rt.server.pipelines import PipelineRegistry

__all__ = ["LocalRun", "LocalRunner"]


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

"""Run pipeline definitions on a Ray cluster from Python: :class:`ClusterRuntime`.

::

    from clara_rt.cluster import ClusterRuntime

    with ClusterRuntime("ray://head:10001") as rt:
        job = rt.submit("examples/ct-lung-seg/pipeline.yaml", "study/", output="out/")
        print(job.result(), job.placement)          # out/, e.g. "10.0.0.2/1a2b3c4d"

This is a class of its own rather than a :class:`~clara_rt.Runtime` (whose module never
imports the cluster package), because the contract differs:
:meth:`Runtime.submit <clara_rt.Runtime.submit>` takes a
:class:`~clara_rt.Pipeline` of live operator objects and a payload of arrays and returns
results in memory, while a node elsewhere can only rebuild a pipeline from its definition and
read a folder. A cluster runtime therefore takes a definition and a payload folder and writes
the results into an output folder, as ``clara-rt run`` and the server do. It drives the same
:class:`~clara_rt.cluster.ray_runner.RayRunner` as ``clara-rt serve --cluster``, so jobs get
the same placement, capacity, transports, re-queue and timeout handling.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from clara_rt.cluster.ray_runner import (
    ClusterError,
    ClusterState,
    RayRun,
    RayRunner,
    RunSpec,
)
from clara_rt.definition.schema import parse_definition
from clara_rt.errors import JobCancelledError, JobTimeoutError
from clara_rt.job import JobState, Priority
from clara_rt.runner.needs import JobNeeds

__all__ = ["ClusterJob", "ClusterRuntime"]


class ClusterJob:
    """A job on the cluster. Made by :meth:`ClusterRuntime.submit`."""

    def __init__(self, job_id: str, pipeline: str, run: RayRun, folder: Path,
                 output: Path) -> None:
        self.id = job_id
        self.pipeline = pipeline
        self.output = output
        self.folder = folder
        self._run = run
        self._done = threading.Event()
        self._state = JobState.PENDING
        self._error: str | None = None
        run.add_done_callback(lambda _: self._ended())

    @property
    def state(self) -> JobState:
        """Pending (waiting for a node), running, or the final state."""
        return self._state if self._done.is_set() else self._run.state

    @property
    def error(self) -> str | None:
        """Why the job did not succeed (``None`` while it runs or after success)."""
        return self._error

    @property
    def placement(self) -> str:
        """The node runtime that ran (or runs) the job: ``IP/node-id[/gpuN]``."""
        return self._run.placement

    @property
    def transport(self) -> str:
        """``"shared-path"`` or ``"object-store"``."""
        return self._run.transport

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended and its results are in place; return whether it has."""
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Path:
        """Wait for the job and return its output folder.

        Raises:
            TimeoutError: ``timeout`` passed first (the job goes on).
            JobCancelledError: The job was cancelled.
            JobTimeoutError: The job ran past its timeout.
            ClusterError: The job failed (the message says where and why).
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"cluster job {self.id} ('{self.pipeline}') still "
                               f"{self.state.value} after {timeout} s")
        if self._state is JobState.SUCCEEDED:
            return self.output
        message = f"cluster job {self.id} ('{self.pipeline}'): {self._error}"
        if self._state is JobState.CANCELLED:
            raise JobCancelledError(message)
        if self._state is JobState.TIMED_OUT:
            raise JobTimeoutError(message)
        raise ClusterError(message)

    def cancel(self) -> None:
        """Stop the job on its node (running operators finish first)."""
        self._run.cancel()

    def operator_states(self) -> list[dict[str, Any]]:
        """Operator rows (name, state, start_ms, duration_ms), fetched from the node."""
        return self._run.operator_rows()

    def __repr__(self) -> str:
        return f"<ClusterJob {self.id} '{self.pipeline}' {self.state.value} on {self.placement}>"

    def _ended(self) -> None:
        run = self._run
        state, error = run.state, run.error
        work = self.folder / "work"
        if state is JobState.SUCCEEDED:
            try:
                run.collect(self.output, work)
            except OSError as exc:
                state, error = JobState.FAILED, f"results could not be saved: {exc}"
            else:
                shutil.rmtree(work, ignore_errors=True)
        self._state, self._error = state, error
        self._done.set()


class ClusterRuntime:
    """Runs Clara pipeline definitions on the clara-rt runtimes of a Ray cluster's nodes.

    Args:
        cluster: ``ray://HOST:PORT``, ``HOST:PORT``, ``auto`` or ``local``
            (:data:`~clara_rt.cluster.address.ADDRESS_HELP`).
        shared_path: A folder mounted at the same path on every node: jobs whose payload folder
            and scratch folder lie under it move no data through Ray (give ``scratch`` under it).
        workers: Worker threads of each node runtime (``None``: its share of the node's CPUs).
        services: Service name -> URL for every pipeline (``triton=http://...``).
        grace: Seconds after a job's timeout before its node runtime counts as hung and is
            replaced.
        scratch: Where jobs keep their workspace and, unless ``submit`` names one, their output
            (default: a new temporary folder).
        env: Extra environment of the Ray driver process (``RAY_AUTH_TOKEN``, ...).
        connect_timeout: Seconds to wait for the cluster and its first node runtime.

    Raises:
        ClusterUnavailableError: The cluster did not answer within ``connect_timeout``.
    """

    def __init__(self, cluster: str, *, shared_path: str | os.PathLike[str] | None = None,
                 workers: int | None = None, services: Mapping[str, str] | None = None,
                 grace: float = 30.0, scratch: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None, connect_timeout: float = 120.0) -> None:
        self._own_scratch = scratch is None
        self._scratch = (Path(tempfile.mkdtemp(prefix="clara-rt-cluster-")) if scratch is None
                         else Path(scratch).resolve())
        self._runner = RayRunner(cluster, shared_path=None if shared_path is None
                                 else Path(shared_path), workers=workers, services=services,
                                 grace=grace, env=env)
        self._jobs: dict[str, ClusterJob] = {}
        try:
            self._runner.wait_ready(connect_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str:
        return self._runner.address

    def state(self) -> ClusterState:
        """Nodes, slots, capacity and running jobs as the runner sees them."""
        return self._runner.cluster_state()

    def wait_for_slots(self, count: int, timeout: float = 60.0) -> ClusterState:
        """Wait until at least ``count`` node runtimes are ready (nodes joining).

        Raises:
            TimeoutError: Not within ``timeout`` seconds.
        """
        import time

        deadline = time.monotonic() + timeout
        while (state := self.state()).slots < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{state.slots} of {count} node runtimes ready after "
                                   f"{timeout:g} s")
            time.sleep(0.1)
        return state

    def submit(self, pipeline: str | os.PathLike[str], payload: str | os.PathLike[str], *,
               output: str | os.PathLike[str] | None = None,
               variables: Mapping[str, str] | None = None,
               priority: Priority | str | int = "normal",
               timeout: float | None = None) -> ClusterJob:
        """Start a job of ``pipeline`` on the payload folder; return at once.

        Args:
            pipeline: A definition file, or its YAML text.
            payload: The job's input folder (every payload input of the pipeline gets it).
            output: Where the results go (default: ``<scratch>/<job id>/output``); an existing
                folder's entries of the same names are replaced.
            variables: ``${{NAME}}`` values.
            priority: ``immediate``, ``high``, ``normal`` or ``low``: order among jobs waiting
                for a node, and priority on the node.
            timeout: Seconds the job may run on its node.

        Raises:
            DefinitionError: The definition is invalid or a variable is missing.
            FileNotFoundError: ``payload`` is not a folder.
            ClusterUnavailableError: The runtime is closed.
        """
        text, source = _definition(pipeline)
        values = dict(variables or {})
        definition = parse_definition(source, text=text, variables=values, environ={})
        payload_dir = Path(payload).resolve()
        if not payload_dir.is_dir():
            raise FileNotFoundError(f"payload folder {payload_dir} does not exist")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        job_id = uuid.uuid4().hex
        folder = self._scratch / job_id
        (folder / "work").mkdir(parents=True)
        (folder / "logs").mkdir()
        key = (hashlib.sha256(text.encode()).hexdigest(), "")
        spec = RunSpec(job_id=job_id, key=key, name=definition.name, text=text, variables=values,
                       priority=Priority.parse(priority).name.lower(), timeout=timeout,
                       needs=JobNeeds.of(definition.operators))
        run = self._runner.start_run(spec, payload_dir, folder / "work")
        job = ClusterJob(job_id, definition.name, run, folder,
                         folder / "output" if output is None else Path(output).resolve())
        self._jobs[job_id] = job
        return job

    def close(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Wait for (or with ``cancel=True`` cancel) the jobs, then disconnect from the cluster.

        Args:
            cancel: Cancel unfinished jobs instead of waiting for them.
            timeout: Seconds to wait for jobs before cancelling what is left.
        """
        jobs = list(self._jobs.values())
        for job in jobs:
            if cancel or not job.wait(timeout):
                job.cancel()
        for job in jobs:
            job.wait(10.0)
        self._runner.close()
        if self._own_scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> ClusterRuntime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(cancel=exc is not None)


def _definition(pipeline: str | os.PathLike[str]) -> tuple[str, str]:
    """(YAML text, name for messages) of a definition file or text."""
    if isinstance(pipeline, str) and "\n" in pipeline:
        return pipeline, "pipeline.yaml"
    path = Path(pipeline)
    return path.read_text(encoding="utf-8"), str(path)

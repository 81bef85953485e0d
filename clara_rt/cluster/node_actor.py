"""The clara-rt runtime of one cluster node (or of one GPU of it), hosted in a Ray actor.

The bridge (:mod:`clara_rt.cluster.bridge`) creates one :class:`NodeRuntime` actor per alive
node, and one per GPU on nodes that have GPUs (Ray then sets ``CUDA_VISIBLE_DEVICES`` of the
actor to its GPU), pinned to the node with ``NodeAffinitySchedulingStrategy(soft=False)``. Each
actor lives as long as the server's connection to the cluster and keeps warm between jobs:

* one :class:`~clara_rt.Runtime` with ``workers`` threads: inside a node nothing changes, the
  operators of a job hand their arrays over by reference as in a single process;
* the built pipelines, per (pipeline key, variables), from the YAML text the server sends
  (like :meth:`PipelineRegistry.build <clara_rt.server.pipelines.PipelineRegistry.build>`), so
  operators keep their loaded models and CUDA context from one job to the next;
* per-operator logs: :class:`~clara_rt.runner.logs.OperatorLogs` observes the runtime, which
  writes ``<job folder>/logs/<operator>.log`` as on the server.

The actor is asynchronous: :meth:`NodeRuntime.run` awaits its job's end without holding a
thread, so :meth:`cancel` and :meth:`operator_states` answer while jobs run. File work (unpacking
a payload, building, writing results) runs on the event loop's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from clara_rt.cluster.transport import OBJECT_STORE, RESULTS_DIR, Packed, pack, unpack
from clara_rt.definition.build import BuiltPipeline, build_pipeline
from clara_rt.definition.schema import parse_definition
from clara_rt.executor import Runtime
from clara_rt.job import Job, JobState
from clara_rt.runner.logs import OperatorLogs, append_command_logs
from clara_rt.runner.outputs import collect_outputs
from clara_rt.runner.protocol import operator_rows

__all__ = ["NodeRuntime"]

log = logging.getLogger("clara_rt.cluster")

_BUILT_CACHE = 32


class NodeRuntime:
    """One long-lived runtime on a node; the body of the Ray actor the bridge creates.

    Args:
        settings: ``workers`` (runtime threads), ``placement`` (how the server names this
            actor), ``services`` (service name -> URL for every pipeline).
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self._placement = str(settings["placement"])
        self._services = dict(settings.get("services") or {})
        self._workers = int(settings["workers"])
        self._runtime = Runtime(workers=self._workers)
        self._built: OrderedDict[tuple[Any, ...], BuiltPipeline] = OrderedDict()
        self._build_lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._cancelled: set[str] = set()
        self._scratch = Path(tempfile.mkdtemp(prefix="clara-rt-node-"))
        self._logs = OperatorLogs()
        self._runtime.add_observer(self._logs)
        root = logging.getLogger()
        root.addHandler(self._logs)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)  # operators' INFO records go to their log files

    async def ready(self) -> dict[str, Any]:
        """Where this actor runs: node id, host name, process id, workers, GPU ids."""
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(),
                "hostname": socket.gethostname(), "pid": os.getpid(), "workers": self._workers,
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}

    async def run(self, spec: dict[str, Any], payload: Packed | None) -> dict[str, Any]:
        """Run one job to its end and return ``state``, ``error``, ``rows`` and, for the
        object store, ``files`` (its results and logs, packed).

        ``spec`` holds ``job_id``, ``key`` (pipeline id and version), ``name``, ``text`` (the
        YAML), ``variables``, ``priority``, ``timeout``, ``transport`` and, for a shared path,
        ``input`` and ``workspace``. ``payload`` is the packed input folder (object store).
        """
        loop = asyncio.get_running_loop()
        job_id = str(spec["job_id"])
        folder: Path | None = None
        try:
            try:
                here, input_dir, work = await loop.run_in_executor(
                    None, self._folders, spec, payload)
                folder = here
                built = await loop.run_in_executor(None, self._build, spec)
            except Exception as exc:
                return self._ended(spec, JobState.FAILED, f"the job could not start on node "
                                   f"{self._placement}: {type(exc).__name__}: {exc}", [], folder)
            if job_id in self._cancelled:
                return self._ended(spec, JobState.CANCELLED, "canceled", [], folder)
            finished = loop.create_future()
            job = self._runtime.submit(
                built.pipeline, built.payload_for(input_dir), priority=spec["priority"],
                timeout=spec["timeout"], workspace=work, job_id=job_id,
                name=spec.get("job_name") or None)
            self._jobs[job_id] = job
            if job_id in self._cancelled:
                job.cancel()
            job.add_done_callback(lambda _: _resolve_soon(loop, finished))
            await finished
            return await loop.run_in_executor(None, self._finish, spec, job, here, work)
        finally:
            self._jobs.pop(job_id, None)
            self._cancelled.discard(job_id)
            if spec["transport"] == OBJECT_STORE:
                shutil.rmtree(self._scratch / job_id, ignore_errors=True)

    async def cancel(self, job_id: str) -> bool:
        """Cancel the job (also when its run has not reached this actor yet)."""
        job = self._jobs.get(job_id)
        if job is None:
            self._cancelled.add(job_id)
            return False
        return job.cancel()

    async def operator_states(self, job_id: str) -> list[dict[str, Any]] | None:
        """The job's operator rows (name, state, start_ms, duration_ms), or ``None``."""
        job = self._jobs.get(job_id)
        return None if job is None else operator_rows(job)

    async def stats(self) -> dict[str, Any]:
        """Jobs running and pipelines kept built."""
        return {"jobs": len(self._jobs), "built": len(self._built),
                "placement": self._placement}

    async def shutdown(self) -> None:
        """Cancel the jobs, stop the runtime and remove the scratch folder."""
        self._runtime.close(cancel=True, timeout=5.0)
        logging.getLogger().removeHandler(self._logs)
        shutil.rmtree(self._scratch, ignore_errors=True)

    # --- private ------------------------------------------------------------------------

    def _folders(self, spec: dict[str, Any], payload: Packed | None
                 ) -> tuple[Path, Path, Path]:
        """The job's folder, input folder and workspace on this node."""
        if spec["transport"] == OBJECT_STORE:
            folder = self._scratch / str(spec["job_id"])
            shutil.rmtree(folder, ignore_errors=True)
            input_dir, work = folder / "input", folder / "work"
            input_dir.mkdir(parents=True)
            work.mkdir()
            (folder / "logs").mkdir()
            if payload is not None:
                unpack(payload, {"input": input_dir})
            return folder, input_dir, work
        input_dir, work = Path(spec["input"]), Path(spec["workspace"])
        if not input_dir.is_dir():
            raise FileNotFoundError(
                f"the input folder {input_dir} is not visible here; mount the shared path "
                f"(--cluster-shared-path) at the same place on every node")
        work.mkdir(parents=True, exist_ok=True)
        return work.parent, input_dir, work

    def _build(self, spec: dict[str, Any]) -> BuiltPipeline:
        variables = dict(spec["variables"])
        key = (*spec["key"], tuple(sorted(variables.items())))
        with self._build_lock:
            built = self._built.get(key)
            if built is not None:
                self._built.move_to_end(key)
                return built
            definition = parse_definition(f"{spec['name']}.yaml", text=spec["text"],
                                          variables=variables, environ={})
            built = build_pipeline(definition, services=self._services)
            self._built[key] = built
            while len(self._built) > _BUILT_CACHE:
                self._built.popitem(last=False)
            return built

    def _finish(self, spec: dict[str, Any], job: Job, folder: Path, work: Path
                ) -> dict[str, Any]:
        state, error = job.state, None if job.error is None else str(job.error)
        if state is JobState.SUCCEEDED:
            try:
                collect_outputs(job.result(), work / RESULTS_DIR, work, overwrite=True)
            except OSError as exc:
                state, error = JobState.FAILED, (f"results could not be saved on node "
                                                 f"{self._placement}: {exc}")
        return self._ended(spec, state, error, operator_rows(job), folder)

    def _ended(self, spec: dict[str, Any], state: JobState, error: str | None,
               rows: list[dict[str, Any]], folder: Path | None) -> dict[str, Any]:
        files = None
        if spec["transport"] == OBJECT_STORE and folder is not None:
            append_command_logs(folder)
            files = pack({"output": folder / "work" / RESULTS_DIR, "logs": folder / "logs"})
        return {"state": state.value, "error": error, "rows": rows, "files": files,
                "placement": self._placement}


def _resolve_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

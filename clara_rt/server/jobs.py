"""Jobs of the platform server: Clara's job model on top of one in-process :class:`Runtime`.

Life of a job (Clara's states and statuses)::

    create ──> pending (queued=false) ──start──> pending (queued) ──> running ──> stopped
                                                                              status: healthy |
                                                                              faulted | canceled |
                                                                              timed-out

* The server keeps its own queue with the runtime's policy (:class:`~clara_rt.fair_queue.
  FairQueue`: ``immediate`` first, then high/normal/low 4:2:1, first come first served within a
  class, so low jobs progress on a saturated server) and admits at most ``running_limit`` jobs
  to the runtime at once (``immediate`` jobs are always admitted); inside the runtime,
  priorities apply again at every operator boundary. The queue and its thread are in
  :mod:`~clara_rt.server.job_dispatch`, the thread that records ends in
  :mod:`~clara_rt.server.job_finish`, what both share with the requests in
  :mod:`~clara_rt.server.job_book`.
* Every change of state is committed to SQLite before anyone is told of it, so after a crash or
  ``kill -9`` the database says what was accepted: pending jobs run on the next start, finished
  jobs keep their results, and jobs that were running are either failed as interrupted or queued
  again (``on_restart``).
* A job's files live in ``<data>/jobs/<id>/``: ``input/`` (its copy of its payloads),
  ``work/`` (the runtime workspace, removed after success), ``output/`` (results, written
  through a temporary name by :func:`~clara_rt.runner.outputs.collect_outputs`),
  ``logs/<operator>.log``.
* Per-operator logs: :class:`~clara_rt.runner.logs.OperatorLogs` (added to the runtime by the
  server) writes ``logs/<operator>.log``; a command operator's stdout/stderr are appended when
  the job ends (:func:`~clara_rt.runner.logs.append_command_logs`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from clara_rt.definition.process_group import reap_stale_groups
from clara_rt.errors import Conflict, NotFound
from clara_rt.job import PRIORITY_NAMES, Priority
from clara_rt.runner.protocol import Runner
from clara_rt.server.config import ServerConfig
from clara_rt.server.events import EventHub
from clara_rt.server.job_book import INTERRUPTED, JobBook, public_job
from clara_rt.server.job_dispatch import Dispatcher, copy_payloads
from clara_rt.server.job_finish import Finisher
from clara_rt.server.pipelines import PipelineRegistry
from clara_rt.server.results import result_files
from clara_rt.server.runners import LocalRunner
from clara_rt.server.store import Store, new_id

__all__ = ["JobManager", "copy_payloads", "public_job"]

log = logging.getLogger("clara_rt.server")


class JobManager:
    """Creates, queues, runs, cancels and records jobs; recovers them after a restart."""

    def __init__(self, config: ServerConfig, store: Store, pipelines: PipelineRegistry,
                 events: EventHub, runner: Runner | None = None) -> None:
        self._config = config
        self._book = JobBook(config, store, pipelines, events)
        self._store, self._pipelines, self._cond = store, pipelines, self._book.cond
        self._runner: Runner = runner if runner is not None else LocalRunner(config, pipelines)
        self._finisher = Finisher(self._book)
        self._dispatcher = Dispatcher(self._book, self._runner, self._finisher.done)
        self.admission = self._book.admission
        config.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._threads = [
            threading.Thread(target=self._dispatcher.run, name="clara-rt-dispatch", daemon=True),
            threading.Thread(target=self._finisher.run, name="clara-rt-finish", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # --- requests -----------------------------------------------------------------------

    def create(self, pipeline: str, payloads: list[str], *, name: str | None = None,
               priority: str = "normal", variables: dict[str, str] | None = None,
               timeout: float | None = None, start: bool = False,
               device: str | None = None) -> dict[str, Any]:
        """Record a new job (and queue it when ``start``); return its public record.

        Raises:
            NotFound: Unknown pipeline or payload.
            ValueError: Bad priority, timeout above the maximum, variables not strings.
            DeviceUnavailableError: ``device`` is ``cuda`` and CuPy finds no GPU here.
        """
        record = self._pipelines.get(pipeline)
        prio = Priority.parse(priority).name.lower()
        for payload_id in payloads:
            if self._store.payload(payload_id) is None:
                raise NotFound(f"no payload with id '{payload_id}'")
        if len(set(payloads)) != len(payloads):
            raise ValueError("a payload is listed twice")
        variables = dict(variables or {})
        bad = [k for k, v in variables.items() if not isinstance(v, str) or not k]
        if bad:
            raise ValueError(f"variables must map names to strings: {bad}")
        timeout = self._timeout(timeout)
        if device is not None:
            from clara_rt.arrays import resolve_device

            resolve_device(device)  # cuda without a GPU: refused now, not when the job runs
        reason = self.admission.never_fits(self._pipelines.needs(record["id"]))
        if reason is not None:
            raise ValueError(f"pipeline '{record['name']}' cannot run here: {reason}")
        job_id = new_id()
        job = {"id": job_id, "name": name or f"{record['name']}-{job_id[:8]}",
               "pipeline_id": record["id"], "pipeline": record["name"], "payloads": payloads,
               "priority": prio, "variables": variables, "timeout": timeout, "device": device,
               "state": "pending", "status": "healthy", "queued": int(start), "error": None,
               "created": time.time()}
        with self._cond:
            self._store.add_job(job, "created and queued" if start else "created")
            if start:
                self._dispatcher.push(job)
        return self._book.publish(job_id)

    def start(self, job_id: str) -> dict[str, Any]:
        """Queue a created job. Raises :class:`Conflict` when it was started already."""
        with self._cond:
            job = self._book.job(job_id)
            if job["state"] != "pending" or job["queued"]:
                raise Conflict(f"job {job_id} was already started (state {job['state']})")
            self._store.update_job(job_id, "queued", queued=1)
            self._dispatcher.push(job)
        return self._book.publish(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending or running job. Raises :class:`Conflict` when it has stopped."""
        with self._cond:
            job = self._book.job(job_id)
            if job["state"] == "stopped":
                raise Conflict(f"job {job_id} has already stopped ({job['status']})")
            live = self._book.live.get(job_id)
            if live is None:  # still waiting: stop it here
                self._store.update_job(job_id, "canceled before it ran", state="stopped",
                                       status="canceled", queued=0, stopped=time.time(),
                                       error="canceled")
            else:
                live.cancel_requested = True
                if live.job is not None:
                    live.job.cancel()
        return self._book.publish(job_id)

    def delete(self, job_id: str) -> None:
        """Forget a stopped job and its files."""
        with self._cond:
            job = self._book.job(job_id)
            if job["state"] != "stopped":
                raise Conflict(f"job {job_id} is {job['state']}; cancel it before deleting it")
            self._store.delete_job(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's public record with per-operator state and its history."""
        return self._book.status(job_id)

    def find(self, **filters: Any) -> list[dict[str, Any]]:
        jobs = self._store.jobs(**filters)
        return [public_job({**job, **self._book.unrecorded[job["id"]].fields}
                           if job["id"] in self._book.unrecorded else job) for job in jobs]

    def folder(self, job_id: str) -> Path:
        return self._book.folder(job_id)

    def log_path(self, job_id: str, operator: str) -> Path:
        """The operator's log file (which may not exist yet)."""
        job = self._book.job(job_id)
        names = [op["name"] for op in self._pipelines.get(job["pipeline_id"])["operators"]]
        if operator not in names:
            raise NotFound(f"pipeline '{job['pipeline']}' has no operator '{operator}' "
                           f"(operators: {', '.join(names)})")
        return self.folder(job_id) / "logs" / f"{operator}.log"

    def results(self, job_id: str) -> tuple[Path, list[tuple[str, int]]]:
        """The job's output folder and its files."""
        job = self._book.job(job_id)
        output = self.folder(job_id) / "output"
        if job["results_deleted"]:
            raise NotFound(f"results of job {job_id} were deleted by the retention policy")
        return output, result_files(output)

    def queue_depth(self) -> dict[str, int]:
        """Jobs waiting in the server's queue, per priority."""
        depth = dict.fromkeys(PRIORITY_NAMES, 0)
        for job in self._store.jobs(state="pending", limit=-1):
            if job["queued"]:
                depth[job["priority"]] += 1
        return depth

    @property
    def running(self) -> int:
        return len(self._book.live)

    def running_operator_starts(self) -> list[float]:
        """Wall-clock start times of the operators running now (the workers' busy fraction)."""
        with self._cond:
            runs = [(job_id, live.job) for job_id, live in self._book.live.items()
                    if live.job is not None]
        starts: list[float] = []
        for job_id, run in runs:
            record = self._store.job(job_id)
            started = None if record is None else record.get("started")
            if started is None:
                continue
            starts += [float(started) + float(row["start_ms"]) / 1000.0
                       for row in run.operator_rows()
                       if row["state"] == "running" and row["start_ms"] is not None]
        return starts

    def close(self, grace: float | None = None) -> None:
        """Stop admitting jobs, give running ones ``grace`` seconds, then stop them.

        Jobs stopped this way are handled as after a crash (``on_restart``), so a restart
        resumes them; pending jobs stay pending.
        """
        grace = self._config.shutdown_grace if grace is None else grace
        with self._cond:
            self._book.closing = True
            self._cond.notify_all()
            deadline = time.monotonic() + grace
            while self._book.live and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            for live in self._book.live.values():
                live.shutdown = True
                if live.job is not None:
                    live.job.cancel()
            while self._book.live:
                if not self._cond.wait(10.0):
                    log.warning("jobs still stopping after 10 s: %s", sorted(self._book.live))
        self._finisher.stop()
        for thread in self._threads:
            thread.join(timeout=10.0)
        self._runner.close()

    # --- restart ------------------------------------------------------------------------

    def _recover(self) -> None:
        """Apply ``on_restart`` to jobs a dead server left running; queue pending ones.

        Command processes such a job left behind are killed first, so a job queued again
        never runs twice at once (issue 16.12).
        """
        for job in self._store.jobs(state="running", limit=-1):
            killed = reap_stale_groups(self.folder(job["id"]) / "work")
            if killed:
                log.warning("job %s: killed %d command process(es) left by the stopped server "
                            "(pids %s)", job["id"], len(killed), killed)
            if self._config.on_restart == "requeue" and job["attempts"] < 2:
                self._store.update_job(job["id"], "re-queued after a server restart",
                                       state="pending", status="healthy", queued=1,
                                       started=None)
                log.warning("job %s was running when the server stopped: queued again",
                            job["id"])
            else:
                self._store.update_job(job["id"], INTERRUPTED, state="stopped",
                                       status="faulted", error=INTERRUPTED,
                                       stopped=time.time(), queued=0)
                log.warning("job %s was running when the server stopped: marked faulted",
                            job["id"])
        with self._cond:
            for job in reversed(self._store.jobs(state="pending", limit=-1)):
                if job["queued"]:
                    self._dispatcher.push(job)

    # --- helpers ------------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> float | None:
        if timeout is None:
            return self._config.default_timeout
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, not {timeout}")
        limit = self._config.max_timeout
        if limit is not None and timeout > limit:
            raise ValueError(f"timeout {timeout} s is above the server's maximum of {limit} s")
        return timeout

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
  priorities apply again at every operator boundary.
* Every change of state is committed to SQLite before anyone is told of it, so after a crash or
  ``kill -9`` the database says what was accepted: pending jobs run on the next start, finished
  jobs keep their results, and jobs that were running are either failed as interrupted or queued
  again (``on_restart``).
* A job's files live in ``<data>/jobs/<id>/``: ``input/`` (links to its payloads' files),
  ``work/`` (the runtime workspace, removed after success), ``output/`` (results, written through
  a temporary name by :func:`collect_outputs`), ``logs/<operator>.log``.
* Per-operator logs: :class:`~clara_rt.runner.logs.OperatorLogs` (added to the runtime by the
  server) writes ``logs/<operator>.log``; a command operator's stdout/stderr are appended when
  the job ends (:func:`~clara_rt.runner.logs.append_command_logs`).
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clara_rt.definition.process_group import reap_stale_groups
from clara_rt.errors import ClaraRTError, Conflict, NotFound
from clara_rt.fair_queue import FairQueue
from clara_rt.job import PRIORITY_NAMES, JobState, Priority
from clara_rt.runner.logs import append_command_logs
from clara_rt.runner.needs import JobNeeds
from clara_rt.runner.protocol import RunHandle, Runner
from clara_rt.server.admission import Admission, FreeMemory, default_gpu_jobs, physical_memory
from clara_rt.server.config import ServerConfig
from clara_rt.server.events import EventHub
from clara_rt.server.payloads import iter_files
from clara_rt.server.pipelines import PipelineRegistry
from clara_rt.server.results import drop_links, result_files
from clara_rt.server.runners import LocalRunner
from clara_rt.server.store import Store, new_id

__all__ = ["JobManager", "public_job"]

log = logging.getLogger("clara_rt.server")

_STATUS = {JobState.SUCCEEDED: "healthy", JobState.FAILED: "faulted",
           JobState.CANCELLED: "canceled", JobState.TIMED_OUT: "timed-out"}
_INTERRUPTED = "interrupted: the server stopped while the job was running"
_RETRY_S = 2.0  # how often an end the database could not take (disk full) is tried again


@dataclass
class _Live:
    job: RunHandle | None  # None while being prepared
    folder: Path
    needs: JobNeeds = field(default_factory=JobNeeds)
    cancel_requested: bool = False
    shutdown: bool = False


@dataclass(frozen=True)
class _Unrecorded:
    """A job's end the database refused (disk full): saved again every ``_RETRY_S`` seconds."""

    note: str
    fields: dict[str, Any]


class JobManager:
    """Creates, queues, runs, cancels and records jobs; recovers them after a restart."""

    def __init__(self, config: ServerConfig, store: Store, pipelines: PipelineRegistry,
                 events: EventHub, runner: Runner | None = None) -> None:
        self._config = config
        self._store = store
        self._pipelines = pipelines
        self._events = events
        self._runner: Runner = runner if runner is not None else LocalRunner(config, pipelines)
        self._cond = threading.Condition()
        self._queue: FairQueue[str] = FairQueue()  # ids of queued jobs
        self._live: dict[str, _Live] = {}
        self._finished: queue.Queue[str | None] = queue.Queue()
        self._closing = False
        self.admission = Admission(
            int(0.8 * physical_memory()) if config.memory_budget == -1 else config.memory_budget,
            default_gpu_jobs() if config.gpu_jobs == -1 else config.gpu_jobs, FreeMemory())
        self._waiting_noted: set[str] = set()
        # Ends the database refused (disk full): job id -> (note, fields), retried by the
        # finish thread and shown by status() meanwhile.
        self._unrecorded: dict[str, _Unrecorded] = {}
        self._head_needs: JobNeeds | None = None
        config.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._threads = [
            threading.Thread(target=self._dispatch_loop, name="clara-rt-dispatch", daemon=True),
            threading.Thread(target=self._finish_loop, name="clara-rt-finish", daemon=True),
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
                self._push(job)
        return self._publish(job_id)

    def start(self, job_id: str) -> dict[str, Any]:
        """Queue a created job. Raises :class:`Conflict` when it was started already."""
        with self._cond:
            job = self._job(job_id)
            if job["state"] != "pending" or job["queued"]:
                raise Conflict(f"job {job_id} was already started (state {job['state']})")
            self._store.update_job(job_id, "queued", queued=1)
            self._push(job)
        return self._publish(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending or running job. Raises :class:`Conflict` when it has stopped."""
        with self._cond:
            job = self._job(job_id)
            if job["state"] == "stopped":
                raise Conflict(f"job {job_id} has already stopped ({job['status']})")
            live = self._live.get(job_id)
            if live is None:  # still waiting: stop it here
                self._store.update_job(job_id, "canceled before it ran", state="stopped",
                                       status="canceled", queued=0, stopped=time.time(),
                                       error="canceled")
            else:
                live.cancel_requested = True
                if live.job is not None:
                    live.job.cancel()
        return self._publish(job_id)

    def delete(self, job_id: str) -> None:
        """Forget a stopped job and its files."""
        with self._cond:
            job = self._job(job_id)
            if job["state"] != "stopped":
                raise Conflict(f"job {job_id} is {job['state']}; cancel it before deleting it")
            self._store.delete_job(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's public record with per-operator state and its history."""
        record = public_job(self._job(job_id))
        live = self._live.get(job_id)
        if live is not None and live.job is not None:
            record["operators"] = live.job.operator_rows()
        record["history"] = self._store.history(job_id)
        return record

    def find(self, **filters: Any) -> list[dict[str, Any]]:
        jobs = self._store.jobs(**filters)
        return [public_job({**job, **self._unrecorded[job["id"]].fields}
                           if job["id"] in self._unrecorded else job) for job in jobs]

    def folder(self, job_id: str) -> Path:
        return Path(self._config.jobs_dir / job_id)

    def log_path(self, job_id: str, operator: str) -> Path:
        """The operator's log file (which may not exist yet)."""
        job = self._job(job_id)
        names = [op["name"] for op in self._pipelines.get(job["pipeline_id"])["operators"]]
        if operator not in names:
            raise NotFound(f"pipeline '{job['pipeline']}' has no operator '{operator}' "
                           f"(operators: {', '.join(names)})")
        return self.folder(job_id) / "logs" / f"{operator}.log"

    def results(self, job_id: str) -> tuple[Path, list[tuple[str, int]]]:
        """The job's output folder and its files."""
        job = self._job(job_id)
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
        return len(self._live)

    def running_operator_starts(self) -> list[float]:
        """Wall-clock start times of the operators running now (the workers' busy fraction)."""
        with self._cond:
            runs = [(job_id, live.job) for job_id, live in self._live.items()
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
            self._closing = True
            self._cond.notify_all()
            deadline = time.monotonic() + grace
            while self._live and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            for live in self._live.values():
                live.shutdown = True
                if live.job is not None:
                    live.job.cancel()
            while self._live:
                if not self._cond.wait(10.0):
                    log.warning("jobs still stopping after 10 s: %s", sorted(self._live))
        self._finished.put(None)
        for thread in self._threads:
            thread.join(timeout=10.0)
        self._runner.close()

    # --- admission ----------------------------------------------------------------------

    def _push(self, job: dict[str, Any]) -> None:
        self._queue.push(job["priority"], job["id"])
        self._cond.notify_all()

    def _dispatch_loop(self) -> None:
        while True:
            try:
                if not self._dispatch_one():
                    return
            except Exception:  # e.g. the database on a full disk: the thread must live on
                log.exception("the job dispatcher failed; trying again in 1 s")
                time.sleep(1.0)

    def _dispatch_one(self) -> bool:
        """Admit and launch the next job; ``False`` once the manager closes."""
        with self._cond:
            while not self._closing and not self._admissible():
                self._cond.wait(0.5)  # a runner's capacity can also grow on its own
            if self._closing:
                return False
            job_id = self._queue.pop()
            job = self._store.job(job_id)
            if job is None or job["state"] != "pending" or not job["queued"]:
                return True  # canceled or deleted while it waited
            needs = self._head_needs or JobNeeds()
            self.admission.take(needs)
            live = _Live(None, self.folder(job_id), needs)
            self._live[job_id] = live
        try:
            self._launch(job, live)
        except Exception as exc:  # one bad job must not stop the server
            log.exception("job %s could not start", job_id)
            self._end(job_id, "faulted", f"the job could not start: {exc}", [])
        return True

    def _admissible(self) -> bool:
        """Whether the job at the head of the queue may start now (under ``_cond``)."""
        while (entry := self._queue.peek()) is not None:
            priority, head = entry
            job = self._store.job(head)
            if job is None or job["state"] != "pending" or not job["queued"]:
                self._queue.drop()  # canceled or deleted while it waited: not a turn served
                continue
            if (len(self._live) >= self._config.running_limit
                    and priority is not Priority.IMMEDIATE):
                return False
            try:
                needs = self._pipelines.needs(job["pipeline_id"])
            except (NotFound, ClaraRTError, ValueError):
                needs = JobNeeds()  # _launch reports the problem
            reason = self.admission.wait_reason(needs)
            if reason is not None:
                if head not in self._waiting_noted:  # say once why it waits
                    self._waiting_noted.add(head)
                    self._store.update_job(head, f"waiting for resources: {reason}")
                return False
            if not self._runner.has_capacity(needs):
                if head not in self._waiting_noted:
                    self._waiting_noted.add(head)
                    self._store.update_job(head, "waiting for a free runtime (every one that "
                                                 "could run it is busy or unreachable)")
                return False
            self._head_needs = needs
            return True
        return False

    def _launch(self, job: dict[str, Any], live: _Live) -> None:
        job_id = job["id"]
        try:
            start = self._runner.prepare(job)
        except NotFound:
            self._end(job_id, "faulted", "its pipeline was deleted", [])
            return
        except (ClaraRTError, ValueError) as exc:
            self._end(job_id, "faulted", f"the pipeline could not be built: {exc}", [])
            return
        folder = live.folder
        for sub in ("work", "output", "input"):
            shutil.rmtree(folder / sub, ignore_errors=True)  # left by an interrupted attempt
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        input_dir = self._input_folder(job, folder)
        (folder / "work").mkdir()
        started = time.time()
        with self._cond:
            if live.cancel_requested:
                self._cond.notify_all()
            else:
                self._store.update_job(job_id, "submitted to the runtime", state="running",
                                       started=started, attempts=job["attempts"] + 1)
        if live.cancel_requested:
            self._end(job_id, "canceled", "canceled", [])
            return
        run = start(input_dir, folder / "work")
        with self._cond:
            live.job = run
            if live.cancel_requested:
                run.cancel()
            self._store.update_job(job_id, None if run.placement == "local" else
                                   f"running on {run.placement} (payload and results by "
                                   f"{run.transport})",
                                   placement=run.placement, transport=run.transport)
        self._publish(job_id)
        run.add_note_callback(lambda moved, note: self._moved(job_id, moved, note))
        run.add_done_callback(lambda _: self._finished.put(job_id))

    def _moved(self, job_id: str, run: RunHandle, note: str) -> None:
        """Record a running job's move (re-queued on another cluster node, placed again)."""
        with self._cond:
            if job_id not in self._live:
                return
            self._store.update_job(job_id, note, placement=run.placement,
                                   transport=run.transport)
        self._publish(job_id)

    def _input_folder(self, job: dict[str, Any], folder: Path) -> Path:
        payloads: list[Path] = [self._config.payloads_dir / p for p in job["payloads"]]
        missing = [p.name for p in payloads if not p.is_dir()]
        if missing:
            raise NotFound(f"payload(s) {', '.join(missing)} no longer exist on disk")
        return copy_payloads(payloads, folder / "input")

    # --- completion ---------------------------------------------------------------------

    def _finish_loop(self) -> None:
        """Record each job's end; no single failure (full disk, database) ends this thread."""
        while True:
            try:
                job_id = self._finished.get(timeout=_RETRY_S if self._unrecorded else None)
            except queue.Empty:
                job_id = ""
            if job_id is None:
                self._record_unrecorded()
                return
            try:
                self._record_unrecorded()
                if job_id:
                    self._finish_safely(job_id)
            except Exception:
                log.exception("the finish thread failed on job %s; it carries on", job_id)

    def _finish_safely(self, job_id: str) -> None:
        try:
            self._finish(job_id)
        except Exception as exc:
            log.exception("job %s: recording its end failed", job_id)
            try:
                self._end(job_id, "faulted", f"recording the job's end failed: {exc}", [])
            except Exception:
                log.exception("job %s: could not be ended; releasing it", job_id)
                with self._cond:
                    self._release(job_id)

    def _record_unrecorded(self) -> None:
        """Try again to save the ends the database refused (oldest first)."""
        recorded = []
        with self._cond:
            for job_id, end in list(self._unrecorded.items()):
                try:
                    self._store.update_job(job_id, end.note, **end.fields)
                except (sqlite3.Error, OSError) as exc:
                    log.warning("job %s: its end still cannot be saved (%s)", job_id, exc)
                    break
                del self._unrecorded[job_id]
                recorded.append(job_id)
        for job_id in recorded:
            log.info("job %s: its end is saved now", job_id)
            self._publish_quietly(job_id)

    def _finish(self, job_id: str) -> None:
        live = self._live[job_id]
        run = live.job
        assert run is not None
        folder = live.folder
        rows = run.operator_rows()
        state = run.state
        try:
            append_command_logs(folder)
        except OSError as exc:  # a full disk must not lose the job's end
            log.warning("job %s: command output not added to its logs: %s", job_id, exc)
        if live.shutdown:
            self._interrupted(job_id, rows)
            return
        error = run.error
        status = _STATUS.get(state, "faulted")
        if state is JobState.SUCCEEDED:
            try:
                run.collect(folder / "output", folder / "work")
                self._drop_links(job_id, folder / "output")
            except OSError as exc:
                status, error = "faulted", f"results could not be saved: {exc}"
            else:
                shutil.rmtree(folder / "work", ignore_errors=True)
        shutil.rmtree(folder / "input", ignore_errors=True)  # the job's copy of its payloads
        self._end(job_id, status, error, rows)

    def _drop_links(self, job_id: str, output: Path) -> None:
        """Remove links and special files from the results and say so in the job's history."""
        dropped = drop_links(output)
        if dropped:
            shown = ", ".join(dropped[:10]) + (f" and {len(dropped) - 10} more"
                                               if len(dropped) > 10 else "")
            note = (f"results: dropped {len(dropped)} link(s) or special file(s) the job "
                    f"left in its output ({shown}); only regular files are kept and served")
            log.warning("job %s: %s", job_id, note)
            with self._cond:
                self._store.update_job(job_id, note)

    def _end(self, job_id: str, status: str, error: str | None,
             rows: list[dict[str, Any]]) -> None:
        note = error if status != "healthy" else "finished"
        fields = {"state": "stopped", "status": status, "error": error,
                  "stopped": time.time(), "operators": rows, "queued": 0}
        with self._cond:
            self._save_end(job_id, note, fields)
            self._release(job_id)
        self._publish_quietly(job_id)
        log.info("job %s stopped: %s%s", job_id, status, f" ({error})" if error else "")

    def _interrupted(self, job_id: str, rows: list[dict[str, Any]]) -> None:
        with self._cond:
            job = self._store.job(job_id)
            assert job is not None
            if self._config.on_restart == "requeue":
                self._save_end(job_id, "re-queued: the server stopped while it ran",
                               {"state": "pending", "status": "healthy", "queued": 1,
                                "started": None, "operators": rows})
            else:
                self._save_end(job_id, _INTERRUPTED,
                               {"state": "stopped", "status": "faulted", "error": _INTERRUPTED,
                                "stopped": time.time(), "operators": rows, "queued": 0})
            self._release(job_id)

    def _save_end(self, job_id: str, note: str | None, fields: dict[str, Any]) -> None:
        """Commit a job's end; when the database refuses (disk full), keep it to retry."""
        try:
            self._store.update_job(job_id, note, **fields)
        except (sqlite3.Error, OSError) as exc:
            log.error("job %s ended (%s) but the database refused its record (%s); retrying "
                      "every %.0f s", job_id, fields.get("status"), exc, _RETRY_S)
            self._unrecorded[job_id] = _Unrecorded(note or "", fields)

    def _release(self, job_id: str) -> None:
        """Forget a live job and give its resources back (under ``_cond``)."""
        live = self._live.pop(job_id, None)
        if live is not None:
            self.admission.give_back(live.needs)
        self._waiting_noted.discard(job_id)
        self._cond.notify_all()

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
                self._store.update_job(job["id"], _INTERRUPTED, state="stopped",
                                       status="faulted", error=_INTERRUPTED,
                                       stopped=time.time(), queued=0)
                log.warning("job %s was running when the server stopped: marked faulted",
                            job["id"])
        with self._cond:
            for job in reversed(self._store.jobs(state="pending", limit=-1)):
                if job["queued"]:
                    self._push(job)

    # --- helpers ------------------------------------------------------------------------

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self._store.job(job_id)
        if job is None:
            raise NotFound(f"no job with id '{job_id}'")
        unrecorded = self._unrecorded.get(job_id)
        return job if unrecorded is None else {**job, **unrecorded.fields}

    def _timeout(self, timeout: float | None) -> float | None:
        if timeout is None:
            return self._config.default_timeout
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, not {timeout}")
        limit = self._config.max_timeout
        if limit is not None and timeout > limit:
            raise ValueError(f"timeout {timeout} s is above the server's maximum of {limit} s")
        return timeout

    def _publish(self, job_id: str) -> dict[str, Any]:
        record = self.status(job_id)
        self._events.publish({"type": "job", "job": record})
        return record

    def _publish_quietly(self, job_id: str) -> None:
        """Tell subscribers of a change from a background thread (a failure is logged)."""
        try:
            self._publish(job_id)
        except Exception:
            log.exception("job %s: its change could not be published", job_id)


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job row as the API returns it."""
    return {
        "id": job["id"], "name": job["name"], "pipeline": job["pipeline"],
        "pipeline_id": job["pipeline_id"], "payloads": job["payloads"],
        "priority": job["priority"], "state": job["state"], "status": job["status"],
        "queued": bool(job["queued"]), "error": job["error"], "created": job["created"],
        "started": job["started"], "stopped": job["stopped"], "timeout": job["timeout"],
        "variables": job["variables"], "attempts": job["attempts"],
        "operators": job["operators"], "results_deleted": job["results_deleted"],
        "placement": job.get("placement"), "transport": job.get("transport"),
        "device": job.get("device"),
    }


def copy_payloads(payloads: list[Path], dest: Path) -> Path:
    """Copy the files of ``payloads`` into a new folder ``dest``, the job's private input.

    A copy, never links (issue 16.10): a command may write into its input, and what the next
    job reads must be what was uploaded. Costs about what ``cp -r`` costs (benchmarks/
    test_payload_copy.py).

    Raises:
        ValueError: Two payloads hold the same file name.
    """
    dest.mkdir()
    for payload in payloads:
        for rel, _ in iter_files(payload):
            target = dest / rel
            if target.exists():
                raise ValueError(f"payloads {', '.join(p.name for p in payloads)} both hold "
                                 f"'{rel}'")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(payload / rel, target)
    return dest

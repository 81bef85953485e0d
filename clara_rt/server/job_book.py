"""The server's book of jobs: what the request side, the dispatch thread and the finish thread
of :class:`~clara_rt.server.jobs.JobManager` share, guarded by one condition.

* ``live``: the jobs admitted to the runtime (being prepared or running), with the resources
  they hold; ``release`` forgets one and gives its resources back.
* ``unrecorded``: ends the database refused (disk full), shown by ``job``/``status`` meanwhile
  and saved again by the finish thread (``record_unrecorded``).
* Every end is committed to SQLite (``end``, ``interrupted``) before it is published to the
  server's event subscribers (``publish``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clara_rt.errors import NotFound
from clara_rt.job import JobState
from clara_rt.runner.needs import JobNeeds
from clara_rt.runner.protocol import RunHandle
from clara_rt.server.admission import Admission, FreeMemory, default_gpu_jobs, physical_memory
from clara_rt.server.config import ServerConfig
from clara_rt.server.events import EventHub
from clara_rt.server.pipelines import PipelineRegistry
from clara_rt.server.store import Store

__all__ = ["INTERRUPTED", "STATUS_OF", "JobBook", "Live", "Unrecorded", "public_job"]

log = logging.getLogger("clara_rt.server")

#: Clara's status of a job that ended in each runtime state.
STATUS_OF = {JobState.SUCCEEDED: "healthy", JobState.FAILED: "faulted",
             JobState.CANCELLED: "canceled", JobState.TIMED_OUT: "timed-out"}
INTERRUPTED = "interrupted: the server stopped while the job was running"
RETRY_S = 2.0  # how often an end the database could not take (disk full) is tried again


@dataclass
class Live:
    """A job admitted to the runtime: its run (``None`` while being prepared) and resources."""

    job: RunHandle | None
    folder: Path
    needs: JobNeeds = field(default_factory=JobNeeds)
    cancel_requested: bool = False
    shutdown: bool = False


@dataclass(frozen=True)
class Unrecorded:
    """A job's end the database refused (disk full): saved again every ``RETRY_S`` seconds."""

    note: str
    fields: dict[str, Any]


class JobBook:
    """Live jobs, unsaved ends and the resources held, under one condition (``cond``)."""

    def __init__(self, config: ServerConfig, store: Store, pipelines: PipelineRegistry,
                 events: EventHub) -> None:
        self.config = config
        self.store = store
        self.pipelines = pipelines
        self.events = events
        self.cond = threading.Condition()
        self.live: dict[str, Live] = {}
        self.unrecorded: dict[str, Unrecorded] = {}
        self.waiting_noted: set[str] = set()  # queued jobs whose reason to wait was recorded
        self.closing = False
        self.admission = Admission(
            int(0.8 * physical_memory()) if config.memory_budget == -1 else config.memory_budget,
            default_gpu_jobs() if config.gpu_jobs == -1 else config.gpu_jobs, FreeMemory())

    def folder(self, job_id: str) -> Path:
        return Path(self.config.jobs_dir / job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's row, with an end the database has not taken yet. Raises NotFound."""
        job = self.store.job(job_id)
        if job is None:
            raise NotFound(f"no job with id '{job_id}'")
        unrecorded = self.unrecorded.get(job_id)
        return job if unrecorded is None else {**job, **unrecorded.fields}

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's public record with per-operator state and its history."""
        record = public_job(self.job(job_id))
        live = self.live.get(job_id)
        if live is not None and live.job is not None:
            record["operators"] = live.job.operator_rows()
        record["history"] = self.store.history(job_id)
        return record

    def publish(self, job_id: str) -> dict[str, Any]:
        record = self.status(job_id)
        self.events.publish({"type": "job", "job": record})
        return record

    def publish_quietly(self, job_id: str) -> None:
        """Tell subscribers of a change from a background thread (a failure is logged)."""
        try:
            self.publish(job_id)
        except Exception:
            log.exception("job %s: its change could not be published", job_id)

    def end(self, job_id: str, status: str, error: str | None,
            rows: list[dict[str, Any]]) -> None:
        """Record that the job stopped with ``status``, release it and publish it."""
        note = error if status != "healthy" else "finished"
        fields = {"state": "stopped", "status": status, "error": error,
                  "stopped": time.time(), "operators": rows, "queued": 0}
        with self.cond:
            self._save_end(job_id, note, fields)
            self.release(job_id)
        self.publish_quietly(job_id)
        log.info("job %s stopped: %s%s", job_id, status, f" ({error})" if error else "")

    def interrupted(self, job_id: str, rows: list[dict[str, Any]]) -> None:
        """Record a job the server's shutdown stopped, as ``on_restart`` says."""
        with self.cond:
            if self.config.on_restart == "requeue":
                self._save_end(job_id, "re-queued: the server stopped while it ran",
                               {"state": "pending", "status": "healthy", "queued": 1,
                                "started": None, "operators": rows})
            else:
                self._save_end(job_id, INTERRUPTED,
                               {"state": "stopped", "status": "faulted", "error": INTERRUPTED,
                                "stopped": time.time(), "operators": rows, "queued": 0})
            self.release(job_id)

    def release(self, job_id: str) -> None:
        """Forget a live job and give its resources back (under ``cond``)."""
        live = self.live.pop(job_id, None)
        if live is not None:
            self.admission.give_back(live.needs)
        self.waiting_noted.discard(job_id)
        self.cond.notify_all()

    def record_unrecorded(self) -> None:
        """Try again to save the ends the database refused (oldest first)."""
        recorded = []
        with self.cond:
            for job_id, end in list(self.unrecorded.items()):
                try:
                    self.store.update_job(job_id, end.note, **end.fields)
                except (sqlite3.Error, OSError) as exc:
                    log.warning("job %s: its end still cannot be saved (%s)", job_id, exc)
                    break
                del self.unrecorded[job_id]
                recorded.append(job_id)
        for job_id in recorded:
            log.info("job %s: its end is saved now", job_id)
            self.publish_quietly(job_id)

    def _save_end(self, job_id: str, note: str | None, fields: dict[str, Any]) -> None:
        """Commit a job's end; when the database refuses (disk full), keep it to retry."""
        try:
            self.store.update_job(job_id, note, **fields)
        except (sqlite3.Error, OSError) as exc:
            log.error("job %s ended (%s) but the database refused its record (%s); retrying "
                      "every %.0f s", job_id, fields.get("status"), exc, RETRY_S)
            self.unrecorded[job_id] = Unrecorded(note or "", fields)


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

"""Retention: delete old results and payloads, and make room when the data disk fills up.

Only files of *stopped* jobs and payloads no unfinished job reads are ever deleted. Job records
stay in the database (with ``results_deleted`` set) so the history remains. A pass runs every
``cleanup_interval`` seconds:

1. age: results of jobs stopped more than ``retention_days`` ago, and payloads created more than
   ``retention_days`` ago, are deleted;
2. disk: while the data disk is fuller than ``disk_threshold``, the oldest stopped job's results
   (then the oldest unused payload) are deleted.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Any

from clara_rt.server.config import ServerConfig
from clara_rt.server.store import Store

__all__ = ["CleanupReport", "Retention"]

log = logging.getLogger("clara_rt.server")


@dataclass
class CleanupReport:
    """What one pass deleted."""

    results: int = 0
    payloads: int = 0
    bytes_freed: int = 0


class Retention:
    """Runs retention passes on a background thread (or on demand with :meth:`run_once`)."""

    def __init__(self, config: ServerConfig, store: Store) -> None:
        self._config = config
        self._store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="clara-rt-retention",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def run_once(self, now: float | None = None) -> CleanupReport:
        """One retention pass."""
        now = time.time() if now is None else now
        report = CleanupReport()
        with self._lock:
            days = self._config.retention_days
            if days is not None:
                cutoff = now - days * 86400.0
                for job in self._finished_jobs():
                    if job["stopped"] is not None and job["stopped"] < cutoff:
                        self._delete_results(job, report)
                for payload in self._unused_payloads():
                    if payload["created"] < cutoff:
                        self._delete_payload(payload, report)
            while self._too_full():
                victims: list[Any] = self._finished_jobs()[:1]
                if victims:
                    self._delete_results(victims[0], report)
                    continue
                payloads = self._unused_payloads()[:1]
                if not payloads:
                    log.warning("the data disk is fuller than %.0f %% and nothing is left "
                                "that retention may delete", 100 * self._config.disk_threshold)
                    break
                self._delete_payload(payloads[0], report)
        if report.results or report.payloads:
            log.info("retention: deleted results of %d jobs and %d payloads (%d bytes)",
                     report.results, report.payloads, report.bytes_freed)
        return report

    def _loop(self) -> None:
        while not self._stop.wait(self._config.cleanup_interval):
            try:
                self.run_once()
            except Exception:  # retention must never stop the server
                log.exception("retention pass failed")

    def _too_full(self) -> bool:
        usage = shutil.disk_usage(self._config.data)
        return usage.used / usage.total > self._config.disk_threshold

    def _finished_jobs(self) -> list[dict[str, Any]]:
        jobs = [job for job in self._store.jobs(state="stopped", limit=-1)
                if not job["results_deleted"]]
        return sorted(jobs, key=lambda job: job["stopped"] or 0.0)

    def _unused_payloads(self) -> list[dict[str, Any]]:
        return [p for p in self._store.payloads() if not self._store.payload_in_use(p["id"])]

    def _delete_results(self, job: dict[str, Any], report: CleanupReport) -> None:
        folder = self._config.jobs_dir / job["id"]
        for sub in ("output", "work", "input"):
            report.bytes_freed += _remove(folder / sub)
        self._store.update_job(job["id"], "results deleted by retention",
                               results_deleted=time.time())
        report.results += 1

    def _delete_payload(self, payload: dict[str, Any], report: CleanupReport) -> None:
        self._store.mark_payload_deleted(payload["id"])
        report.bytes_freed += _remove(self._config.payloads_dir / payload["id"])
        report.payloads += 1


def _remove(path: Any) -> int:
    if not path.exists():
        return 0
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    shutil.rmtree(path, ignore_errors=True)
    return int(size)

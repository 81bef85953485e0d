"""Follow the jobs the adapter started and send their DICOM results to the AE's destinations.

Two threads:

* ``clara-rt-dicom-jobs`` polls each followed job (``get_job``, every ``poll`` seconds). When a
  job stops healthy it lists the job's result files, downloads each, keeps the DICOM ones (a
  128-byte preamble then ``DICM``, whatever the file is called), creates one export record per
  (file, destination) on the server's Results Service (skipping pairs that already have one) and
  queues them. A job that stops faulted, cancelled or timed out is logged and not exported.
* ``clara-rt-dicom-export`` takes one job's exports at a time: marks them ``in-progress``, sends
  the files with :func:`~clara_rt.dicom.export.send_files` (one association per destination,
  the destination's retries and delays), then marks each ``succeeded`` or ``failed`` with the
  retry count and the error.

State kept in memory is the set of followed jobs and the export queue; what must survive a
restart is on disk or on the server: each followed job is a small file in ``<storage>/.jobs``
(removed once its exports exist), and at start the exports still ``pending`` or
``in-progress`` for a configured destination are queued again. Stopping during an export's
retry wait leaves it ``in-progress``, so it is resumed by the next start.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clara_rt.client import Client, ClientError
from clara_rt.dicom.config import AdapterConfig
from clara_rt.dicom.export import SendResult, Timeouts, send_files
from clara_rt.dicom.tracker import write_json

__all__ = ["ResultExporter", "is_dicom_file"]

logger = logging.getLogger(__name__)

_MAGIC_OFFSET, _MAGIC = 128, b"DICM"


def is_dicom_file(path: Path) -> bool:
    """Return whether ``path`` is a DICOM Part 10 file (preamble + ``DICM``), by its content."""
    try:
        with path.open("rb") as f:
            head = f.read(_MAGIC_OFFSET + len(_MAGIC))
    except OSError:
        return False
    return head[_MAGIC_OFFSET:] == _MAGIC


class _Stopping(Exception):
    """Raised inside an export's retry wait when the adapter stops."""


@dataclass(frozen=True)
class _Work:
    """The exports of one job: records, and where their files are (``None``: download first)."""

    job_id: str
    records: list[dict[str, Any]]
    folder: Path | None = None


class ResultExporter:
    """Follow jobs and export their DICOM results (see the module docstring). Thread-safe.

    Args:
        config: The adapter configuration (destinations, each AE's destinations, own AE title).
        client: The platform server's client.
        state_dir: Folder for followed-job files and downloads (``<storage>`` normally).
        poll: Seconds between two looks at the followed jobs.
        timeouts: Network timeouts of exports.
    """

    def __init__(self, config: AdapterConfig, client: Client, state_dir: Path, *,
                 poll: float = 0.5, timeouts: Timeouts | None = None) -> None:
        self._config = config
        self._client = client
        self._jobs_dir = state_dir / ".jobs"
        self._downloads = state_dir / ".exports"
        self._poll = poll
        self._timeouts = timeouts
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._not_before: dict[str, tuple[int, float]] = {}  # job -> (failures, next look)
        self._queue: queue.Queue[_Work] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._claimed: set[str] = set()  # export ids queued or being sent
        self._resumed = False
        self._server_down = False

    def start(self) -> None:
        """Load the followed jobs from disk and start both threads."""
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._downloads, ignore_errors=True)  # a previous run's partial downloads
        self._downloads.mkdir(parents=True)
        for path in sorted(self._jobs_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                self._jobs[record["job"]] = record
            except (OSError, ValueError, KeyError) as exc:
                logger.error("cannot read followed job %s: %s (ignored)", path, exc)
        self._stop.clear()
        self._threads = [threading.Thread(target=target, name=name, daemon=True) for
                         target, name in ((self._watch_loop, "clara-rt-dicom-jobs"),
                                          (self._export_loop, "clara-rt-dicom-export"))]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads (an export in flight ends at its next step, bounded by timeouts)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads = []

    def follow(self, job_id: str, ae_name: str, what: str) -> None:
        """Follow ``job_id`` (started for called AE ``ae_name`` on ``what``) until it stops."""
        record = {"job": job_id, "ae": ae_name, "what": what}
        write_json(self._jobs_dir / f"{_safe(job_id)}.json", record)
        with self._lock:
            self._jobs[job_id] = record

    def busy(self) -> bool:
        """Return whether jobs are followed or exports are queued (for tests and shutdown)."""
        with self._lock:
            return bool(self._jobs) or self._queue.unfinished_tasks > 0

    # --- job watcher ----------------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stop.wait(self._poll):
            with self._lock:
                jobs = list(self._jobs.values())
            for record in jobs:
                if self._stop.is_set():
                    return
                failures, next_look = self._not_before.get(record["job"], (0, 0.0))
                if next_look > time.monotonic():
                    continue
                try:
                    self._check(record)
                    self._not_before.pop(record["job"], None)
                    continue
                except ClientError as exc:
                    self._server_trouble(exc, f"following job {record['job']}")
                except Exception:
                    logger.exception("following job %s failed (will try again)", record["job"])
                delay = min(2.0 ** failures, 60.0)  # keep a persistent failure from spinning
                self._not_before[record["job"]] = (failures + 1, time.monotonic() + delay)

    def _check(self, record: dict[str, Any]) -> None:
        job_id = record["job"]
        try:
            job = self._client.get_job(job_id)
        except ClientError as exc:
            if exc.status == 404:
                logger.error("job %s (%s) no longer exists on the server; not exporting",
                             job_id, record["what"])
                self._forget(job_id)
                return
            raise
        self._server_up()
        if job.get("state") != "stopped":
            return
        status = job.get("status")
        if status != "healthy":
            logger.error("job %s (%s) stopped %s: %s; nothing exported", job_id, record["what"],
                         status, job.get("error") or "no error message")
            self._forget(job_id)
            return
        self._queue_exports(job_id, record)
        self._forget(job_id)

    def _queue_exports(self, job_id: str, record: dict[str, Any]) -> None:
        ae = self._config.called_ae(record["ae"])
        targets = list(ae.destinations) if ae is not None else []
        folder = Path(tempfile.mkdtemp(prefix=f"{_safe(job_id)}-", dir=self._downloads))
        try:
            dicom = self._download_dicom(job_id, folder)
            records = self._export_records(job_id, dicom, targets) if targets else []
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if not records:
            logger.info("job %s (%s) finished healthy: %d DICOM result(s)%s", job_id,
                        record["what"], len(dicom), "" if targets else
                        f"; AE {record['ae']} has no destinations, nothing exported")
            shutil.rmtree(folder, ignore_errors=True)
            return
        logger.info("job %s (%s) finished healthy: %d DICOM result(s) -> %s", job_id,
                    record["what"], len(dicom), ", ".join(targets))
        self._put(_Work(job_id, records, folder))

    def _export_records(self, job_id: str, dicom: list[str],
                        targets: list[str]) -> list[dict[str, Any]]:
        """Create the missing (file, destination) export records; return the unfinished ones."""
        existing = self._client.list_exports(job_id)
        done = {(e["file"], e["destination"]) for e in existing}
        created = [self._client.create_export(job_id, name, target)
                   for name in dicom for target in targets if (name, target) not in done]
        return created + [e for e in existing if e["state"] in ("pending", "in-progress")
                          and e["file"] in dicom]

    def _put(self, work: _Work) -> None:
        """Queue the records of ``work`` that are not queued or being sent already."""
        with self._lock:
            records = [r for r in work.records if r["id"] not in self._claimed]
            self._claimed.update(r["id"] for r in records)
        if records:
            self._queue.put(_Work(work.job_id, records, work.folder))
        elif work.folder is not None:
            shutil.rmtree(work.folder, ignore_errors=True)

    def _download_dicom(self, job_id: str, folder: Path) -> list[str]:
        """Download the job's result files into ``folder``; keep and return the DICOM ones."""
        names = []
        for entry in self._client.result_files(job_id):
            name = str(entry["path"])
            if int(entry.get("size", _MAGIC_OFFSET + 4)) < _MAGIC_OFFSET + 4:
                continue
            dest = _local(folder, name)
            self._client.download_result_file(job_id, name, dest)
            if is_dicom_file(dest):
                names.append(name)
            else:
                dest.unlink(missing_ok=True)
        return names

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
        self._not_before.pop(job_id, None)
        (self._jobs_dir / f"{_safe(job_id)}.json").unlink(missing_ok=True)

    # --- exporter -------------------------------------------------------------------------

    def _export_loop(self) -> None:
        while not self._stop.is_set():
            if not self._resumed:
                self._resume()
            try:
                work = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._export(work)
            except _Stopping:
                logger.info("stopping: exports of job %s stay in-progress and are resumed at "
                            "the next start", work.job_id)
            except ClientError as exc:
                self._export_trouble(work, exc)
            except Exception:
                logger.exception("exporting the results of job %s failed", work.job_id)
                self._release(work)
            finally:
                self._queue.task_done()

    def _export_trouble(self, work: _Work, exc: ClientError) -> None:
        """Server down: queue ``work`` again later. Server said no (job gone...): give up."""
        if exc.status is None:
            self._server_trouble(exc, f"exporting the results of job {work.job_id}")
            self._stop.wait(2.0)
            self._queue.put(_Work(work.job_id, work.records))
            return
        logger.error("exporting the results of job %s: %s; marking its exports failed",
                     work.job_id, exc)
        for record in work.records:
            try:
                self._client.update_export(record["id"], state="failed", error=str(exc))
            except ClientError as again:
                logger.error("cannot mark export %s failed: %s", record["id"], again)
        self._release(work)

    def _release(self, work: _Work) -> None:
        with self._lock:
            self._claimed.difference_update(r["id"] for r in work.records)

    def _resume(self) -> None:
        """Queue again the exports a previous run left pending or in progress."""
        try:
            left = [e for state in ("pending", "in-progress")
                    for e in self._client.list_exports(state=state)]
        except ClientError as exc:
            self._server_trouble(exc, "resuming unfinished exports")
            self._stop.wait(2.0)
            return
        self._resumed = True
        by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for export in left:
            if self._config.destination(export["destination"]) is not None:
                by_job[export["job"]].append(export)
        for job_id, records in by_job.items():
            logger.info("resuming %d unfinished export(s) of job %s", len(records), job_id)
            self._put(_Work(job_id, records))

    def _export(self, work: _Work) -> None:
        folder = work.folder
        try:
            if folder is None:
                folder = Path(tempfile.mkdtemp(prefix=f"{_safe(work.job_id)}-",
                                               dir=self._downloads))
                for name in sorted({r["file"] for r in work.records}):
                    self._client.download_result_file(work.job_id, name, _local(folder, name))
            by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for record in work.records:
                by_target[record["destination"]].append(record)
            for target, records in by_target.items():
                self._send(work.job_id, target, records, folder)
            self._release(work)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def _send(self, job_id: str, target: str, records: list[dict[str, Any]],
              folder: Path) -> None:
        destination = self._config.destination(target)
        if destination is None:  # only configured destinations are queued
            return
        for record in records:
            self._client.update_export(record["id"], state="in-progress")
        files = [_local(folder, r["file"]) for r in records]
        results = send_files(files, destination, calling_ae=self._config.dicom.ae_title,
                             timeouts=self._timeouts, sleep=self._wait_or_stop)
        for record, result in zip(records, results, strict=True):
            self._report(job_id, record, result, str(destination))

    def _report(self, job_id: str, record: dict[str, Any], result: SendResult,
                where: str) -> None:
        retries = max(result.attempts - 1, 0)
        state = "succeeded" if result.success else "failed"
        self._client.update_export(record["id"], state=state, retries=retries,
                                   error=None if result.success else result.error)
        if result.success:
            logger.info("export %s of job %s to %s: succeeded (%d attempt(s))%s",
                        record["file"], job_id, where, result.attempts,
                        f", {result.error}" if result.error else "")
        else:
            logger.error("export %s of job %s to %s: failed after %d attempt(s): %s",
                         record["file"], job_id, where, result.attempts, result.error)

    def _wait_or_stop(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise _Stopping

    # --- server availability --------------------------------------------------------------

    def _server_trouble(self, exc: ClientError, doing: str) -> None:
        if exc.status is None:
            if not self._server_down:
                logger.error("%s: %s; retrying until the server is back", doing, exc)
            self._server_down = True
        else:
            logger.error("%s: %s", doing, exc)

    def _server_up(self) -> None:
        if self._server_down:
            logger.info("the clara-rt server answers again")
            self._server_down = False


def _local(folder: Path, name: str) -> Path:
    """Where result file ``name`` (a relative path from the server) goes inside ``folder``."""
    parts = [p for p in Path(name).parts if p not in ("", ".", "..", "/")]
    path = folder.joinpath(*parts) if parts else folder / "result"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).lstrip(".")


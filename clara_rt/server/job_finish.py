"""The finish thread of the server's jobs: record each job's end (state, status, operator
rows), save its results and clean its folder.

A job's files live in ``<data>/jobs/<id>/``: ``input/`` (its copy of its payloads, removed at
the end), ``work/`` (the runtime workspace, removed after success), ``output/`` (results,
written through a temporary name by :func:`~clara_rt.runner.outputs.collect_outputs`; links and
special files are dropped), ``logs/<operator>.log`` (a command operator's stdout/stderr are
appended at the end). No single failure (full disk, database) ends the thread: an end the
database refuses is kept and saved again every few seconds.
"""

from __future__ import annotations

import logging
import queue
import shutil
from pathlib import Path

from clara_rt.job import JobState
from clara_rt.runner.logs import append_command_logs
from clara_rt.server.job_book import RETRY_S, STATUS_OF, JobBook
from clara_rt.server.results import drop_links

__all__ = ["Finisher"]

log = logging.getLogger("clara_rt.server")


class Finisher:
    """Ended jobs (:meth:`done`), recorded one at a time by :meth:`run` (one thread)."""

    def __init__(self, book: JobBook) -> None:
        self._book = book
        self._finished: queue.Queue[str | None] = queue.Queue()

    def done(self, job_id: str) -> None:
        """Queue the end of ``job_id`` (called from the runner's thread)."""
        self._finished.put(job_id)

    def stop(self) -> None:
        """Let :meth:`run` return once what is queued is recorded."""
        self._finished.put(None)

    def run(self) -> None:
        """Record each job's end; no single failure (full disk, database) ends this thread."""
        while True:
            try:
                job_id = self._finished.get(timeout=RETRY_S if self._book.unrecorded else None)
            except queue.Empty:
                job_id = ""
            if job_id is None:
                self._book.record_unrecorded()
                return
            try:
                self._book.record_unrecorded()
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
                self._book.end(job_id, "faulted", f"recording the job's end failed: {exc}", [])
            except Exception:
                log.exception("job %s: could not be ended; releasing it", job_id)
                with self._book.cond:
                    self._book.release(job_id)

    def _finish(self, job_id: str) -> None:
        live = self._book.live[job_id]
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
            self._book.interrupted(job_id, rows)
            return
        error = run.error
        status = STATUS_OF.get(state, "faulted")
        if state is JobState.SUCCEEDED:
            try:
                run.collect(folder / "output", folder / "work")
                self._drop_links(job_id, folder / "output")
            except OSError as exc:
                status, error = "faulted", f"results could not be saved: {exc}"
            else:
                shutil.rmtree(folder / "work", ignore_errors=True)
        shutil.rmtree(folder / "input", ignore_errors=True)  # the job's copy of its payloads
        self._book.end(job_id, status, error, rows)

    def _drop_links(self, job_id: str, output: Path) -> None:
        """Remove links and special files from the results and say so in the job's history."""
        dropped = drop_links(output)
        if dropped:
            shown = ", ".join(dropped[:10]) + (f" and {len(dropped) - 10} more"
                                               if len(dropped) > 10 else "")
            note = (f"results: dropped {len(dropped)} link(s) or special file(s) the job "
                    f"left in its output ({shown}); only regular files are kept and served")
            log.warning("job %s: %s", job_id, note)
            with self._book.cond:
                self._book.store.update_job(job_id, note)

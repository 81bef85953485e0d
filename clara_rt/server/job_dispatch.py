"""The server's job queue and its dispatch thread: admit the next job, give it its own copy of
its payloads and start it on the runner.

The queue has the runtime's policy (:class:`~clara_rt.fair_queue.FairQueue`: ``immediate``
first, then high/normal/low 4:2:1, first come first served within a class, so low jobs progress
on a saturated server). At most ``running_limit`` jobs are admitted at once (``immediate`` jobs
are always admitted), and only when the :class:`~clara_rt.server.admission.Admission` budget and
the runner have room for the job's needs; a job that waits says once why in its history.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clara_rt.errors import ClaraRTError, NotFound
from clara_rt.fair_queue import FairQueue
from clara_rt.job import Priority
from clara_rt.runner.needs import JobNeeds
from clara_rt.runner.protocol import RunHandle, Runner
from clara_rt.server.job_book import JobBook, Live
from clara_rt.server.payloads import iter_files

__all__ = ["Dispatcher", "copy_payloads"]

log = logging.getLogger("clara_rt.server")


class Dispatcher:
    """Queued jobs, and the loop (:meth:`run`, one thread) that admits and launches them.

    ``on_done(job_id)`` is called (from the runner's thread) when a launched job ends.
    """

    def __init__(self, book: JobBook, runner: Runner, on_done: Callable[[str], None]) -> None:
        self._book = book
        self._runner = runner
        self._on_done = on_done
        self._queue: FairQueue[str] = FairQueue()  # ids of queued jobs
        self._head_needs: JobNeeds | None = None

    def push(self, job: dict[str, Any]) -> None:
        """Queue ``job`` (under the book's ``cond``)."""
        self._queue.push(job["priority"], job["id"])
        self._book.cond.notify_all()

    def run(self) -> None:
        """Dispatch jobs until the book closes."""
        while True:
            try:
                if not self._dispatch_one():
                    return
            except Exception:  # e.g. the database on a full disk: the thread must live on
                log.exception("the job dispatcher failed; trying again in 1 s")
                time.sleep(1.0)

    def _dispatch_one(self) -> bool:
        """Admit and launch the next job; ``False`` once the manager closes."""
        book = self._book
        with book.cond:
            while not book.closing and not self._admissible():
                book.cond.wait(0.5)  # a runner's capacity can also grow on its own
            if book.closing:
                return False
            job_id = self._queue.pop()
            job = book.store.job(job_id)
            if job is None or job["state"] != "pending" or not job["queued"]:
                return True  # canceled or deleted while it waited
            needs = self._head_needs or JobNeeds()
            book.admission.take(needs)
            live = Live(None, book.folder(job_id), needs)
            book.live[job_id] = live
        try:
            self._launch(job, live)
        except Exception as exc:  # one bad job must not stop the server
            log.exception("job %s could not start", job_id)
            book.end(job_id, "faulted", f"the job could not start: {exc}", [])
        return True

    def _admissible(self) -> bool:
        """Whether the job at the head of the queue may start now (under ``cond``)."""
        book = self._book
        while (entry := self._queue.peek()) is not None:
            priority, head = entry
            job = book.store.job(head)
            if job is None or job["state"] != "pending" or not job["queued"]:
                self._queue.drop()  # canceled or deleted while it waited: not a turn served
                continue
            if (len(book.live) >= book.config.running_limit
                    and priority is not Priority.IMMEDIATE):
                return False
            try:
                needs = book.pipelines.needs(job["pipeline_id"])
            except (NotFound, ClaraRTError, ValueError):
                needs = JobNeeds()  # _launch reports the problem
            reason = book.admission.wait_reason(needs)
            if reason is not None:
                self._note_waiting(head, f"waiting for resources: {reason}")
                return False
            if not self._runner.has_capacity(needs):
                self._note_waiting(head, "waiting for a free runtime (every one that could "
                                         "run it is busy or unreachable)")
                return False
            self._head_needs = needs
            return True
        return False

    def _note_waiting(self, job_id: str, note: str) -> None:
        """Say once in the job's history why it waits."""
        if job_id not in self._book.waiting_noted:
            self._book.waiting_noted.add(job_id)
            self._book.store.update_job(job_id, note)

    def _launch(self, job: dict[str, Any], live: Live) -> None:
        book, job_id = self._book, job["id"]
        try:
            start = self._runner.prepare(job)
        except NotFound:
            book.end(job_id, "faulted", "its pipeline was deleted", [])
            return
        except (ClaraRTError, ValueError) as exc:
            book.end(job_id, "faulted", f"the pipeline could not be built: {exc}", [])
            return
        folder = live.folder
        for sub in ("work", "output", "input"):
            shutil.rmtree(folder / sub, ignore_errors=True)  # left by an interrupted attempt
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        input_dir = self._input_folder(job, folder)
        (folder / "work").mkdir()
        started = time.time()
        with book.cond:
            if live.cancel_requested:
                book.cond.notify_all()
            else:
                book.store.update_job(job_id, "submitted to the runtime", state="running",
                                      started=started, attempts=job["attempts"] + 1)
        if live.cancel_requested:
            book.end(job_id, "canceled", "canceled", [])
            return
        run = start(input_dir, folder / "work")
        with book.cond:
            live.job = run
            if live.cancel_requested:
                run.cancel()
            book.store.update_job(job_id, None if run.placement == "local" else
                                  f"running on {run.placement} (payload and results by "
                                  f"{run.transport})",
                                  placement=run.placement, transport=run.transport)
        book.publish(job_id)
        run.add_note_callback(lambda moved, note: self._moved(job_id, moved, note))
        run.add_done_callback(lambda _: self._on_done(job_id))

    def _moved(self, job_id: str, run: RunHandle, note: str) -> None:
        """Record a running job's move (re-queued on another cluster node, placed again)."""
        with self._book.cond:
            if job_id not in self._book.live:
                return
            self._book.store.update_job(job_id, note, placement=run.placement,
                                        transport=run.transport)
        self._book.publish(job_id)

    def _input_folder(self, job: dict[str, Any], folder: Path) -> Path:
        payloads: list[Path] = [self._book.config.payloads_dir / p for p in job["payloads"]]
        missing = [p.name for p in payloads if not p.is_dir()]
        if missing:
            raise NotFound(f"payload(s) {', '.join(missing)} no longer exist on disk")
        return copy_payloads(payloads, folder / "input")


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

"""Per-operator log files of a job: ``<job folder>/logs/<operator>.log``.

:class:`OperatorLogs` observes a runtime (task start and end hooks, no wrapping of operators),
so that records logged on an operator's thread while it computes (any logger), its start and
end, and its traceback on failure go to its log file; :func:`append_command_logs` appends what a
command operator printed when the job ends. Every log keeps its tail (``CLARA_RT_LOG_LIMIT``).
The server's runtime and the cluster's node runtimes log the same way.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
import traceback
from pathlib import Path

from clara_rt.definition.logtail import append_capped, log_limit
from clara_rt.job import Job
from clara_rt.observer import RuntimeObserver
from clara_rt.operator import Operator

__all__ = ["OperatorLogs", "append_command_logs"]


class OperatorLogs(logging.Handler, RuntimeObserver):
    """Routes log records made while an operator computes to that job's operator log file.

    A logging handler (add it to the root logger) and a runtime observer (add it to the
    runtime): ``task_started`` points this worker thread at ``<job folder>/logs/<op>.log``
    (the job folder is its workspace's parent) and ``task_ended`` writes the end or the
    traceback and clears it. Jobs submitted without a workspace are not logged.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._where = threading.local()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def task_started(self, job: Job, operator: Operator) -> None:
        workspace = job.context.workspace
        if workspace is None:
            return
        target = Path(workspace).parent / "logs" / f"{operator.name}.log"
        self._where.target, self._where.t0 = target, time.perf_counter()
        _append(target, f"{_now()} INFO clara-rt: operator '{operator.name}' started\n")

    def task_ended(self, job: Job, operator: Operator, error: BaseException | None) -> None:
        target = getattr(self._where, "target", None)
        if target is None:
            return
        self._where.target = None
        seconds = time.perf_counter() - self._where.t0
        if error is None:
            _append(target, f"{_now()} INFO clara-rt: operator '{operator.name}' finished in "
                            f"{seconds:.3f} s\n")
        else:
            trace = "".join(traceback.format_exception(error))
            _append(target, f"{_now()} ERROR clara-rt: operator '{operator.name}' failed after "
                            f"{seconds:.3f} s\n{trace}")

    def emit(self, record: logging.LogRecord) -> None:
        target = getattr(self._where, "target", None)
        if target is None:
            return
        try:
            _append(target, self.format(record) + "\n")
        except Exception:  # logging must never break an operator
            self.handleError(record)


def append_command_logs(folder: Path) -> None:
    """Append what command operators printed (``work/<op>/std*.log``) to their log files.

    Copied in chunks, never through a link, and each log keeps its tail (``CLARA_RT_LOG_LIMIT``).
    """
    work = folder / "work"
    if not work.is_dir() or work.is_symlink():
        return
    limit = log_limit()
    for op_dir in sorted(p for p in work.iterdir() if p.is_dir() and not p.is_symlink()):
        for stream in ("stdout", "stderr"):
            try:
                fd = os.open(op_dir / f"{stream}.log", os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as source:
                if not stat.S_ISREG(os.fstat(fd).st_mode) or not os.fstat(fd).st_size:
                    continue
                target = folder / "logs" / f"{op_dir.name}.log"
                append_capped(target, f"--- {stream} of the command ---\n".encode(), limit)
                append_capped(target, source, limit)


def _append(path: Path, text: str) -> None:
    append_capped(path, text.encode("utf-8", errors="replace"), log_limit())


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")

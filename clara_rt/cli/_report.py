"""What ``clara-rt run`` shows and keeps: live progress, outputs on disk, the final report."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clara_rt.arrays import device_name
from clara_rt.job import Job

__all__ = ["JOB_LOG", "Failure", "captured_log", "failure", "print_report",
           "watch", "write_job_log"]

JOB_LOG = "job.log"
"""The file in a kept workspace that holds the job's log records and a failure's traceback."""
MAX_LOG_RECORDS = 10_000
"""Log records kept for ``job.log``; later ones are counted, not kept."""


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a job failed, for people: the message, where in operator code, the full traceback.

    Attributes:
        message: The job's error message.
        where: ``file:line in function`` of the operator's own frame (``compute`` or below), and
            where it was raised when that is deeper; ``None`` when not known (command operators,
            cancel, timeout).
        traceback: The formatted traceback of the original exception ("" when there is none).
    """

    message: str
    where: str | None
    traceback: str


def failure(job: Job) -> Failure | None:
    """Describe ``job``'s error (``None`` when it has none)."""
    error = job.error
    if error is None:
        return None
    cause = error.__cause__ or error
    frames = traceback.extract_tb(cause.__traceback__) if cause.__traceback__ else []
    text = getattr(error, "traceback", "") or (
        "".join(traceback.format_exception(cause)) if frames else "")
    return Failure(str(error), _where(frames, _operator_file(job, error)), text)



def watch(job: Job, *, enabled: bool) -> None:
    """Print one line per operator as it starts and ends, until the job is finished."""
    if not enabled:
        return
    seen: dict[str, int] = {}
    while True:
        finished = job.wait(0.05)
        for row in job.operator_states():
            name, start_ms, duration_ms = row["name"], row["start_ms"], row["duration_ms"]
            if start_ms is not None and name not in seen:  # may start and end in one poll
                print(f"  running  {name:<32} +{start_ms:8.1f} ms", file=sys.stderr)
                seen[name] = 1
            if duration_ms is not None and seen.get(name) == 1:
                print(f"  done     {name:<32} {duration_ms:9.1f} ms", file=sys.stderr)
                seen[name] = 2
        if finished:
            return


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """Collect the log records (INFO and above) emitted while the block runs.

    Warnings and errors still reach stderr, as they did before a handler was installed.
    """
    records: list[str] = []
    keep = _KeepHandler(records)
    show = logging.StreamHandler(sys.stderr)
    show.setLevel(logging.WARNING)
    root = logging.getLogger()
    level = root.level
    root.addHandler(keep)
    root.addHandler(show)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield records
    finally:
        root.removeHandler(keep)
        root.removeHandler(show)
        root.setLevel(level)
        if keep.dropped:
            records.append(f"... {keep.dropped} more log records not kept\n")


def print_report(job: Job, built: Any, outputs: dict[str, Path], workspace: Path | None, *,
                 as_json: bool, verbose: bool = False) -> None:
    """Print the timings table and outputs (or a JSON report on stdout).

    A failure is printed with where it happened in operator code; with ``verbose`` its full
    traceback follows (it is in ``<workspace>/job.log`` either way).
    """
    rows = job.operator_states()
    failed = failure(job)
    error = failed.message if failed is not None else None
    log = workspace / JOB_LOG if workspace is not None and (workspace / JOB_LOG).is_file() else None
    device = device_name(getattr(built, "device", "cpu"))
    if as_json:
        print(json.dumps({
            "job": job.id, "name": job.name, "pipeline": job.pipeline,
            "state": job.state.value, "device": device,
            "priority": job.priority.name.lower(), "operators": rows,
            "outputs": {k: str(v) for k, v in outputs.items()}, "error": error,
            "error_where": failed.where if failed is not None else None,
            "workspace": str(workspace) if workspace else None,
            "log": str(log) if log else None,
        }, indent=2))
        if verbose and failed is not None and failed.traceback:
            print(failed.traceback, end="", file=sys.stderr)
        return
    print(f"job {job.id} of '{job.pipeline}': {job.state.value} on {device}")
    width = max([len("operator"), *(len(row["name"]) for row in rows)])
    print(f"  {'operator':<{width}} {'state':<10} {'start ms':>9} {'duration ms':>12}")
    for row in rows:
        start = "" if row["start_ms"] is None else f"{row['start_ms']:9.1f}"
        duration = "" if row["duration_ms"] is None else f"{row['duration_ms']:12.1f}"
        print(f"  {row['name']:<{width}} {row['state']:<10} {start:>9} {duration:>12}")
    for key, path in outputs.items():
        print(f"output {key}: {path}")
    if failed is not None:
        _print_failure(failed, log, verbose)
    if workspace is not None:
        print(f"workspace kept: {workspace}")


def write_job_log(workspace: Path, job: Job, records: list[str]) -> Path | None:
    """Write the job's log ``records`` and its failure's traceback to ``workspace/job.log``.

    Returns the file, or ``None`` when there is nothing to write.
    """
    failed = failure(job)
    if not records and failed is None:
        return None
    lines = [f"job {job.id} of '{job.pipeline}': {job.state.value}\n", *records]
    if failed is not None:
        lines.append(f"error: {failed.message}\n")
        if failed.where:
            lines.append(f"  at {failed.where}\n")
        lines.append(failed.traceback)
    path = workspace / JOB_LOG
    path.write_text("".join(lines), encoding="utf-8")
    return path


class _KeepHandler(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__(logging.INFO)
        self.records = records
        self.dropped = 0
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) >= MAX_LOG_RECORDS:
            self.dropped += 1
            return
        self.records.append(self.format(record) + "\n")


def _print_failure(failed: Failure, log: Path | None, verbose: bool) -> None:
    print(f"error: {failed.message}", file=sys.stderr)
    if failed.where:
        print(f"  at {failed.where}", file=sys.stderr)
    if verbose and failed.traceback:
        print(failed.traceback, end="", file=sys.stderr)
    elif log is not None and failed.traceback:
        print(f"  traceback: {log} (or run again with --verbose)", file=sys.stderr)


def _operator_file(job: Job, error: BaseException) -> str | None:
    """Return the source file of the failed operator's class, unless it runs a command."""
    from clara_rt.definition.command import CommandOperator

    name = getattr(error, "operator", None)
    for op in job.operators:
        if op.name == name:
            if isinstance(op, CommandOperator):
                return None  # its own stderr tail says what went wrong
            try:
                return inspect.getsourcefile(type(op))
            except TypeError:
                return None
    return None


def _where(frames: list[traceback.FrameSummary], op_file: str | None) -> str | None:
    """``file:line in func`` of the operator's deepest own frame (and the raise, if deeper)."""
    if op_file is None or not frames:
        return None
    own = [f for f in frames if f.filename == op_file]
    if not own:
        return None
    at = own[-1]
    text = f"{at.filename}:{at.lineno} in {at.name}"
    raised = frames[-1]
    if raised is not at:
        text += f" (raised at {raised.filename}:{raised.lineno} in {raised.name})"
    return text

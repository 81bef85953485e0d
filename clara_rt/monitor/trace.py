"""Per-job timelines as Chrome trace JSON (the Trace Event Format), to open in Perfetto.

A trace is ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``: one ``"X"``
(complete) event per operator run, with ``ts`` and ``dur`` in microseconds, and ``"M"``
(metadata) events naming the process (the job) and its threads (lanes). Open it at
https://ui.perfetto.dev or in ``chrome://tracing``.

Worker lanes: the runtime does not record which worker thread ran an operator, so operators are
put on *lanes* by greedy interval packing: in order of start, each goes to the first lane that is
free at its start (lowest lane number), else to a new lane. Operators on one lane never overlap,
and the number of lanes is the job's peak concurrency, but a lane is not necessarily one worker
thread. Server traces also get a ``job`` lane with the job's time in the server's queue and its
run.

Everything here is a pure function of its arguments (no clock, no I/O).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Span",
    "chrome_trace",
    "dumps",
    "pack_lanes",
    "spans_from_rows",
    "spans_from_states",
]

PID = 1
JOB_TID = 1  # the job lane (server traces); operator lanes follow it


@dataclass(frozen=True, slots=True)
class Span:
    """One interval of a trace: a name and its start and end in ns from the trace's origin."""

    name: str
    start_ns: int
    end_ns: int
    state: str = "succeeded"


def pack_lanes(spans: Sequence[Span]) -> list[int]:
    """Assign each span a lane (0, 1, ...) so that spans of one lane never overlap.

    Greedy interval packing: spans are taken by start (then end, then name); each goes to the
    lowest-numbered lane whose last span ended at or before its start. Touching spans (one ends
    exactly when the next starts) share a lane.

    Returns:
        The lane of each span, in the order of ``spans``.
    """
    order = sorted(range(len(spans)),
                   key=lambda i: (spans[i].start_ns, spans[i].end_ns, spans[i].name))
    lane_end: list[int] = []
    lanes = [0] * len(spans)
    for i in order:
        span = spans[i]
        lane = next((n for n, end in enumerate(lane_end) if end <= span.start_ns), len(lane_end))
        if lane == len(lane_end):
            lane_end.append(0)
        lane_end[lane] = max(span.end_ns, span.start_ns)
        lanes[i] = lane
    return lanes


def spans_from_states(rows: Iterable[Mapping[str, Any]], origin_ns: int) -> list[Span]:
    """Spans of the operators that ran, from :meth:`clara_rt.Job.operator_states` rows.

    Args:
        rows: Rows with ``name``, ``state``, ``start_ns`` and ``end_ns`` (``perf_counter_ns``).
        origin_ns: The trace's time zero (the job's ``submitted_ns``).
    """
    return [Span(str(row["name"]), int(row["start_ns"]) - origin_ns,
                 int(row["end_ns"]) - origin_ns, str(row.get("state", "succeeded")))
            for row in rows if row.get("start_ns") is not None and row.get("end_ns") is not None]


def spans_from_rows(rows: Iterable[Mapping[str, Any]], offset_ns: int = 0) -> list[Span]:
    """Spans of the operators that ran, from the server's job rows.

    Args:
        rows: Rows with ``name``, ``state``, ``start_ms`` (from the job's submission to the
            runtime) and ``duration_ms``; rows without both (not run, still running) are left
            out.
        offset_ns: Added to every start (the submission's place on the trace's time axis).
    """
    spans = []
    for row in rows:
        start, duration = row.get("start_ms"), row.get("duration_ms")
        if start is None or duration is None:
            continue
        start_ns = offset_ns + round(float(start) * 1e6)
        spans.append(Span(str(row["name"]), start_ns, start_ns + round(float(duration) * 1e6),
                          str(row.get("state", "succeeded"))))
    return spans


def chrome_trace(spans: Sequence[Span], *, title: str, job: Sequence[Span] = (),
                 metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the Chrome trace of one job.

    Args:
        spans: The operators' runs (one ``"X"`` event each, category ``operator``), put on
            lanes by :func:`pack_lanes`.
        title: The process name shown in the viewer (e.g. ``job <id> (<pipeline>)``).
        job: Spans of the job itself (``queued``, ``run``), shown on a ``job`` lane above the
            operators (category ``job``); may be empty.
        metadata: Kept as ``otherData`` (job id, pipeline, status...).

    Returns:
        A JSON-serialisable dict; events are ordered by ``ts`` after the metadata events.
    """
    lanes = pack_lanes(spans)
    first_tid = JOB_TID + 1 if job else JOB_TID
    events: list[dict[str, Any]] = [_complete(span, JOB_TID, "job", None) for span in job]
    events += [_complete(span, first_tid + lane, "operator", lane + 1)
               for span, lane in zip(spans, lanes, strict=True)]
    events.sort(key=lambda e: (e["ts"], e["tid"], -e["dur"]))
    meta: list[dict[str, Any]] = [_meta("process_name", 0, {"name": title}),
                                  _meta("process_sort_index", 0, {"sort_index": 0})]
    names = ([(JOB_TID, "job")] if job else []) + [
        (first_tid + lane, f"worker lane {lane + 1}") for lane in range(max(lanes, default=-1) + 1)]
    for index, (tid, name) in enumerate(names):
        meta.append(_meta("thread_name", tid, {"name": name}))
        meta.append(_meta("thread_sort_index", tid, {"sort_index": index}))
    return {"traceEvents": meta + events, "displayTimeUnit": "ms",
            "otherData": dict(metadata or {})}


def dumps(trace: Mapping[str, Any]) -> str:
    """The trace as strict JSON text (no NaN or infinity)."""
    return json.dumps(trace, allow_nan=False, separators=(",", ":"))


def _complete(span: Span, tid: int, category: str, lane: int | None) -> dict[str, Any]:
    args: dict[str, Any] = {"state": span.state}
    if lane is not None:
        args["lane"] = lane
    return {"name": span.name, "cat": category, "ph": "X", "ts": span.start_ns / 1000,
            "dur": max(span.end_ns - span.start_ns, 0) / 1000, "pid": PID, "tid": tid,
            "args": args}


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "ts": 0, "pid": PID, "tid": tid, "args": args}

"""Runtime metrics fed by finished jobs: latency histograms, hop latency, worker busy fraction.

The server hands every job that stops to :meth:`RuntimeMetrics.job_stopped` (once per job id;
repeats are ignored) with the job's record and its pipeline's operator graph. From the record:

* job latency: ``stopped - created`` (queue wait included), per pipeline and status;
* operator duration: each operator row's ``duration_ms``, per pipeline and operator;
* hop latency: for each operator with upstream operators, the gap between the end of its last
  producer and its own start (the scheduler's hand-over time, with any folder loader the
  definition builder inserted counted as a producer: those are named ``<producer>-<port>-<fmt>``);
* busy time: each operator's interval on the wall clock (the job's ``started`` plus the row's
  ``start_ms``), kept for :meth:`RuntimeMetrics.busy_fraction`, and summed in ``busy_seconds``.

The busy fraction is the operator time inside the last ``window`` seconds divided by
``window * workers``: the intervals of stopped jobs' operators, plus, for operators running
now, the time since they started (``running``: a function the server sets that returns their
wall-clock start times), so that a long job counts while it runs.

Histograms are cumulative since the process started, with fixed buckets (Prometheus ``le``
semantics). Thread-safe: one lock around every update and read.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HOP_BUCKETS",
    "JOB_BUCKETS",
    "OPERATOR_BUCKETS",
    "Histogram",
    "HistogramSnapshot",
    "RuntimeMetrics",
    "hop_gaps",
]

OPERATOR_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
JOB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
               600.0, 1800.0, 3600.0)
HOP_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
               0.1, 0.25, 0.5, 1.0, 2.5)

_SEEN_LIMIT = 4096  # job ids remembered for de-duplication (a repeat follows its stop closely)
_INTERVAL_LIMIT = 100_000  # operator intervals kept for the busy fraction


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram's state: cumulative ``(upper bound, count)`` pairs ending with +Inf."""

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


class Histogram:
    """Fixed-bucket histogram (not thread-safe; :class:`RuntimeMetrics` holds the lock)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose upper bound is >= it."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> HistogramSnapshot:
        running, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return HistogramSnapshot(tuple(buckets), self.sum, running)


def hop_gaps(rows: Sequence[Mapping[str, Any]],
             upstream: Mapping[str, Sequence[str]]) -> list[tuple[str, float]]:
    """The hand-over gap (seconds) before each operator that has producers.

    Args:
        rows: Operator rows of one job (``name``, ``start_ms``, ``duration_ms``).
        upstream: Operator name -> names of the operators it takes inputs from (the pipeline
            definition's graph).

    Returns:
        ``(operator, consumer start - last producer end)`` for every operator that ran and whose
        producers ran; a negative gap (clock rounding) reads 0.
    """
    ends: dict[str, float] = {}
    starts: dict[str, float] = {}
    for row in rows:
        start, duration = row.get("start_ms"), row.get("duration_ms")
        if start is None:
            continue
        starts[str(row["name"])] = float(start)
        if duration is not None:
            ends[str(row["name"])] = float(start) + float(duration)
    gaps = []
    for name, start in starts.items():
        producers = upstream.get(name) or ()
        if not producers:
            continue
        prefixes = tuple(f"{p}-" for p in producers)
        found = [end for other, end in ends.items()
                 if other in producers or (other not in upstream and other.startswith(prefixes))]
        found = [end for end in found if end <= start + 1.0]  # producers end before (1 ms slack)
        if found:
            gaps.append((name, max(start - max(found), 0.0) / 1000.0))
    return gaps


class RuntimeMetrics:
    """Histograms and counters of finished jobs, and the workers' busy fraction."""

    def __init__(self, workers: int, *, window: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        if window <= 0:
            raise ValueError(f"window must be positive seconds, not {window}")
        self.workers = workers
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._operators: dict[tuple[str, str], Histogram] = {}
        self._jobs: dict[tuple[str, str], Histogram] = {}
        self._hops: dict[tuple[str, str], Histogram] = {}
        self._intervals: deque[tuple[float, float]] = deque(maxlen=_INTERVAL_LIMIT)
        self._busy_seconds = 0.0
        self._jobs_observed = 0
        self.running: Callable[[], Sequence[float]] | None = None
        """Wall-clock start times of the operators running now (set by the server)."""

    def seen(self, job_id: str) -> bool:
        """Whether the stop of ``job_id`` was counted already."""
        with self._lock:
            return job_id in self._seen

    def job_stopped(self, record: Mapping[str, Any],
                    upstream: Mapping[str, Sequence[str]] | None = None) -> bool:
        """Count a stopped job (the server's public job record); return False for a repeat."""
        if record.get("state") != "stopped":
            return False
        pipeline, status = str(record.get("pipeline", "")), str(record.get("status", ""))
        rows = list(record.get("operators") or ())
        hops = hop_gaps(rows, upstream or {})
        started = record.get("started")
        with self._lock:
            job_id = str(record["id"])
            if job_id in self._seen:
                return False
            self._seen[job_id] = None
            while len(self._seen) > _SEEN_LIMIT:
                self._seen.popitem(last=False)
            self._jobs_observed += 1
            created, stopped = record.get("created"), record.get("stopped")
            if created is not None and stopped is not None:
                _get(self._jobs, (pipeline, status), JOB_BUCKETS).observe(
                    max(float(stopped) - float(created), 0.0))
            for row in rows:
                duration = row.get("duration_ms")
                if duration is None or row.get("start_ms") is None:
                    continue
                seconds = float(duration) / 1000.0
                _get(self._operators, (pipeline, str(row["name"])), OPERATOR_BUCKETS).observe(
                    seconds)
                self._busy_seconds += seconds
                if started is not None:
                    begin = float(started) + float(row["start_ms"]) / 1000.0
                    self._intervals.append((begin, begin + seconds))
            if stopped is not None:  # also when nobody reads busy_fraction
                self._prune(float(stopped))
            for name, gap in hops:
                _get(self._hops, (pipeline, name), HOP_BUCKETS).observe(gap)
        return True

    def busy_fraction(self, now: float | None = None) -> float:
        """Operator time in the last ``window`` seconds / (``window`` x workers), in [0, 1]."""
        now = self._clock() if now is None else now
        lo = now - self.window
        with self._lock:
            self._prune(now)
            busy = sum(max(0.0, min(end, now) - max(begin, lo))
                       for begin, end in self._intervals if end > lo and begin < now)
        running = self.running
        if running is not None:
            busy += sum(max(0.0, now - max(begin, lo)) for begin in running())
        return min(busy / (self.window * self.workers), 1.0)

    @property
    def busy_seconds(self) -> float:
        """Operator seconds of every counted job."""
        with self._lock:
            return self._busy_seconds

    @property
    def jobs_observed(self) -> int:
        """Stopped jobs counted."""
        with self._lock:
            return self._jobs_observed

    def operator_histograms(self) -> dict[tuple[str, str], HistogramSnapshot]:
        """``(pipeline, operator)`` -> operator durations (seconds)."""
        return self._snapshots(self._operators)

    def job_histograms(self) -> dict[tuple[str, str], HistogramSnapshot]:
        """``(pipeline, status)`` -> job latencies, created to stopped (seconds)."""
        return self._snapshots(self._jobs)

    def hop_histograms(self) -> dict[tuple[str, str], HistogramSnapshot]:
        """``(pipeline, operator)`` -> gaps between the last producer's end and its start."""
        return self._snapshots(self._hops)

    def _prune(self, now: float) -> None:
        """Drop intervals that ended a window before the current one (caller holds the lock):
        no later window needs them (the deque is in order of job end, roughly that of operator
        end, so stragglers are only skipped by busy_fraction)."""
        while self._intervals and self._intervals[0][1] < now - 2 * self.window:
            self._intervals.popleft()

    def _snapshots(self, table: dict[tuple[str, str], Histogram]
                   ) -> dict[tuple[str, str], HistogramSnapshot]:
        with self._lock:
            return {key: hist.snapshot() for key, hist in table.items()}


def _get(table: dict[tuple[str, str], Histogram], key: tuple[str, str],
         bounds: Sequence[float]) -> Histogram:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = Histogram(bounds)
    return hist

"""Chrome trace JSON of a job (clara_rt.monitor.trace): lanes, units, ordering, required fields."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from typing import Any

import pytest

from clara_rt import Pipeline, Runtime
from clara_rt.monitor.trace import (
    Span,
    chrome_trace,
    dumps,
    pack_lanes,
    spans_from_rows,
    spans_from_states,
)
from tests.ops import Add, Sleep, Source, vec

MS = 1_000_000  # ns


def _x_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


def _assert_lanes_disjoint(trace: dict[str, Any]) -> None:
    by_tid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in _x_events(trace):
        by_tid[event["tid"]].append(event)
    for events in by_tid.values():
        events.sort(key=lambda e: (e["ts"], e["dur"]))
        for a, b in itertools.pairwise(events):
            assert a["ts"] + a["dur"] <= b["ts"] + 1e-9, (a, b)


def _assert_chrome_fields(trace: dict[str, Any]) -> None:
    """What Perfetto's and Chrome's JSON importers need of each event."""
    assert isinstance(trace["traceEvents"], list)
    assert trace["displayTimeUnit"] in ("ms", "ns")
    for event in trace["traceEvents"]:
        assert event["ph"] in ("X", "M")
        assert isinstance(event["name"], str) and event["name"]
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        assert isinstance(event["args"], dict)
        if event["ph"] == "X":
            assert isinstance(event["ts"], int | float) and event["ts"] >= 0
            assert isinstance(event["dur"], int | float) and event["dur"] >= 0
            assert isinstance(event["cat"], str)
        else:
            assert event["name"] in ("process_name", "process_sort_index", "thread_name",
                                     "thread_sort_index")


def test_pack_lanes_greedy_first_free_lane() -> None:
    spans = [Span("a", 0, 10), Span("b", 2, 5), Span("c", 5, 8), Span("d", 10, 12),
             Span("e", 3, 4)]
    lanes = pack_lanes(spans)
    # a on 0; b starts while a runs -> 1; e while a and b run -> 2; c starts when b ends -> 1
    # (touching spans share a lane); d starts when a ends -> 0.
    assert lanes == [0, 1, 1, 0, 2]


def test_pack_lanes_serial_chain_is_one_lane_and_empty_is_empty() -> None:
    assert pack_lanes([Span(str(i), 10 * i, 10 * i + 10) for i in range(5)]) == [0] * 5
    assert pack_lanes([]) == []


def test_pack_lanes_never_overlaps_and_uses_peak_concurrency() -> None:
    import random

    rng = random.Random(7)
    spans = []
    for i in range(300):
        start = rng.randrange(0, 10_000)
        spans.append(Span(f"op{i}", start, start + rng.randrange(0, 500)))
    lanes = pack_lanes(spans)
    per_lane: dict[int, list[Span]] = defaultdict(list)
    for span, lane in zip(spans, lanes, strict=True):
        per_lane[lane].append(span)
    for members in per_lane.values():
        members.sort(key=lambda s: s.start_ns)
        for a, b in itertools.pairwise(members):
            assert a.end_ns <= b.start_ns
    # Greedy packing by start is optimal for intervals: as many lanes as the peak overlap.
    points = sorted([(s.start_ns, 1) for s in spans] + [(s.end_ns, -1) for s in spans])
    peak = running = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    assert max(lanes) + 1 == peak


def test_chrome_trace_units_fields_ordering_and_json() -> None:
    spans = [Span("load", 0, 3 * MS), Span("left", 3 * MS, 8 * MS),
             Span("right", 3 * MS + 500, 6 * MS, "failed"), Span("merge", 8 * MS, 9 * MS)]
    job = [Span("queued", 0, 0), Span("run", 0, 9 * MS)]
    trace = chrome_trace(spans, title="job 7 (demo)", job=job, metadata={"job": 7})
    text = dumps(trace)
    assert json.loads(text) == trace
    _assert_chrome_fields(trace)
    _assert_lanes_disjoint(trace)
    events = {e["name"]: e for e in _x_events(trace)}
    assert events["left"]["ts"] == 3000.0 and events["left"]["dur"] == 5000.0  # microseconds
    assert events["right"]["ts"] == 3000.5 and events["right"]["args"]["state"] == "failed"
    assert events["run"]["cat"] == "job" and events["load"]["cat"] == "operator"
    assert events["run"]["tid"] == 1 != events["load"]["tid"]
    assert {events["left"]["tid"], events["right"]["tid"]} == {2, 3}
    x = _x_events(trace)
    assert [e["ts"] for e in x] == sorted(e["ts"] for e in x)
    first_x = trace["traceEvents"].index(x[0])
    assert all(e["ph"] == "M" for e in trace["traceEvents"][:first_x])
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["name"] == "thread_name"}
    assert names == {1: "job", 2: "worker lane 1", 3: "worker lane 2"}
    process = [e for e in trace["traceEvents"] if e["name"] == "process_name"]
    assert process[0]["args"] == {"name": "job 7 (demo)"}
    assert trace["otherData"] == {"job": 7}


def test_spans_from_server_rows_skip_unfinished() -> None:
    rows = [{"name": "a", "state": "succeeded", "start_ms": 1.5, "duration_ms": 2.25},
            {"name": "b", "state": "running", "start_ms": 4.0, "duration_ms": None},
            {"name": "c", "state": "not_run", "start_ms": None, "duration_ms": None}]
    assert spans_from_rows(rows, offset_ns=1000) == [Span("a", 1_501_000, 3_751_000)]


def test_trace_of_a_real_job_from_operator_states() -> None:
    p = Pipeline("fan")
    src = p.add(Source("src"))
    left, right = p.add(Sleep("left", seconds=0.05)), p.add(Sleep("right", seconds=0.05))
    add = p.add(Add("add"))
    p.connect(src, "out", left, "in")
    p.connect(src, "out", right, "in")
    p.connect(left, "out", add, "a")
    p.connect(right, "out", add, "b")
    with Runtime(workers=2) as rt:
        job = rt.submit(p, {"src.in": vec()})
        job.result(timeout=30)
    spans = spans_from_states(job.operator_states(), job.submitted_ns)
    assert sorted(s.name for s in spans) == ["add", "left", "right", "src"]
    trace = chrome_trace(spans, title="fan")
    _assert_chrome_fields(trace)
    _assert_lanes_disjoint(trace)
    events = {e["name"]: e for e in _x_events(trace)}
    # The two sleeps ran at once on two workers: two lanes; each took about 50 ms.
    assert events["left"]["tid"] != events["right"]["tid"]
    assert events["left"]["dur"] == pytest.approx(50_000, rel=0.8)
    assert events["add"]["ts"] >= max(events["left"]["ts"] + events["left"]["dur"],
                                      events["right"]["ts"] + events["right"]["dur"])
    json.loads(dumps(trace))

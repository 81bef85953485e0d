"""``clara-rt run --trace FILE`` on the ct-lung-seg reference pipeline: a Chrome trace to open in
Perfetto, with every operator on non-overlapping worker lanes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from clara_rt.bench import checkout_env
from tests.data.chest_dicom import write_chest_series

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"


def test_run_writes_a_chrome_trace(tmp_path: Path) -> None:
    write_chest_series(tmp_path / "in", shape=(24, 64, 64))
    trace_path = tmp_path / "traces" / "job.json"
    proc = subprocess.run(
        [sys.executable, "-m", "clara_rt.cli", "run", str(PIPELINE), "--input",
         str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--json", "--workers", "4",
         "--trace", str(trace_path)],
        cwd=ROOT, env=checkout_env(), capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    trace = json.loads(trace_path.read_text())
    assert trace["displayTimeUnit"] == "ms"
    assert trace["otherData"] == {"job": report["job"], "pipeline": "ct-lung-seg",
                                  "state": "succeeded"}
    events = trace["traceEvents"]
    x = [e for e in events if e["ph"] == "X"]
    operators = [e for e in x if e["cat"] == "operator"]
    defined = {op["name"] for op in yaml.safe_load(PIPELINE.read_text())["operators"]}
    assert defined <= {e["name"] for e in operators}  # (plus any inserted folder adapters)
    assert {e["name"] for e in x if e["cat"] == "job"} == {"queued", "run"}
    run = next(e for e in x if e["name"] == "run")
    lanes: dict[int, list[dict[str, float]]] = defaultdict(list)
    for event in operators:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= set(event)
        assert event["pid"] == 1 and event["args"]["state"] == "succeeded"
        # microseconds: inside the job's run, which took well under a minute
        assert run["ts"] - 1 <= event["ts"] and event["ts"] + event["dur"] <= run["ts"] + \
            run["dur"] + 1
        lanes[event["tid"]].append(event)
    assert run["dur"] < 60e6
    for members in lanes.values():
        members.sort(key=lambda e: e["ts"])
        for a, b in itertools.pairwise(members):
            assert a["ts"] + a["dur"] <= b["ts"] + 1e-6, (a, b)
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert set(lanes) <= set(names) and names[run["tid"]] == "job"
    assert all(names[tid].startswith("worker lane ") for tid in lanes)
    # The reader feeds everything: it is the first operator, on the first lane.
    first = min(operators, key=lambda e: e["ts"])
    assert first["name"] == "dicom-reader" and names[first["tid"]] == "worker lane 1"
    x_ts = [e["ts"] for e in x]
    assert x_ts == sorted(x_ts)

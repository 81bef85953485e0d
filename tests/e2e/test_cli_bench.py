"""`clara-rt bench` as a user runs it: a subprocess, JSON records on stdout, usage errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from clara_rt.bench import checkout_env

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = checkout_env()
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_bench_core_json() -> None:
    proc = _cli("bench", "core", "--json", "--jobs", "20000")
    assert proc.returncode == 0, proc.stderr
    [record] = _records(proc.stdout)
    assert record["scenario"] == "core"
    assert record["params"]["jobs"] == 20000
    figures = record["figures"]
    assert {"c++ (1 thread)", "c++ (2 threads)", "python-driven (1 thread)"} <= set(figures)
    assert all(fig["dispatch_per_s"] > 0 for fig in figures.values())
    assert record["ratios"]["c++ (1 thread) / python-driven"] > 0
    assert record["machine"]["cpu_count"] >= 1
    assert "== core:" in proc.stderr  # the table goes to stderr with --json


def test_bench_hops_json() -> None:
    proc = _cli("bench", "hops", "--jobs", "300", "--json")
    assert proc.returncode == 0, proc.stderr
    [record] = _records(proc.stdout)
    assert record["scenario"] == "hops"
    figures = record["figures"]
    assert {"clara-rt (workers=1)", "clara-rt (workers=2)", "queue-threads"} <= set(figures)
    clara = figures["clara-rt (workers=1)"]
    assert clara["hops"] == 300 * 9  # 10 stages: 9 hops per job
    assert 0 < clara["p50_us"] <= clara["p99_us"]
    assert record["ratios"]["queue / clara-rt(w=1) p50_us"] > 0
    assert {t["name"] for t in record["targets"]} >= {"clara-rt(w=1) p50 per hop"}
    assert all(isinstance(t["passed"], bool) for t in record["targets"])


def test_bench_table_without_json() -> None:
    proc = _cli("bench", "construct", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    assert "== construct:" in proc.stdout
    assert "clara-rt" in proc.stdout and "python-dict+toposort" in proc.stdout
    line = re.search(r"^  (PASS|MISS)  clara-rt best build\+validate: ([0-9.]+) ms "
                     r"\(target <= 5\.00 ms\)$", proc.stdout, re.MULTILINE)
    assert line, proc.stdout
    assert (line[1] == "PASS") == (float(line[2]) <= 5.0), line[0]


def test_bench_unknown_scenario_is_a_usage_error() -> None:
    proc = _cli("bench", "nope")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "usage: clara-rt bench" in proc.stderr
    assert "invalid choice: 'nope'" in proc.stderr


def test_bench_rejects_non_positive_jobs() -> None:
    proc = _cli("bench", "core", "--jobs", "0")
    assert proc.returncode == 2
    assert "expected a positive integer" in proc.stderr

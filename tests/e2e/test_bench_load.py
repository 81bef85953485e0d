"""``clara-rt bench load`` (Clara's cpload) against a real ``clara-rt serve``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from clara_rt.bench import checkout_env, parse_mix, priority_sequence
from tests.data.chest_dicom import write_chest_series
from tests.server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
PRIORITIES = ("immediate", "high", "normal", "low")


def bench(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", "bench", "load",
                           *map(str, args)], cwd=ROOT, env=checkout_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def record_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    [line] = [line for line in proc.stdout.splitlines() if line.strip()]
    record: dict[str, Any] = json.loads(line)
    return record


def test_priority_sequence_is_exact_and_deterministic() -> None:
    mix = parse_mix("immediate=1,high=2,normal=5,low=2")
    seq = priority_sequence(12, mix, seed=0)
    assert [seq.count(p) for p in PRIORITIES] == [1, 3, 6, 2]  # 1.2, 2.4, 6, 2.4: remainders
    assert seq == priority_sequence(12, mix, seed=0)
    assert seq != priority_sequence(12, mix, seed=1)
    assert [priority_sequence(100, mix).count(p) for p in PRIORITIES] == [10, 20, 50, 20]
    assert priority_sequence(5, parse_mix("low=1")) == ["low"] * 5


def test_load_12_mixed_jobs_against_a_server(tmp_path: Path) -> None:
    chest = tmp_path / "chest"
    write_chest_series(chest, shape=(32, 128, 128))
    with ServerProcess(tmp_path / "data", "--workers", "2") as server:
        proc = bench("--host", server.url, "--input", chest, "-n", "12", "--workers", "2",
                     "--concurrency", "1", "--json")
        record = record_of(proc)
        jobs = server.client().list_jobs()
    assert record["scenario"] == "load"
    assert record["params"]["jobs"] == 12 and record["params"]["host"] == server.url
    counts = {p: record["params"]["sequence"].count(p) for p in PRIORITIES}
    assert counts == {"immediate": 1, "high": 3, "normal": 6, "low": 2}
    figures = record["figures"]
    for system in ("server", "in-process"):
        for prio in (*PRIORITIES, "all"):
            row = figures[f"{system}: {prio}"]
            assert row["jobs"] == (12 if prio == "all" else counts[prio])
            assert row["healthy"] == row["jobs"] and row["failed"] == 0
            assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
            assert 0 <= row["wait_p50_ms"] <= row["wait_p99_ms"]
        assert figures[f"{system}: all"]["jobs_per_s"] > 0
    # The immediate job jumps the server's queue and every operator dispatch; the two low
    # jobs are admitted last (12 jobs created in well under one job's run time).
    assert figures["server: immediate"]["p50_ms"] <= figures["server: low"]["p50_ms"]
    assert "mean_ms" in figures["server overhead"]
    assert set(record["ratios"]) == {"server / in-process jobs/s",
                                     "in-process / server mean latency"}
    assert all(t["passed"] for t in record["targets"])
    assert "== load:" in proc.stderr  # the table goes to stderr with --json
    # what the server recorded: one warm-up job and the twelve, all healthy
    assert len(jobs) == 13 and all(j["status"] == "healthy" for j in jobs)
    assert sorted(j["priority"] for j in jobs if j["name"] != "bench-load-warmup") == sorted(
        record["params"]["sequence"])


def test_load_starts_its_own_server_without_host() -> None:
    proc = bench("-n", "3", "--mix", "normal=1", "--no-baseline", "--quick", "--json")
    record = record_of(proc)
    assert record["params"]["host"] == "local"
    assert record["figures"]["server: normal"]["healthy"] == 3
    assert not any(name.startswith("in-process") for name in record["figures"])
    assert "starting a local server" in proc.stderr


def test_load_usage_and_connection_errors() -> None:
    proc = bench("--host", "http://127.0.0.1:1", "-n", "2")
    assert proc.returncode == 1 and "cannot reach the clara-rt server" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = bench("--mix", "urgent=1")
    assert proc.returncode == 2 and "--mix expects PRIORITY=WEIGHT" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "clara_rt.cli", "bench", "core", "--delay",
                           "1"], cwd=ROOT, env=checkout_env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "only 'bench load' takes" in proc.stderr

"""The ``--quick`` regression guard as CI runs it, and smoke runs of ``startup`` / ``priority``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clara_rt.bench import checkout_env, e2e, format_table, priority, startup

ROOT = Path(__file__).resolve().parents[2]


def test_quick_guard_passes_and_prints_the_table() -> None:
    env = checkout_env()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quick.py")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "== quick regression guard" in proc.stdout, proc.stderr
    assert proc.returncode == 0, proc.stdout[-3000:]
    recorded = json.loads((ROOT / "benchmarks" / "baseline_ratios.json").read_text())
    for scenario in ("hops", "throughput", "core", "construct", "dicom"):
        assert scenario in recorded
        assert f"{scenario}: " in proc.stdout
    assert "REGRESSION" not in proc.stdout


def test_quick_guard_fails_on_a_2x_regression(tmp_path: Path) -> None:
    # A baseline ratio 10x above anything construct can reach must be reported and exit 1.
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"construct": {"dask-graph+order / clara-rt best_ms": 1000.0},
                                    "core": {"not produced": 1.0}}))
    from clara_rt.bench import quick_guard

    rows, records = quick_guard(baseline, scenarios=("construct", "core"), retries=1)
    verdicts = {(r.scenario, r.ratio): r.verdict for r in rows}
    want = "REGRESSION" if "dask-graph+order" in records[0].figures else "skipped"
    assert verdicts[("construct", "dask-graph+order / clara-rt best_ms")] == want
    assert verdicts[("core", "not produced")] == "skipped"
    assert [r.scenario for r in records] == ["construct", "core"]


def test_startup_smoke() -> None:
    record = startup(stages=3, repeat=1, warm_repeat=1)
    figs = record.figures
    assert figs["cold: clara-rt run"]["first_op_ms"] > 0
    assert figs["cold: clara-rt run"]["exit_ms"] >= figs["cold: clara-rt run"]["first_op_ms"]
    assert figs["cold: python + import numpy"]["first_op_ms"] > 0
    assert figs["warm: Runtime + YAML build + submit"]["first_op_ms"] > 0
    assert all(v > 0 for v in record.ratios.values())
    assert "== startup:" in format_table(record)


def test_priority_smoke() -> None:
    record = priority(backlog=20, probes=1, window=1.0, depth=3, shape=(8, 32, 32))
    figs = record.figures
    assert figs["immediate, behind 20 normal"]["p50_ms"] > 0
    assert figs["high, behind 20 normal"]["p50_ms"] > 0
    shares = [figs[f"saturation: {c}"]["share_pct"] for c in ("high", "normal", "low")]
    completed = [figs[f"saturation: {c}"]["completed"] for c in ("high", "normal", "low")]
    assert sum(completed) > 0, "no job completed during the saturation window"
    assert abs(sum(shares) - 100) < 1e-6, shares
    assert shares[0] > shares[2], f"high should be served more often than low: {shares}"
    assert record.ratios["FIFO wait / immediate p50"] > 0


def test_e2e_clara_half_smoke() -> None:
    record = e2e(shape=(16, 64, 64), repeat=1, monai=False)  # the MONAI venv is not built
    figs = record.figures
    assert figs["clara-rt: cold (clara-rt run, process)"]["p50_ms"] > 0
    assert figs["clara-rt: cold (clara-rt run, process)"]["peak_rss_mb"] > 0
    assert figs["clara-rt: warm job"]["p50_ms"] > 0
    assert figs["SEG voxels"]["clara_rt"] > 0
    assert record.ratios == {}
    assert "== e2e:" in format_table(record)

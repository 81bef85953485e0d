"""A cold ``clara-rt run`` (issue 19.1): heavy imports start in the background as soon as a
pipeline is registered, and the one-shot process ends without tearing its heap down, with every
output, the JSON report and the exit status intact."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clara_rt import Operator, Pipeline
from clara_rt.bench._startup import startup_yaml
from clara_rt.bench._workload import checkout_env
from clara_rt.preload import preload


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", "run", *args], cwd=cwd,
                          env=checkout_env(), capture_output=True, text=True, timeout=120,
                          check=False)


def test_issue_19_run_exits_at_once_with_outputs_and_report(tmp_path: Path) -> None:
    stamp = tmp_path / "stamp"
    (tmp_path / "pipeline.yaml").write_text(startup_yaml(5, stamp))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x" * 100_000)
    proc = _run(["pipeline.yaml", "--input", "in", "--output", "out", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # complete: stdout was flushed before the process ended
    assert report["state"] == "succeeded"
    assert [op["state"] for op in report["operators"]] == ["succeeded"] * 5
    assert stamp.read_text().isdigit()


def test_issue_19_run_keeps_the_failure_status(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(startup_yaml(2).replace(
        "clara_rt.bench._startup:PassOp", "clara_rt.bench._startup:NoSuchOp"))
    (tmp_path / "in").mkdir()
    proc = _run(["pipeline.yaml", "--input", "in", "--output", "out"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "NoSuchOp" in proc.stderr


def test_issue_19_preload_imports_in_the_background(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "clara_probe_heavy.py").write_text(textwrap.dedent("""
        calls = []
        def warm():
            calls.append("warm")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "clara_probe_heavy", raising=False)

    class Heavy(Operator):
        preload = ("clara_probe_heavy", "clara_probe_heavy:warm", "clara_probe_missing")

        def setup(self, spec: object) -> None:
            spec.input("x", dtype="float32", shape=(-1,))  # type: ignore[attr-defined]

        def compute(self, inputs: object, outputs: object, context: object) -> None:
            pass

    pipe = Pipeline("heavy")
    pipe.add(Heavy("h"))
    thread = preload(pipe.validate())
    assert thread is not None and thread.name == "clara-rt-preload"
    thread.join(30)
    assert sys.modules["clara_probe_heavy"].calls == ["warm"]  # a missing one is skipped
    assert preload(pipe.validate()) is None  # once per process

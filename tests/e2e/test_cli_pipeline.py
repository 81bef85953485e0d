"""`clara-rt validate | graph | run` as a user runs them: subprocesses, real files, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clara_rt.bench import checkout_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT.parent / "shared" / "clara-pipelines"
DATA = ROOT / "tests" / "data"
GENOMICS = EXAMPLES / "genomics-denovo.yaml"
MULTIAI = DATA / "multiai" / "pipeline.yaml"
GENOMICS_VARS = {
    "DOCKER_IMAGE": "clara/genomics", "DOCKER_TAG": "1.0", "MAPPER_ADDITIONAL_PARAMS": "--verbose",
    "MAPPER_THREADS": "4", "MAPPER_KMER_SIZE": "15", "MAPPER_WINDOW_SIZE": "5",
    "MAPPER_INDEX_SIZE": "10", "RACON_ADDITIONAL_PARAMS": "-m 8", "RACON_THREADS": "2",
    "RACON_LOOPS": "2", "RACON_POLISH_BATCH_SIZE": "100",
}


def cli(*args: str | Path, extra_env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = checkout_env()
    env["PATH"] = f"{DATA / 'genomics_bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def genomics_vars() -> list[str]:
    return [arg for k, v in GENOMICS_VARS.items() for arg in ("--var", f"{k}={v}")]


@pytest.fixture(scope="module")
def examples() -> list[Path]:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) == 4, f"expected the four Clara examples in {EXAMPLES}"
    return files


# --- validate and graph -----------------------------------------------------------------------


def test_validate_every_example_unchanged(examples: list[Path]) -> None:
    for path in examples:
        proc = cli("validate", path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"OK: {path}: pipeline '"), proc.stdout
    proc = cli("validate", GENOMICS, *genomics_vars())
    assert proc.returncode == 0 and "variable" not in proc.stderr
    assert "3 operators, 3 connections" in proc.stdout


def test_validate_reports_errors_with_position() -> None:
    proc = cli("validate", DATA / "definitions" / "cycle.yaml")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"clara-rt: error: {DATA / 'definitions' / 'cycle.yaml'}:")
    assert "cycle" in proc.stderr
    proc = cli("validate", DATA / "definitions" / "does-not-exist.yaml")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_issue_17_4_validate_compares_typed_ports_of_unresolved_operators() -> None:
    path = DATA / "definitions" / "typed-element-type-mismatch.yaml"
    proc = cli("validate", path)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr == (f"clara-rt: error: {path}:21:19: input #1 of operator 'classifier' "
                           "does not fit output #1 of operator 'loader' (line 9): dtype float32 "
                           "cannot feed dtype uint8\n")


def test_issue_17_5_validate_warns_of_unset_variables_at_their_position() -> None:
    proc = cli("validate", GENOMICS)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "is not set" in line]
    assert len(warnings) == len(GENOMICS_VARS)
    for line in warnings:
        assert re.match(rf"warning: {re.escape(str(GENOMICS))}:\d+:\d+: variable '\w+' is not "
                        r"set; 'run' needs --var \w+=VALUE$", line), line
    text = GENOMICS.read_text().splitlines()
    for line in warnings:
        row, col, name = re.findall(r":(\d+):(\d+): variable '(\w+)'", line)[0]
        assert "${{" + name + "}}" in text[int(row) - 1][int(col) - 1:], line


def test_validate_strict_turns_unknown_keys_into_errors() -> None:
    path = DATA / "definitions" / "unknown-key.yaml"
    assert cli("validate", path).returncode == 0
    proc = cli("validate", "--strict", path)
    assert proc.returncode == 2 and "unknown key" in proc.stderr


@pytest.mark.parametrize("fmt", ["dot", "mermaid"])
def test_graph_every_example(examples: list[Path], fmt: str) -> None:
    for path in examples:
        proc = cli("graph", path, "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        head = "digraph" if fmt == "dot" else "flowchart LR"
        assert proc.stdout.startswith(head)
    dot = cli("graph", EXAMPLES / "multiai-segmentation.yaml").stdout
    for src, dst in (("roi-split", "lung-tumor-segmentation"), ("spleen-segmentation",
                     "volume-merger"), ("volume-merger", "register-volume-images-for-multi-organ")):
        assert f'"{src}" -> "{dst}"' in dot
    mermaid = cli("graph", GENOMICS, "--format", "mermaid").stdout
    assert mermaid.count("-->") == 6  # three payload inputs and three operator edges


def test_graph_png_with_graphviz(tmp_path: Path) -> None:
    import shutil

    if shutil.which("dot") is None:
        from tests.conftest import need_peer

        need_peer(False, "graphviz 'dot'")
    out = tmp_path / "genomics.png"
    proc = cli("graph", GENOMICS, "--png", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- run --------------------------------------------------------------------------------------


def test_run_genomics_end_to_end(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    out = tmp_path / "out"
    proc = cli("run", GENOMICS, "--input", DATA / "genomics_input", "--output", out,
               *genomics_vars(), extra_env={"GENOMICS_TRACE": str(trace),
                                     "CLARA_RT_COMMAND_ENV": "GENOMICS_TRACE"})
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in trace.read_text().splitlines()] == [
        "mapper", "miniasm", "racon"]
    shown = re.search(r"^job ([0-9a-f]{32}) of 'denovo-assembly-pipeline': succeeded",
                      proc.stdout, re.MULTILINE)
    assert shown, proc.stdout
    for op in ("mapper", "miniasm", "racon"):
        assert f"  {op} " in proc.stdout
    polished = out / "racon" / "raconOutput" / shown[1] / "polished_assembly.fa"  # ${{JOB_ID}}
    assert polished.is_file() and polished.read_text().startswith(">")
    assert f"output racon.raconOutput: {out / 'racon' / 'raconOutput'}" in proc.stdout
    assert not list(out.glob(".clara-rt-work-*"))  # scratch removed after success


def test_run_json_report_and_overwrite_guard(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("run", GENOMICS, "--input", DATA / "genomics_input", "--output", out,
            *genomics_vars(), "--json")
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["state"] == "succeeded" and report["pipeline"] == "denovo-assembly-pipeline"
    ops = {row["name"]: row for row in report["operators"]}
    assert ops["mapper"]["end_ns"] <= ops["miniasm"]["start_ns"]
    assert ops["miniasm"]["end_ns"] <= ops["racon"]["start_ns"]
    assert all(row["state"] == "succeeded" and row["duration_ms"] > 0 for row in ops.values())
    assert report["outputs"]["racon.raconOutput"] == str(out / "racon" / "raconOutput")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    again = cli(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing touched
    assert cli(*args, "--overwrite").returncode == 0


def test_run_multiai_in_process(tmp_path: Path) -> None:
    volume = np.random.default_rng(1).random((8, 6, 6)).astype(np.float32)
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "volume.npy", volume)
    out = tmp_path / "out"
    proc = cli("run", MULTIAI, "--input", tmp_path / "in", "--output", out,
               "--service", "trtis=http://127.0.0.1:8000", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    labels = np.load(out / "volume-merger" / "output.npy")
    expected = np.zeros(volume.shape, np.uint8)
    for k, (organ, threshold) in enumerate(
            (("lung", 0.5), ("liver", 0.75), ("spleen", 0.9), ("colon", 0.25))):
        part = volume[2 * k:2 * k + 2]
        expected[2 * k:2 * k + 2][part > threshold] = k + 1
        assert organ
    assert np.array_equal(labels, expected)
    registered = json.loads((out / "register-volume-images-for-multi-organ" / "registered" /
                             "registered.json").read_text())
    assert registered == {"lung": int((expected == 1).sum()), "liver": int((expected == 2).sum()),
                          "spleen": int((expected == 3).sum()),
                          "colon": int((expected == 4).sum())}


def test_run_needs_service_url(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    proc = cli("run", MULTIAI, "--input", tmp_path / "in", "--output", tmp_path / "out")
    assert proc.returncode == 2
    assert "service 'trtis'" in proc.stderr and "--service trtis=http://HOST:PORT" in proc.stderr


def test_run_unresolved_operators_exit_2(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    proc = cli("run", EXAMPLES / "chestxray-0.4.0.yaml", "--input", tmp_path / "in",
               "--output", tmp_path / "out", "--service", "trtis=http://127.0.0.1:8000")
    assert proc.returncode == 2
    assert "ai-app-chestxray" in proc.stderr and "clara_rt.images" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_run_undefined_variable_names_it(tmp_path: Path) -> None:
    proc = cli("run", GENOMICS, "--input", DATA / "genomics_input", "--output", tmp_path / "o")
    assert proc.returncode == 2
    assert f"{GENOMICS}:" in proc.stderr and "undefined variable 'DOCKER_IMAGE'" in proc.stderr


def test_run_failing_command_exit_1_with_stderr_tail(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    proc = cli("run", GENOMICS, "--input", empty, "--output", out, *genomics_vars())
    assert proc.returncode == 1
    assert re.search(r"^job [0-9a-f]{32} of 'denovo-assembly-pipeline': failed", proc.stdout,
                     re.MULTILINE), proc.stdout
    assert "exited with status 3" in proc.stderr  # the stand-in found no reads
    assert "mapper" in proc.stderr
    kept = list(out.glob(".clara-rt-work-*"))
    assert len(kept) == 1 and f"workspace kept: {kept[0]}" in proc.stdout
    assert (kept[0] / "mapper" / "stderr.log").is_file()


def test_run_bad_arguments(tmp_path: Path) -> None:
    proc = cli("run", GENOMICS, "--input", tmp_path / "missing", "--output", tmp_path / "o",
               *genomics_vars())
    assert proc.returncode == 2 and "input folder" in proc.stderr
    proc = cli("run", GENOMICS, "--input", tmp_path, "--output", tmp_path / "o", "--var", "X")
    assert proc.returncode == 2 and "--var expects NAME=VALUE" in proc.stderr
    proc = cli("run", GENOMICS, "--output", tmp_path / "o")
    assert proc.returncode == 2 and "--input" in proc.stderr


def test_run_shows_live_progress_on_a_terminal(tmp_path: Path) -> None:
    import pty

    primary, secondary = pty.openpty()
    env = checkout_env()
    env["PATH"] = f"{DATA / 'genomics_bin'}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-m", "clara_rt.cli", "run", str(GENOMICS),
                           "--input", str(DATA / "genomics_input"), "--output",
                           str(tmp_path / "out"), *genomics_vars()], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=secondary, text=True, timeout=60,
                          check=False)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0
    for op in ("mapper", "miniasm", "racon"):
        assert f"running  {op}" in shown and f"done     {op}" in shown, shown


# --- operator code beside the definition, and its failures (issue 17.3, 17.6) ------------------

BESIDE_OPS = '''\
import logging

from clara_rt import Operator


def check_spacing(spacing):
    raise ValueError(f"bad voxel spacing {spacing}")


class Spacing(Operator):
    def setup(self, spec):
        spec.input("in", kind="path")
        spec.output("out", kind="path")

    def compute(self, inputs, outputs, context):
        logging.getLogger("besideops").info("checking %s", inputs["in"])
        if FAIL:
            check_spacing(0.0)
        out = context.workspace / "spacing.txt"
        out.write_text("1.0\\n")
        outputs["out"] = out
'''

BESIDE_YAML = """\
api-version: 0.5.0
name: beside
operators:
- name: spacing
  clara-rt: {operator: "besideops:Spacing"}
  input:
  - path: /in
  output:
  - path: /out
"""


def _beside(tmp_path: Path, *, fail: bool) -> Path:
    folder = tmp_path / "pipeline"
    folder.mkdir()
    (folder / "besideops.py").write_text(f"FAIL = {fail}\n" + BESIDE_OPS)
    (folder / "pipeline.yaml").write_text(BESIDE_YAML)
    (tmp_path / "in").mkdir()
    return folder / "pipeline.yaml"


def test_issue_17_6_operator_module_beside_the_definition_runs_without_pythonpath(
        tmp_path: Path) -> None:
    pipeline = _beside(tmp_path, fail=False)
    env = {"PYTHONPATH": str(ROOT)}  # the checkout only: nothing points at the pipeline folder
    assert cli("validate", pipeline, extra_env=env).returncode == 0
    proc = cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "out",
               extra_env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "spacing" / "out.txt").read_text() == "1.0\n"


def test_issue_17_6_missing_module_says_where_run_and_serve_look(tmp_path: Path) -> None:
    pipeline = _beside(tmp_path, fail=False)
    (pipeline.parent / "besideops.py").unlink()
    proc = cli("validate", pipeline)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"clara-rt: error: {pipeline}:5:13: operator 'spacing': "
                                  "cannot import 'besideops:Spacing': No module named "
                                  "'besideops'; clara-rt run and validate look for 'besideops' "
                                  f"in installed packages, then in the definition's folder "
                                  f"({pipeline.parent}); clara-rt serve only in installed "
                                  "packages and the server's PYTHONPATH"), proc.stderr


def test_issue_17_3_failing_python_operator_shows_file_line_and_keeps_traceback(
        tmp_path: Path) -> None:
    pipeline = _beside(tmp_path, fail=True)
    module = pipeline.parent / "besideops.py"
    lines = module.read_text().splitlines()
    raised = lines.index('    raise ValueError(f"bad voxel spacing {spacing}")') + 1
    proc = cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "out")
    assert proc.returncode == 1
    [workspace] = list((tmp_path / "out").glob(".clara-rt-work-*"))
    err = proc.stderr.splitlines()
    assert re.fullmatch(r"error: operator 'spacing' failed in job \S+ \('beside'\): "
                        r"ValueError: bad voxel spacing 0.0", err[0]), proc.stderr
    assert err[1] == f"  at {module}:{raised} in check_spacing", proc.stderr
    assert err[2] == f"  traceback: {workspace / 'job.log'} (or run again with --verbose)"
    assert "Traceback (most recent call last)" not in proc.stderr
    log = (workspace / "job.log").read_text()
    assert "INFO besideops: checking" in log  # the job's log records are kept too
    assert "Traceback (most recent call last)" in log
    assert f'File "{module}", line {raised}, in check_spacing' in log
    assert log.rstrip().endswith("ValueError: bad voxel spacing 0.0")

    verbose = cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "out2",
                  "--verbose", "--json")
    assert verbose.returncode == 1
    report = json.loads(verbose.stdout)
    assert report["error_where"] == f"{module}:{raised} in check_spacing"
    assert report["log"].endswith("job.log")
    assert f'File "{module}", line {raised}, in check_spacing' in verbose.stderr
    assert "Traceback (most recent call last)" in verbose.stderr

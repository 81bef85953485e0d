"""`clara-rt run --inference local`: a pipeline written for Triton runs on local ONNX files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from clara_rt.bench import checkout_env
from tests.data.onnx_nets import seg3d, seg3d_reference

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = """\
api-version: 0.4.0
name: seg-edge
operators:
- name: reader
  clara-rt: {operator: "clara_rt.definition.folders:LoadFolderOp", args: {format: npy}}
  input:
  - path: /input
  output:
  - name: volume
- name: seg
  clara-rt: {operator: "clara_rt.operators.inference:InferenceOp",
             args: {model: seg3d, backend: triton}}
  input:
  - from: reader
    name: volume
  services:
  - name: trtis
    connections:
      http:
      - name: NVIDIA_CLARA_TRTISURI
        port: 8000
"""


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = checkout_env()
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_triton_pipeline_runs_on_local_onnx_models(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    volume = np.random.default_rng(3).normal(size=(6, 7, 8)).astype(np.float32)
    np.save(tmp_path / "in" / "volume.npy", volume)
    seg3d(tmp_path / "models" / "seg3d.onnx")
    pipeline = tmp_path / "seg.yaml"
    pipeline.write_text(PIPELINE)
    dead = "http://127.0.0.1:9"  # nothing listens there: only the local model can serve it
    proc = _cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "out",
                "--service", f"trtis={dead}", "--inference", "local", "--models",
                tmp_path / "models")
    assert proc.returncode == 0, proc.stderr
    [result] = (tmp_path / "out" / "seg").glob("*.npy")
    expected = seg3d_reference(volume[None, None])[0, 0]
    np.testing.assert_allclose(np.load(result), expected, rtol=1e-5, atol=1e-6)
    edge = _cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "edge",
                "--inference", "local", "--models", tmp_path / "models")  # no server at all
    assert edge.returncode == 0, edge.stderr
    remote = _cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "out2",
                  "--service", f"trtis={dead}")
    assert remote.returncode == 2 and "seg3d" in remote.stderr and dead in remote.stderr


def test_local_inference_needs_a_models_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    pipeline = tmp_path / "seg.yaml"
    pipeline.write_text(PIPELINE)
    proc = _cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "out",
                "--inference", "local")
    assert proc.returncode == 2 and "--inference local needs --models DIR" in proc.stderr

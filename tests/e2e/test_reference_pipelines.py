"""The multiai-seg and chestxray-classify reference pipelines, run as a user runs them.

multiai-seg: a generated chest CT series through four concurrent ROI branches; the merged label
map must equal the same thresholds applied to the phantom directly, and the report's timings must
show the four branches in flight at once (and, as a control, never with one worker).
chestxray-classify: a classifier built by the test (tests/data/onnx_models.py) on a DICOM and a
PNG image; the probabilities must equal onnxruntime's on the same tensor.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pytest

from clara_rt.bench import checkout_env
from tests.conftest import need_peer
from tests.data import onnx_models
from tests.data.chest_dicom import SPACING, write_chest_series
from tests.data.phantom import ct_phantom

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MULTIAI = EXAMPLES / "multiai-seg" / "pipeline.yaml"
CHESTXRAY = EXAMPLES / "chestxray-classify" / "pipeline.yaml"

# The ROI boxes of multiai-seg in label order (label 1 first), and the lung-air thresholds its
# branches apply (window [-1000, 0] HU, then 0.0845 < v < 0.2505).
QUADRANTS = {
    "right-inferior": np.s_[0:32, :, 0:64], "right-superior": np.s_[32:, :, 0:64],
    "left-inferior": np.s_[0:32, :, 64:], "left-superior": np.s_[32:, :, 64:],
}
LOW_HU, HIGH_HU = -915.5, -749.5
LUNG_ML = 4 / 3 * np.pi * 32 * 16.64 * 25.6 * SPACING[0] * SPACING[1] * SPACING[2] / 1000


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = checkout_env()
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def run_json(*args: str | Path) -> dict[str, Any]:
    proc = cli("run", *args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["state"] == "succeeded"
    return report


# --- multiai-seg ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chest") / "in"
    write_chest_series(folder)
    return folder


@pytest.fixture(scope="module")
def multiai(chest: Path) -> tuple[Path, dict[str, Any]]:
    out = chest.parent / "out"
    return out, run_json(MULTIAI, "--input", chest, "--output", out, "--workers", "4")


def test_multiai_four_branches_run_at_once(multiai: tuple[Path, dict[str, Any]]) -> None:
    rows = {row["name"]: row for row in multiai[1]["operators"]}
    assert all(row["state"] == "succeeded" for row in rows.values())
    starts = [rows[f"window-{q}"]["start_ns"] for q in QUADRANTS]
    ends = [rows[f"segment-{q}"]["end_ns"] for q in QUADRANTS]
    # In a fresh process the first window call loads numba's kernel (~0.5 s) and the other
    # branches wait for it inside their own window operator, so every branch is in flight long
    # enough to show the overlap; a warm branch takes ~1 ms, as long as dispatching four tasks.
    windows_ms = [rows[f"window-{q}"]["duration_ms"] for q in QUADRANTS]
    assert max(starts) < min(ends), (
        f"a branch finished before another had started (window durations {windows_ms} ms: if "
        "all are ~1 ms, the branches became too short to show concurrency)")
    assert rows["roi-split"]["end_ns"] <= min(starts)  # fan-out after the split...
    assert max(ends) <= rows["roi-merge"]["start_ns"]  # ...fan-in before the merge
    for q in QUADRANTS:
        assert rows[f"window-{q}"]["end_ns"] <= rows[f"segment-{q}"]["start_ns"]


def test_multiai_with_one_worker_nothing_overlaps(chest: Path) -> None:
    """The control: the same timings show no overlap when only one worker runs operators."""
    report = run_json(MULTIAI, "--input", chest, "--output", chest.parent / "out1",
                      "--workers", "1")
    spans = sorted((row["start_ns"], row["end_ns"]) for row in report["operators"])
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))


def test_multiai_label_volumes_equal_the_phantom(multiai: tuple[Path, dict[str, Any]]) -> None:
    out = multiai[0]
    hu = ct_phantom((64, 128, 128))
    voxel_ml = float(np.prod(SPACING)) / 1000
    stats = json.loads((out / "volumes" / "stats.json").read_text())
    assert sorted(stats) == ["1", "2", "3", "4"]
    for label, (quadrant, box) in enumerate(QUADRANTS.items(), start=1):
        region = hu[box]
        lung = (region > LOW_HU) & (region < HIGH_HU)
        got = stats[str(label)]
        assert got["name"] == quadrant.replace("-", " ") + " lung"
        assert got["voxels"] == int(lung.sum())
        assert got["volume_ml"] == pytest.approx(int(lung.sum()) * voxel_ml, rel=1e-9)
        assert got["mean"] == pytest.approx(float(region[lung].mean()), rel=1e-9)
    total_ml = sum(s["volume_ml"] for s in stats.values())
    assert abs(total_ml - 2 * LUNG_ML) / (2 * LUNG_ML) < 0.05  # the thresholds find the lungs


def test_multiai_nifti_is_the_merged_label_map(multiai: tuple[Path, dict[str, Any]]) -> None:
    hu = ct_phantom((64, 128, 128))
    expected = np.zeros(hu.shape, dtype=np.uint8)
    for label, box in enumerate(QUADRANTS.values(), start=1):
        expected[box][(hu[box] > LOW_HU) & (hu[box] < HIGH_HU)] = label
    image = nibabel.load(multiai[0] / "nifti-writer" / "path.nii.gz")
    labels = np.asanyarray(image.dataobj).transpose(2, 1, 0)  # NIfTI [i, j, k] -> [k, j, i]
    np.testing.assert_array_equal(labels, expected)
    assert np.allclose(np.abs(np.diag(image.affine))[:3], SPACING[::-1])


# --- chestxray-classify -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def xray(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for module in ("onnx", "onnxruntime"):
        need_peer(importlib.util.find_spec(module) is not None, f"{module} (pip install {module})")
    root = tmp_path_factory.mktemp("xray")
    model = onnx_models.centre_classifier(root / "model.onnx")
    inputs = {"bright": onnx_models.write_xray_dicom(root / "bright", "bright").parent,
              "dark": onnx_models.write_xray_png(root / "dark", "dark").parent}
    reports = {kind: run_json(CHESTXRAY, "--input", folder, "--output", root / f"out-{kind}",
                              "--var", f"MODEL={model}") for kind, folder in inputs.items()}
    return {"root": root, "model": model, "reports": reports}


def direct_probs(model: Path, kind: onnx_models.Kind) -> np.ndarray:
    """What onnxruntime gives for the image normalised and halved as the pipeline does."""
    import onnxruntime

    pixels = onnx_models.xray_pixels(kind).astype(np.float32)
    pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    half = pixels.reshape(32, 2, 32, 2).mean(axis=(1, 3))  # bilinear halving = 2x2 mean
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"image": half[None, None].astype(np.float32)})[0][0])


@pytest.mark.parametrize(("kind", "label", "index"),
                         [("bright", "abnormal", 1), ("dark", "normal", 0)])
def test_chestxray_class_and_probabilities(xray: dict[str, Any], kind: onnx_models.Kind,
                                           label: str, index: int) -> None:
    out = xray["root"] / f"out-{kind}"
    result = json.loads((out / "classifier" / "result.json").read_text())
    probs = np.load(out / "classifier" / "probs.npy")
    assert (result["label"], result["index"]) == (label, index)
    assert probs.dtype == np.float32 and probs.shape == (2,)
    np.testing.assert_allclose(probs, direct_probs(xray["model"], kind), rtol=1e-5, atol=1e-7)
    assert result["probability"] == pytest.approx(float(probs.max()))
    assert result["labels"] == pytest.approx({"normal": probs[0], "abnormal": probs[1]})
    assert result["probability"] > 0.6  # decided, yet not saturated for the dark image
    meta = json.loads((out / "reader" / "meta.json").read_text())
    assert meta["format"] == ("dicom" if kind == "bright" else "png")
    assert meta["shape"] == [64, 64]


def test_chestxray_missing_model_is_named(xray: dict[str, Any]) -> None:
    missing = xray["root"] / "no-such-model.onnx"
    proc = cli("run", CHESTXRAY, "--input", xray["root"] / "dark", "--output",
               xray["root"] / "out-missing", "--var", f"MODEL={missing}")
    assert proc.returncode == 1
    assert f"ONNX model {missing} does not exist" in proc.stderr
    assert proc.stderr.startswith("clara-rt: error: ")  # a message, not a traceback
    assert "Traceback" not in proc.stderr
    assert not list((xray["root"] / "out-missing").glob(".clara-rt-work-*"))


def test_chestxray_model_input_that_does_not_fit_is_named(xray: dict[str, Any]) -> None:
    model = onnx_models.identity_model(xray["root"] / "two-channel.onnx", [1, 2, 32, 32])
    proc = cli("run", CHESTXRAY, "--input", xray["root"] / "dark", "--output",
               xray["root"] / "out-badshape", "--var", f"MODEL={model}")
    assert proc.returncode == 1
    assert (f"ONNX model {model} input shape [1, 2, 32, 32] does not fit a 2-D image: "
            "2 channels, expected 1 or 3") in proc.stderr


def test_chestxray_without_model_variable_is_a_usage_error(tmp_path: Path) -> None:
    proc = cli("run", CHESTXRAY, "--input", tmp_path, "--output", tmp_path / "out")
    assert proc.returncode == 2
    assert "undefined variable 'MODEL'" in proc.stderr


# --- the READMEs ------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["ct-lung-seg", "multiai-seg", "chestxray-classify"])
def test_readme_shows_the_current_graph(example: str) -> None:
    from clara_rt.definition.graph import to_mermaid
    from clara_rt.definition.schema import parse_definition

    definition = parse_definition(EXAMPLES / example / "pipeline.yaml", allow_undefined=True)
    readme = (EXAMPLES / example / "README.md").read_text()
    assert f"```mermaid\n{to_mermaid(definition)}```" in readme, (
        f"regenerate the graph in examples/{example}/README.md with: clara-rt graph "
        f"examples/{example}/pipeline.yaml --format mermaid")


# --- multiai-seg through InferenceOp: Triton and local ONNX ---------------------------------------

MULTIAI_TRITON = ROOT / "tests" / "data" / "multiai_triton" / "pipeline.yaml"
MODEL_THRESHOLD = 0.5  # the `threshold` parameter of threshold_mask's config.pbtxt


def triton_model_threshold() -> float:
    """The threshold the shared Triton model applies (its config.pbtxt default)."""
    from tests.peers import peers_dir

    config = peers_dir() / "triton" / "models" / "threshold_mask" / "config.pbtxt"
    text = config.read_text()
    start = text.index('key: "threshold"')
    return float(text[start:].split('string_value: "', 1)[1].split('"', 1)[0])


def multiai_labels(out: Path) -> np.ndarray:
    image = nibabel.load(out / "nifti-writer" / "path.nii.gz")
    return np.asarray(image.dataobj).transpose(2, 1, 0)  # NIfTI [i, j, k] -> [k, j, i]


def test_multiai_through_triton_and_local_onnx_give_the_same_labels(
        chest: Path, triton: Any, tmp_path: Path) -> None:
    from clara_rt.operators.kernels import window
    from tests.data.onnx_nets import threshold_mask

    assert triton_model_threshold() == MODEL_THRESHOLD
    threshold_mask(tmp_path / "models" / "threshold_mask.onnx", threshold=MODEL_THRESHOLD)
    remote = run_json(MULTIAI_TRITON, "--input", chest, "--output", tmp_path / "triton",
                      "--workers", "4", "--service", f"triton={triton.http_url}")
    local = run_json(MULTIAI_TRITON, "--input", chest, "--output", tmp_path / "local",
                     "--workers", "4", "--service", "triton=http://127.0.0.1:9",  # nobody there
                     "--inference", "local", "--models", tmp_path / "models")
    for report in (remote, local):
        assert {row["name"] for row in report["operators"]} >= {f"segment-{q}" for q in QUADRANTS}
    via_triton, via_onnx = multiai_labels(tmp_path / "triton"), multiai_labels(tmp_path / "local")
    np.testing.assert_array_equal(via_triton, via_onnx)
    hu = ct_phantom((64, 128, 128))
    expected = np.zeros(hu.shape, dtype=np.uint8)
    for label, box in enumerate(QUADRANTS.values(), start=1):
        windowed = window(np.ascontiguousarray(hu[box]), -1000.0, 0.0)
        expected[box][windowed > np.float32(MODEL_THRESHOLD)] = label
    np.testing.assert_array_equal(via_triton, expected)
    assert 0 < np.count_nonzero(expected) < expected.size  # the threshold cuts the body
    stats = [json.loads((tmp_path / run / "volumes" / "stats.json").read_text())
             for run in ("triton", "local")]
    assert stats[0] == stats[1]

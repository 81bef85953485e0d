"""chestxray-classify through both inference backends gives the same class and probabilities.

The ONNX pipeline (examples/chestxray-classify/pipeline.yaml: OnnxClassifierOp) and the
InferenceOp pipeline (pipeline-triton.yaml) run on a bright DICOM and a dark PNG, the latter
once against a real Triton 2.51 serving the Python-backend ``chestxray_classifier`` (numpy, the
ONNX file's own weights: tests/data/triton_models.py) and once with ``--inference local``
(ONNX Runtime on ``DIR/chestxray_classifier.onnx``). All three must agree.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import need_peer
from tests.data import onnx_models
from tests.data.triton_models import CHESTXRAY_MODEL, chestxray_repository
from tests.e2e.test_reference_pipelines import CHESTXRAY, EXAMPLES, run_json

CHESTXRAY_TRITON = EXAMPLES / "chestxray-classify" / "pipeline-triton.yaml"
KINDS: tuple[onnx_models.Kind, ...] = ("bright", "dark")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for module in ("onnx", "onnxruntime"):
        need_peer(importlib.util.find_spec(module) is not None, f"{module} (pip install {module})")
    root = tmp_path_factory.mktemp("xray-backends")
    onnx_file = onnx_models.centre_classifier(root / "local" / f"{CHESTXRAY_MODEL}.onnx")
    return {"root": root, "onnx": onnx_file, "local": onnx_file.parent,
            "repository": chestxray_repository(root / "repository", onnx_file),
            "bright": onnx_models.write_xray_dicom(root / "bright", "bright").parent,
            "dark": onnx_models.write_xray_png(root / "dark", "dark").parent}


@pytest.fixture(scope="module")
def chestxray_triton(models: dict[str, Path]) -> Iterator[Any]:
    """A second Triton server, on the repository holding ``chestxray_classifier`` only."""
    from tests.peers import triton_server

    need_peer(importlib.util.find_spec("tritonclient") is not None,
              "tritonclient (pip install 'clara-rt[triton]')")
    with triton_server(models["repository"]) as server:
        yield server


def outputs(out: Path) -> tuple[dict[str, Any], np.ndarray]:
    result = json.loads((out / "classifier" / "result.json").read_text())
    return result, np.load(out / "classifier" / "probs.npy")


def test_triton_repository_holds_the_onnx_weights(models: dict[str, Path]) -> None:
    version = models["repository"] / CHESTXRAY_MODEL / "1"
    weights, bias = onnx_models.centre_weights()
    np.testing.assert_array_equal(np.load(version / "W.npy"), weights)
    np.testing.assert_array_equal(np.load(version / "b.npy"), bias)
    assert (models["repository"] / CHESTXRAY_MODEL / "config.pbtxt").is_file()


@pytest.mark.parametrize(("kind", "label"), [("bright", "abnormal"), ("dark", "normal")])
def test_chestxray_onnx_triton_and_local_agree(models: dict[str, Path], chestxray_triton: Any,
                                               kind: onnx_models.Kind, label: str) -> None:
    root, folder = models["root"], models[kind]
    run_json(CHESTXRAY, "--input", folder, "--output", root / f"onnx-{kind}",
             "--var", f"MODEL={models['onnx']}")
    run_json(CHESTXRAY_TRITON, "--input", folder, "--output", root / f"triton-{kind}",
             "--service", f"triton={chestxray_triton.http_url}")
    run_json(CHESTXRAY_TRITON, "--input", folder, "--output", root / f"local-{kind}",
             "--service", "triton=http://127.0.0.1:9",  # nobody listens: only local can serve
             "--inference", "local", "--models", models["local"])
    results = {run: outputs(root / f"{run}-{kind}") for run in ("onnx", "triton", "local")}
    onnx_result, onnx_probs = results["onnx"]
    assert onnx_result["label"] == label
    assert onnx_probs.dtype == np.float32 and onnx_probs.shape == (2,)
    for run in ("triton", "local"):
        result, probs = results[run]
        assert probs.dtype == np.float32 and probs.shape == (2,), run
        np.testing.assert_allclose(probs, onnx_probs, rtol=1e-5, err_msg=run)
        assert result.keys() == onnx_result.keys(), run
        assert (result["label"], result["index"]) == (onnx_result["label"], onnx_result["index"])
        assert result["probability"] == pytest.approx(onnx_result["probability"], rel=1e-5)
        assert result["labels"] == pytest.approx(onnx_result["labels"], rel=1e-5)
        assert result["model"] == CHESTXRAY_MODEL
    np.testing.assert_allclose(results["triton"][1], results["local"][1], rtol=1e-5)


def test_readme_shows_the_triton_pipeline_graph() -> None:
    from clara_rt.definition.graph import to_mermaid
    from clara_rt.definition.schema import parse_definition

    readme = (EXAMPLES / "chestxray-classify" / "README.md").read_text()
    graph = to_mermaid(parse_definition(CHESTXRAY_TRITON, allow_undefined=True))
    assert f"```mermaid\n{graph}```" in readme, (
        "regenerate the second graph in examples/chestxray-classify/README.md with: clara-rt "
        "graph examples/chestxray-classify/pipeline-triton.yaml --format mermaid")

"""TritonBackend against MLServer 1.7.1, a second KServe-v2 server (no binary HTTP tensors, no
shared memory, no model configuration endpoint).

Models (``../shared/peers/mlserver_models``): ``doubler`` (INPUT0 FP32 [-1,-1] -> OUTPUT0 = 2x) and
``classifier`` (INPUT__0 FP32 [N,1,H,W] -> PROBS FP32 [N,3], LABEL INT64).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from clara_rt.backends import ModelSpec, TensorSpec
from clara_rt.backends.triton import TritonBackend
from clara_rt.errors import BackendError, BackendUnavailableError
from tests.peers import PeerServer


@pytest.fixture(params=["http", "grpc"])
def url(request: pytest.FixtureRequest, mlserver: PeerServer) -> str:
    return mlserver.http_url if request.param == "http" else mlserver.grpc_url


def test_doubler(url: str) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with TritonBackend(url, "doubler") as b:  # HTTP: JSON tensors, chosen from the metadata
        assert b.spec() == ModelSpec("doubler", "", (TensorSpec("INPUT0", "float32", (-1, -1)),),
                                     (TensorSpec("OUTPUT0", "float32", (-1, -1)),), 0, "mlserver")
        np.testing.assert_array_equal(b.infer({"INPUT0": x})["OUTPUT0"], 2 * x)


def test_binary_http_tensors_are_rejected_when_forced(mlserver: PeerServer) -> None:
    with (TritonBackend(mlserver.http_url, "doubler", binary=True) as b,
          pytest.raises(BackendError, match=r"inference failed: \[422\]")):
        b.infer({"INPUT0": np.ones((1, 4), np.float32)})


def test_binary_rejection_switches_to_json(mlserver: PeerServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    # White-box: forget what the server metadata said, so that the first request goes out with
    # binary tensors and the real 422 answer drives the switch.
    caplog.set_level(logging.INFO, logger="clara_rt.backends.triton")
    x = np.ones((2, 3), np.float32)
    with TritonBackend(mlserver.http_url, "doubler") as b:
        b.spec()
        b._binary = None
        np.testing.assert_array_equal(b.infer({"INPUT0": x})["OUTPUT0"], 2 * x)
        np.testing.assert_array_equal(b.infer({"INPUT0": x})["OUTPUT0"], 2 * x)
        assert b._binary is False
    assert sum("rejected binary tensors (422)" in r.getMessage() for r in caplog.records) == 1


def test_shared_memory_falls_back(url: str, caplog: pytest.LogCaptureFixture) -> None:
    x = np.random.default_rng(0).random((1, 300_000), dtype=np.float32)
    caplog.set_level(logging.INFO, logger="clara_rt.backends.triton")
    with TritonBackend(url, "doubler", shared_memory="system") as b:
        for _ in range(2):
            np.testing.assert_array_equal(b.infer({"INPUT0": x})["OUTPUT0"], 2 * x)
        assert b.shared_memory_regions == ()
    notes = [r for r in caplog.records if "no system shared memory" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO


def test_classifier(url: str) -> None:
    images = np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32)
    with TritonBackend(url, "classifier") as b:
        spec = b.spec()
        assert spec.inputs == (TensorSpec("INPUT__0", "float32", (-1, 1, -1, -1)),)
        assert [t.name for t in spec.outputs] == ["PROBS", "LABEL"]
        out = b.infer({"INPUT__0": images})
        with pytest.raises(BackendError, match=r"input 'INPUT__0': expected shape "
                                               r"\[-1, 1, -1, -1\], got \(3, 2, 8, 8\)"):
            b.infer({"INPUT__0": np.repeat(images, 2, axis=1)})
    probs, label = out["PROBS"], out["LABEL"]
    assert probs.shape == (3, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(label.reshape(-1), probs.argmax(axis=1))


def test_unknown_model_lists_models(url: str) -> None:
    with (TritonBackend(url, "segmentation") as b,
          pytest.raises(BackendUnavailableError, match=r"the server has: classifier \(READY\), "
                                                       r"doubler \(READY\), onnx_classifier")):
        b.spec()

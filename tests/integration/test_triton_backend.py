"""TritonBackend against a real Triton 2.51 server (CPU, Python backend) on 127.0.0.1.

Models (``../shared/peers/triton/models``): ``double`` (x FP32 [-1] -> 2x, max_batch_size 8),
``threshold_mask`` (image FP32 [D,H,W] -> mask UINT8, no batching) and ``threshold_mask_2d``
(image FP32 [1,H,W] -> mask UINT8 [1,H,W], max_batch_size 8).
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from clara_rt.backends import InferenceBackend, ModelSpec, TensorSpec
from clara_rt.backends.sliding_window import sliding_window_infer
from clara_rt.backends.triton import TritonBackend
from clara_rt.errors import BackendError, BackendUnavailableError
from tests.peers import PeerServer, triton_server

PROTOCOLS = ["http", "grpc"]


def _url(server: PeerServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(triton: PeerServer, protocol: str) -> Iterator[TritonBackend]:
    with TritonBackend(_url(triton, protocol), "double", timeout=10) as b:
        yield b


def _stats(server: PeerServer, model: str) -> tuple[int, int]:
    """Return the server's (inference_count, execution_count) for ``model``."""
    import tritonclient.http as th

    client = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return int(stats["inference_count"]), int(stats["execution_count"])


def _shm_status(server: PeerServer) -> set[str]:
    import tritonclient.http as th

    client = th.InferenceServerClient(server.http_url.removeprefix("http://"))
    try:
        return {r["name"] for r in client.get_system_shared_memory_status()}
    finally:
        client.close()


def test_spec_of_every_model(triton: PeerServer, protocol: str) -> None:
    url = _url(triton, protocol)
    specs = {}
    for model in ("double", "threshold_mask", "threshold_mask_2d"):
        with TritonBackend(url, model) as b:
            specs[model] = b.spec()
            assert b.spec() is specs[model]  # fetched once
            assert isinstance(b, InferenceBackend)
    assert specs["double"] == ModelSpec("double", "", (TensorSpec("x", "float32", (-1, -1)),),
                                        (TensorSpec("y", "float32", (-1, -1)),), 8, "python")
    assert specs["threshold_mask"].inputs == (TensorSpec("image", "float32", (-1, -1, -1)),)
    assert specs["threshold_mask"].outputs == (TensorSpec("mask", "uint8", (-1, -1, -1)),)
    assert specs["threshold_mask"].max_batch_size == 0
    assert specs["threshold_mask_2d"].inputs[0].shape == (-1, 1, -1, -1)
    assert specs["threshold_mask_2d"].max_batch_size == 8


def test_infer_every_model(triton: PeerServer, protocol: str) -> None:
    url, rng = _url(triton, protocol), np.random.default_rng(0)
    with TritonBackend(url, "double") as b:
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        np.testing.assert_array_equal(b.infer({"x": x})["y"], 2 * x)
    with TritonBackend(url, "threshold_mask") as b:
        volume = rng.random((7, 9, 11), dtype=np.float32)
        mask = b.infer({"image": volume})["mask"]
        assert mask.dtype == np.uint8 and mask.shape == volume.shape
        np.testing.assert_array_equal(mask, volume > 0.5)
        strict = b.infer({"image": volume}, ("mask",), parameters={"threshold": 0.9})["mask"]
        np.testing.assert_array_equal(strict, volume > 0.9)
    with TritonBackend(url, "threshold_mask_2d") as b:
        images = rng.random((8, 1, 16, 12), dtype=np.float32)
        np.testing.assert_array_equal(b.infer({"image": images})["mask"], images > 0.5)


def test_threads_share_one_backend(backend: TritonBackend) -> None:
    failures: list[str] = []

    def worker(k: int) -> None:
        for j in range(20):
            x = np.full((2, 5), k * 100 + j, dtype=np.float32)
            y = backend.infer({"x": x})["y"]
            if not np.array_equal(y, 2 * x):
                failures.append(f"thread {k} request {j}: {y[0, 0]} != {2 * x[0, 0]}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_system_shared_memory(triton: PeerServer, protocol: str) -> None:
    x = np.random.default_rng(1).random((1, 1 << 20), dtype=np.float32)  # 4 MiB
    url = _url(triton, protocol)
    with TritonBackend(url, "double", shared_memory="none") as plain:
        expected = plain.infer({"x": x})["y"]
        assert plain.shared_memory_regions == ()
    shm = TritonBackend(url, "double")  # "auto": large input, loopback, server has the extension
    try:
        y = shm.infer({"x": x})["y"]
        regions = shm.shared_memory_regions
        assert len(regions) == 2 and set(regions) <= _shm_status(triton)
        np.testing.assert_array_equal(y, expected)
        y[0, 0] = -1.0  # a copy, not a view of the region that the next call reuses
        np.testing.assert_array_equal(shm.infer({"x": 2 * x})["y"], 4 * x)
        assert shm.shared_memory_regions == regions  # same size: regions reused
    finally:
        shm.close()
    assert not set(regions) & _shm_status(triton)
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(regions)]
    assert shm.shared_memory_regions == ()


TWICE_CONFIG = """
name: "twice"
backend: "python"
max_batch_size: 0
input [ { name: "x", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""
TWICE_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", np.concatenate([x, x]))]))
        return out
"""


@pytest.fixture(scope="module")
def twice_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerServer]:
    """A second Triton whose model's output is twice as long as its input."""
    repo = tmp_path_factory.mktemp("repo")
    (repo / "twice" / "1").mkdir(parents=True)
    (repo / "twice" / "config.pbtxt").write_text(TWICE_CONFIG)
    (repo / "twice" / "1" / "model.py").write_text(TWICE_MODEL)
    with triton_server(repo) as server:
        yield server


def test_output_larger_than_estimated(twice_server: PeerServer,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clara_rt.backends.triton")
    x = np.arange(3 << 18, dtype=np.float32)  # 3 MiB in, 6 MiB out; estimate: as large as x
    with TritonBackend(twice_server.http_url, "twice", shared_memory="system") as b:
        before = _stats(twice_server, "twice")
        np.testing.assert_array_equal(b.infer({"x": x})["y"], np.concatenate([x, x]))
        after = _stats(twice_server, "twice")
    assert after[1] - before[1] == 2  # run again, once, with the outputs in the response
    assert any("outgrew its estimated size" in r.getMessage() for r in caplog.records)


def test_small_inputs_skip_shared_memory(backend: TritonBackend) -> None:
    backend.infer({"x": np.ones((1, 16), dtype=np.float32)})
    assert backend.shared_memory_regions == ()


def test_dead_server_is_unavailable_quickly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    for url in (f"http://127.0.0.1:{port}", f"grpc://127.0.0.1:{port}"):
        backend = TritonBackend(url, "double", timeout=3, retries=2)
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=r"cannot reach the server .* after "
                                                          r"3 attempt\(s\)") as info:
            backend.spec()
        assert time.monotonic() - t0 < 3
        assert info.value.url == url and info.value.model == "double"
        backend.close()


def test_unknown_model_lists_the_server_models(triton: PeerServer, protocol: str) -> None:
    with (TritonBackend(_url(triton, protocol), "segmentation") as b,
          pytest.raises(BackendUnavailableError, match=r"model 'segmentation' .* missing or not "
                        r"ready; the server has: double \(READY\), threshold_mask \(READY\), "
                        r"threshold_mask_2d \(READY\)")):
        b.spec()


@pytest.mark.parametrize(("model", "inputs", "message"), [
    ("double", {"x": np.ones((1, 4))}, r"input 'x': expected dtype float32, got float64"),
    ("double", {"x": np.ones(4, np.float32)},
     r"input 'x': expected shape \[-1, -1\] \(rank 2\), got \(4,\) \(rank 1\); the model batches"),
    ("double", {"x": np.ones((9, 4), np.float32)},
     r"input 'x': batch of 9 exceeds .* max_batch_size 8"),
    ("double", {"X": np.ones((1, 4), np.float32)}, r"the model has no input 'X'; inputs are: x"),
    ("threshold_mask_2d", {"image": np.ones((1, 2, 4, 4), np.float32)},
     r"input 'image': expected shape \[-1, 1, -1, -1\], got \(1, 2, 4, 4\): dimension 1 must "
     r"be 1"),
    ("threshold_mask", {}, r"input\(s\) image missing"),
])
def test_bad_inputs_fail_before_sending(triton: PeerServer, protocol: str, model: str,
                                        inputs: dict[str, Any], message: str) -> None:
    with TritonBackend(_url(triton, protocol), model) as b:
        b.spec()
        before = _stats(triton, model)
        with pytest.raises(BackendError, match=f"^model '{model}' at [^ ]*: {message}"):
            b.infer(inputs)
        assert _stats(triton, model) == before


def test_unknown_output(backend: TritonBackend) -> None:
    with pytest.raises(BackendError, match=r"has no output 'z'; outputs are: y"):
        backend.infer({"x": np.ones((1, 2), np.float32)}, ("z",))


def test_failed_inference_is_not_resent(triton: PeerServer, protocol: str) -> None:
    with TritonBackend(_url(triton, protocol), "threshold_mask", retries=3) as b:
        image = np.ones((2, 2, 2), np.float32)
        b.infer({"image": image})
        before = _stats(triton, "threshold_mask")
        with pytest.raises(BackendError, match=r"inference failed: .*could not convert string to "
                                               r"float: 'abc'") as info:
            b.infer({"image": image}, parameters={"threshold": "abc"})
        assert not isinstance(info.value, BackendUnavailableError)
        after = _stats(triton, "threshold_mask")
        assert (after[0] - before[0], after[1] - before[1]) == (1, 1)  # run once, not retried


def test_closed_backend_refuses_calls(triton: PeerServer) -> None:
    b = TritonBackend(triton.http_url, "double")
    b.infer({"x": np.ones((1, 2), np.float32)})
    b.close()
    b.close()
    with pytest.raises(BackendError, match="the backend is closed"):
        b.infer({"x": np.ones((1, 2), np.float32)})


def test_sliding_window_3d(triton: PeerServer, xp: ModuleType) -> None:
    volume = xp.asarray(np.random.default_rng(2).random((40, 37, 23), dtype=np.float32))
    with TritonBackend(triton.http_url, "threshold_mask") as b:
        out = sliding_window_infer(b, volume, roi=(16, 16, 16), overlap=0.5)
    assert type(out) is type(volume) and out.shape == volume.shape
    assert bool((out == (volume > 0.5)).all())


def test_sliding_window_2d_batches_windows(triton: PeerServer) -> None:
    image = np.random.default_rng(3).random((1, 100, 70), dtype=np.float32)
    with TritonBackend(triton.grpc_url, "threshold_mask_2d") as b:
        before = _stats(triton, "threshold_mask_2d")
        out = sliding_window_infer(b, image, roi=(32, 32), overlap=0.25, blend="constant")
        after = _stats(triton, "threshold_mask_2d")
    windows = 4 * 3  # window starts 0, 24, 48, 68 on 100 and 0, 24, 38 on 70
    assert after[0] - before[0] == windows
    assert after[1] - before[1] == math.ceil(windows / 8)
    np.testing.assert_array_equal(out, image > 0.5)


def test_bench_scenario(triton: PeerServer) -> None:
    from clara_rt.bench._inference import inference

    record = inference(url=triton.http_url, sizes_mb=(1,), repeat=3, in_process=False)
    assert set(record.figures) == {"tritonclient (http binary)", "clara-rt (http binary)",
                                   "clara-rt (system shm)"}
    assert all(v > 0 for fig in record.figures.values() for v in fig.values())
    assert record.ratios and all(r > 0 for r in record.ratios.values())
    assert [t.unit for t in record.targets] == ["%"]


def test_bench_scenario_without_server() -> None:
    from clara_rt.bench._inference import inference

    record = inference(url="http://127.0.0.1:1", repeat=1, in_process=False)
    assert record.figures == {} and record.notes.startswith("Triton not measured: model 'double'")

"""OnnxBackend against real onnxruntime, on models built here (tests/data/onnx_nets.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="needs the onnx package (test extra)")
pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'clara-rt[onnx]')")

from clara_rt.backends import InferenceBackend, ModelSpec, TensorSpec
from clara_rt.backends import onnxruntime as ortb
from clara_rt.backends.onnxruntime import DEFAULT_MAX_BATCH, OnnxBackend
from clara_rt.errors import BackendError, BackendUnavailableError
from tests.data.onnx_nets import (
    OnnxNet,
    classifier2d_reference,
    seg3d,
    seg3d_reference,
)


@pytest.fixture
def seg(seg_net: OnnxNet) -> Iterator[OnnxBackend]:
    backend = OnnxBackend(seg_net.path)
    yield backend
    backend.close()


def volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- spec -----------------------------------------------------------------------------------


def test_spec_maps_types_and_symbolic_dims(seg: OnnxBackend, seg_net: OnnxNet) -> None:
    assert isinstance(seg, InferenceBackend)
    assert seg.url == str(seg_net.path)
    assert seg.spec() == ModelSpec(
        "seg3d", "", (TensorSpec("image", "float32", (1, 1, -1, -1, -1)),),
        (TensorSpec("prob", "float32", (1, 1, -1, -1, -1)),), max_batch_size=1,
        platform="onnxruntime")


def test_spec_of_a_batching_model(cls_net: OnnxNet) -> None:
    """All first dims symbolic: it batches (DEFAULT_MAX_BATCH); all 1 (seg3d): a batch of 1."""
    backend = OnnxBackend(cls_net.path)
    spec = backend.spec()
    backend.close()
    assert spec.inputs == (TensorSpec("image", "float32", (-1, 1, 32, 32)),)
    assert spec.outputs == (TensorSpec("probs", "float32", (-1, 10)),)
    assert spec.max_batch_size == DEFAULT_MAX_BATCH


def test_triton_repository_layout_names_the_model(tmp_path: Path) -> None:
    net = seg3d(tmp_path / "liver" / "3" / "model.onnx")
    backend = OnnxBackend(net.path)
    assert (backend.model, backend.spec().name, backend.spec().version) == ("liver", "liver", "3")
    backend.close()


# --- results --------------------------------------------------------------------------------


def test_seg3d_matches_numpy_reference(seg: OnnxBackend) -> None:
    x = volume((1, 1, 12, 17, 9))
    out = seg.infer({"image": x})
    assert list(out) == ["prob"]
    assert type(out["prob"]) is np.ndarray and out["prob"].shape == x.shape
    np.testing.assert_allclose(out["prob"], seg3d_reference(x), rtol=1e-5, atol=1e-6)


def test_classifier_matches_softmax_reference(cls_net: OnnxNet) -> None:
    backend = OnnxBackend(cls_net.path)
    x = volume((5, 1, 32, 32), seed=3)
    probs = backend.infer({"image": x}, ("probs",))["probs"]
    backend.close()
    np.testing.assert_allclose(probs, classifier2d_reference(x, **cls_net.params), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_non_contiguous_input_is_accepted(seg: OnnxBackend) -> None:
    x = volume((1, 1, 10, 10, 20))[..., ::2]
    np.testing.assert_allclose(seg.infer({"image": x})["prob"], seg3d_reference(x), rtol=1e-5,
                               atol=1e-6)


def test_eight_threads_share_one_session(seg_net: OnnxNet) -> None:
    backend, other = OnnxBackend(seg_net.path), OnnxBackend(seg_net.path)
    inputs = [volume((1, 1, 8 + i, 9, 10), seed=i) for i in range(8)]
    results: list[np.ndarray | None] = [None] * 8
    sessions: list[object] = [None] * 8
    start = threading.Barrier(8)

    def work(i: int) -> None:
        start.wait()
        for _ in range(5):
            results[i] = backend.infer({"image": inputs[i]})["prob"]
        sessions[i] = backend.session

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s is backend.session for s in sessions)
    assert other.session is backend.session  # the module cache shares it across backends
    for x, got in zip(inputs, results, strict=True):
        assert got is not None
        np.testing.assert_allclose(got, seg3d_reference(x), rtol=1e-5, atol=1e-6)
    backend.close()
    other.close()


def test_cache_drops_session_after_last_close(seg_net: OnnxNet) -> None:
    a, b = OnnxBackend(seg_net.path, intra_op_threads=1), OnnxBackend(seg_net.path,
                                                                        intra_op_threads=1)
    session = a.session
    assert b.session is session
    a.close()
    a.close()  # idempotent
    assert b.session is session
    b.close()
    assert not any(entry.value is session for entry in ortb._cache.live.values())
    again = a.session  # reopened on next use
    assert again is not session
    a.close()


def test_rewritten_file_gets_a_new_session(tmp_path: Path) -> None:
    path = seg3d(tmp_path / "m.onnx").path
    first = OnnxBackend(path)
    x = volume((1, 1, 6, 6, 6))
    before = first.infer({"image": x})["prob"]
    seg3d(path, bias=1.0)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    second = OnnxBackend(path)
    assert second.session is not first.session
    np.testing.assert_allclose(second.infer({"image": x})["prob"], seg3d_reference(x, bias=1.0),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(before, seg3d_reference(x, bias=1.0))
    first.close()
    second.close()


def test_thread_count_and_providers_are_applied(seg_net: OnnxNet) -> None:
    backend = OnnxBackend(seg_net.path, providers=["CPUExecutionProvider"], intra_op_threads=1)
    assert backend.providers == ("CPUExecutionProvider",)
    options = backend.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    backend.close()
    with pytest.raises(ValueError, match=r"^intra_op_threads must be >= 1, got 0$"):
        OnnxBackend(seg_net.path, intra_op_threads=0)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("inputs", "message"), [
    ({"image": np.zeros((1, 1, 4, 4, 4), np.float64)},
     r"input 'image' expects float32\[1, 1, -1, -1, -1\], got float64\[1, 1, 4, 4, 4\] "
     r"\(dtype float64, not float32\)$"),
    ({"image": np.zeros((1, 4, 4, 4), np.float32)},
     r"input 'image' expects float32\[1, 1, -1, -1, -1\], got float32\[1, 4, 4, 4\] "
     r"\(rank 4, not 5\)$"),
    ({"image": np.zeros((2, 1, 4, 4, 4), np.float32)},
     r"input 'image' expects .*, got float32\[2, 1, 4, 4, 4\] \(axis 0 is 2, not 1\)$"),
    ({"img": np.zeros((1, 1, 4, 4, 4), np.float32)}, r"unknown input 'img'; inputs are: image$"),
    ({}, r"missing input\(s\) image; inputs are: image$"),
    ({"image": [[1.0]]}, r"input 'image' expects .*, got a list \(not an array\)$"),
], ids=["dtype", "rank", "fixed-dim", "unknown", "missing", "not-array"])
def test_bad_inputs_are_named(seg: OnnxBackend, inputs: dict[str, object], message: str) -> None:
    with pytest.raises(BackendError, match=r"^model 'seg3d' \(.*seg3d\.onnx\): " + message) as info:
        seg.infer(inputs)
    assert (info.value.model, info.value.url) == ("seg3d", seg.url)


def test_unknown_output_is_named(seg: OnnxBackend) -> None:
    with pytest.raises(BackendError, match=r"unknown output\(s\) mask; outputs are: prob$"):
        seg.infer({"image": volume((1, 1, 4, 4, 4))}, ("mask",))


def test_missing_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "seg.onnx"
    backend = OnnxBackend(path)  # lazy: nothing read yet
    with pytest.raises(BackendUnavailableError,
                       match=rf"^ONNX model file not found: {path}$") as info:
        backend.spec()
    assert (info.value.model, info.value.url) == ("seg", str(path))


def test_corrupt_file_carries_onnxruntime_message(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07 this is not a protobuf model")
    with pytest.raises(BackendError, match=r"^cannot load ONNX model 'broken' from .*broken\.onnx: "
                                           r".*(INVALID_PROTOBUF|Protobuf parsing failed)") as info:
        OnnxBackend(path).spec()
    assert not isinstance(info.value, BackendUnavailableError)
    assert not any(key[0] == os.path.realpath(path) for key in ortb._cache.live)


# --- GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cupy_inputs_give_cupy_outputs(seg_net: OnnxNet) -> None:
    import cupy

    backend = OnnxBackend(seg_net.path)
    x = volume((1, 1, 16, 16, 16))
    out = backend.infer({"image": cupy.asarray(x)})["prob"]
    assert isinstance(out, cupy.ndarray) and out.device.id == 0
    np.testing.assert_allclose(cupy.asnumpy(out), seg3d_reference(x), rtol=1e-5, atol=1e-6)
    # a strided view: made contiguous (and synchronised) before onnxruntime reads the pointer
    strided = cupy.asarray(np.repeat(x, 2, axis=-1))[..., ::2]
    assert not strided.flags.c_contiguous
    out = backend.infer({"image": strided})["prob"]
    np.testing.assert_allclose(cupy.asnumpy(out), seg3d_reference(x), rtol=1e-5, atol=1e-6)
    host = backend.infer({"image": x})["prob"]  # NumPy in: NumPy out, on any provider
    assert type(host) is np.ndarray
    backend.close()

"""InferenceOp: ports from the model's spec, pipelines through ONNX Runtime, local override."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="needs the onnx package (test extra)")
pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'clara-rt[onnx]')")

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, Pipeline, PortSpec, Runtime
from clara_rt.backends.onnxruntime import OnnxBackend
from clara_rt.errors import BackendUnavailableError, PipelineError
from clara_rt.operators.inference.infer import (
    InferenceOp,
    _batch_axes,
    find_local_model,
    set_local_models,
)
from clara_rt.operators.preprocess.window import WindowOp
from clara_rt.operators.segment.threshold import ThresholdOp
from tests.data.onnx_nets import (
    OnnxNet,
    classifier2d_reference,
    seg3d,
    seg3d_reference,
    sigmoid3d,
)


@pytest.fixture
def no_local_models() -> Iterator[None]:
    previous = set_local_models(None)
    yield
    set_local_models(previous)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmitInt16(Operator):
    def setup(self, spec: OperatorSpec) -> None:
        spec.output("out", dtype="int16", shape=(-1, -1, -1))

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        outputs["out"] = np.zeros((2, 2, 2), np.int16)


# --- ports ----------------------------------------------------------------------------------


def test_ports_come_from_the_model(seg_net: OnnxNet, cls_net: OnnxNet) -> None:
    seg = InferenceOp("seg", model=seg_net.path)
    assert seg.spec.inputs == {"image": PortSpec("image", dtype="float32", shape=(-1, -1, -1))}
    assert seg.spec.outputs == {"prob": PortSpec("prob", dtype="float32", shape=(-1, -1, -1))}
    assert isinstance(seg.inference_backend, OnnxBackend)
    cls = InferenceOp("cls", model=cls_net.path)
    assert cls.spec.inputs["image"].shape == (32, 32)
    assert cls.spec.outputs["probs"] == PortSpec("probs", dtype="float32", shape=(10,))
    raw = InferenceOp("raw", model=seg_net.path, batch=False)
    assert raw.spec.inputs["image"].shape == (1, 1, -1, -1, -1)
    for op in (seg, cls, raw):
        op.stop()


@pytest.mark.parametrize(("shape", "batched", "axes"), [
    ((1, 1, -1, -1, -1), True, 2),   # exported with batch 1 and one channel (seg3d)
    ((-1, 1, 32, 32), True, 2),      # batch N, one channel
    ((-1, 10), True, 1),             # batch N of class scores
    ((-1, 1), True, 1),              # one axis is always kept
    ((-1, 3, 224, 224), True, 1),    # three channels stay
    ((-1, -1, -1), False, 0),        # Triton max_batch_size 0, dims [-1, -1, -1]: all spatial
    ((1, -1, -1, -1), False, 1),     # no batching, leading single channel
])
def test_batch_axes(shape: tuple[int, ...], batched: bool, axes: int) -> None:
    assert _batch_axes(shape, batched) == axes


def test_ports_can_be_renamed_and_outputs_chosen(seg_net: OnnxNet) -> None:
    op = InferenceOp("seg", model=seg_net.path, inputs={"volume": "image"},
                     outputs={"probability": "prob"})
    assert (list(op.spec.inputs), list(op.spec.outputs)) == (["volume"], ["probability"])
    op.stop()
    with pytest.raises(PipelineError, match=r"^operator 'bad': model '.*seg3d\.onnx' has no "
                                            r"output 'mask'; its outputs are: prob$"):
        Pipeline().add(InferenceOp("bad", model=seg_net.path, outputs={"mask": "mask"}))


def test_connect_checks_dtype_against_the_model(seg_net: OnnxNet) -> None:
    p = Pipeline("typed")
    src, seg = p.add(EmitInt16("src")), p.add(InferenceOp("seg", model=seg_net.path))
    with pytest.raises(PipelineError, match=r"dtype int16 cannot feed dtype float32"):
        p.connect(src, "out", seg, "image")
    seg.stop()


def test_bad_arguments_fail_early(seg_net: OnnxNet, tmp_path: Path,
                                  no_local_models: None) -> None:
    with pytest.raises(ValueError, match=r"backend must be 'onnx', 'triton', 'torch' or None, "
                                         r"got 'trt'"):
        InferenceOp("x", model=seg_net.path, backend="trt")  # type: ignore[arg-type]
    missing = tmp_path / "gone.onnx"
    with pytest.raises(PipelineError, match=rf"^operator 'x': ONNX model file not found: "
                                            rf"{missing}$"):
        Pipeline().add(InferenceOp("x", model=missing))
    with pytest.raises(PipelineError, match=r"^operator 'x': intra_op_threads must be >= 1"):
        Pipeline().add(InferenceOp("x", model=seg_net.path, backend_args={"intra_op_threads": 0}))
    with pytest.raises(PipelineError, match=r"^operator 'x': Triton model 'seg' needs a server "
                                            r"URL: pass url=, or wire a service"):
        Pipeline().add(InferenceOp("x", model="seg", backend="triton"))


# --- running --------------------------------------------------------------------------------


def test_pipeline_window_infer_threshold(seg_net: OnnxNet) -> None:
    p = Pipeline("seg")
    win = p.add(WindowOp("win", level=0.0, width=4.0))
    seg = InferenceOp("seg", model=seg_net.path)
    p.add(seg)
    thr = p.add(ThresholdOp("thr", low=0.6))
    p.connect(win, "windowed", seg, "image")
    p.connect(seg, "prob", thr, "volume")
    volumes = [np.random.default_rng(i).standard_normal((10 + i, 12, 9)).astype(np.float32)
               for i in range(6)]
    with Runtime(workers=2) as rt:
        jobs = [rt.submit(p, {"win.volume": v}) for v in volumes]
        results = [job.result(timeout=60) for job in jobs]
    assert seg.inference_backend is None  # stop() closed it with the runtime
    for v, result in zip(volumes, results, strict=True):
        windowed = np.clip((v + 2.0) / 4.0, 0.0, 1.0).astype(np.float32)
        prob = seg3d_reference(windowed[None, None])[0, 0]
        mask = result["thr.mask"]
        assert mask.shape == v.shape and mask.dtype == np.uint8
        clear = np.abs(prob - 0.6) > 1e-5  # leave out voxels that rounding may flip
        np.testing.assert_array_equal(mask[clear], (prob > 0.6)[clear])


def test_batch_axes_are_added_and_stripped(cls_net: OnnxNet, seg_net: OnnxNet) -> None:
    p = Pipeline("axes")
    p.add(InferenceOp("cls", model=cls_net.path))
    p.add(InferenceOp("seg", model=seg_net.path))
    image = np.random.default_rng(1).random((32, 32), dtype=np.float32)
    vol = np.random.default_rng(2).random((5, 6, 7), dtype=np.float32)
    with Runtime(workers=0) as rt:
        out = rt.submit(p, {"cls.image": image, "seg.image": vol}).result()
    assert out["cls.probs"].shape == (10,)
    np.testing.assert_allclose(out["cls.probs"],
                               classifier2d_reference(image[None, None], **cls_net.params)[0],
                               rtol=1e-5, atol=1e-6)
    assert out["seg.prob"].shape == (5, 6, 7)
    np.testing.assert_allclose(out["seg.prob"], seg3d_reference(vol[None, None])[0, 0],
                               rtol=1e-5, atol=1e-6)


def test_batch_false_feeds_the_model_shape(cls_net: OnnxNet) -> None:
    p = Pipeline("batched")
    p.add(InferenceOp("cls", model=cls_net.path, batch=False))
    images = np.random.default_rng(3).random((4, 1, 32, 32), dtype=np.float32)
    with Runtime(workers=0) as rt:
        probs = rt.submit(p, {"cls.image": images}).result()["cls.probs"]
    np.testing.assert_allclose(probs, classifier2d_reference(images, **cls_net.params),
                               rtol=1e-5, atol=1e-6)


def test_a_second_runtime_reopens_the_backend(seg_net: OnnxNet) -> None:
    p = Pipeline("twice")
    seg = InferenceOp("seg", model=seg_net.path)
    p.add(seg)
    vol = np.ones((4, 4, 4), np.float32)
    for _ in range(2):
        with Runtime(workers=1) as rt:
            out = rt.submit(p, {"seg.image": vol}).result(timeout=30)
        assert seg.inference_backend is None
        np.testing.assert_allclose(out["seg.prob"], seg3d_reference(vol[None, None])[0, 0],
                                   rtol=1e-5)


def test_sliding_window_covers_a_volume_larger_than_the_model(tmp_path: Path) -> None:
    net = sigmoid3d(tmp_path / "window8.onnx")  # fixed [1, 1, 8, 8, 8] input
    op = InferenceOp("sw", model=net.path,
                     sliding_window={"roi": (8, 8, 8), "overlap": 0.25, "blend": "gaussian"})
    assert op.spec.inputs["image"] == PortSpec("image", shape=(-1, -1, -1))
    assert op.spec.outputs["prob"] == PortSpec("prob", dtype="float32", shape=(-1, -1, -1))
    p = Pipeline("sliding")
    p.add(op)
    vol = np.random.default_rng(4).standard_normal((13, 17, 6))  # float64; one axis < roi
    with Runtime(workers=0) as rt:
        prob = rt.submit(p, {"sw.image": vol}).result()["sw.prob"]
    assert prob.shape == vol.shape and prob.dtype == np.float32
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-vol)), rtol=1e-5, atol=1e-6)


# --- local override and Triton --------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "repository"])
def test_local_override_serves_a_triton_model_from_onnx(tmp_path: Path, layout: str,
                                                        no_local_models: None) -> None:
    target = (tmp_path / "lungs.onnx" if layout == "flat"
              else tmp_path / "lungs" / "2" / "model.onnx")
    seg3d(target)
    seg3d(tmp_path / "lungs" / "1" / "model.onnx", bias=5.0)  # older version: not chosen
    set_local_models(tmp_path)
    op = InferenceOp("seg", model="lungs", url=f"http://127.0.0.1:{closed_port()}")
    op.connections = {"NVIDIA_CLARA_TRTISURI": "127.0.0.1:1"}
    p = Pipeline("local")
    p.add(op)
    backend = op.inference_backend
    assert isinstance(backend, OnnxBackend)
    assert (backend.path, backend.model) == (target, "lungs")
    vol = np.zeros((3, 3, 3), np.float32)
    with Runtime(workers=0) as rt:
        out = rt.submit(p, {"seg.image": vol}).result()
    np.testing.assert_allclose(out["seg.prob"], 0.5)  # bias 0, not the version-1 bias 5


def test_service_connection_selects_triton(tmp_path: Path, no_local_models: None) -> None:
    seg3d(tmp_path / "organs.onnx")
    op = InferenceOp("seg", model="organs")
    op.connections = {"NVIDIA_TRITON_GRPCURI": "127.0.0.1:8001"}  # as build.py sets it
    assert (op._kind(), op._url()) == ("triton", "grpc://127.0.0.1:8001")
    set_local_models(tmp_path)
    Pipeline().add(op)
    assert isinstance(op.inference_backend, OnnxBackend)
    op.stop()


def test_local_override_without_the_file_lists_what_it_tried(tmp_path: Path,
                                                              no_local_models: None) -> None:
    set_local_models(tmp_path)
    with pytest.raises(PipelineError, match=r"no local ONNX file for model 'spleen': tried "
                                            rf"{tmp_path}/spleen\.onnx, "
                                            rf"{tmp_path}/spleen/<version>/model\.onnx"):
        Pipeline().add(InferenceOp("seg", model="spleen", url="http://127.0.0.1:1"))
    with pytest.raises(BackendUnavailableError):
        find_local_model(tmp_path, "spleen")


def test_triton_server_down_fails_at_pipeline_build(no_local_models: None) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(PipelineError, match=rf"^operator 'seg': model 'seg3d' at {url}: .*"
                                            r"the server must be up") as info:
        Pipeline().add(InferenceOp("seg", model="seg3d", url=url))
    assert isinstance(info.value.__cause__, BackendUnavailableError)

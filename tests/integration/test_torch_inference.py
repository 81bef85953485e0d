"""InferenceOp with the torch backend in a real Runtime, sliding windows, and `clara-rt bundle`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, Pipeline, Runtime
from clara_rt.arrays import data_pointer, same_buffer
from clara_rt.bench import checkout_env
from clara_rt.errors import OperatorError, PipelineError

torch = pytest.importorskip("torch")

from clara_rt.operators.inference import InferenceOp  # noqa: E402
from clara_rt.operators.io.nifti import read_nifti, write_nifti  # noqa: E402
from tests.data.torch_models import (  # noqa: E402
    SPATIAL,
    TinyUNet3d,
    make_bundle,
    save_identity,
    save_unet,
)


class _Source(Operator):
    """Emits a float64 volume: wrong dtype for the UNet's port."""

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("out", dtype="float64", shape=(SPATIAL, SPATIAL, SPATIAL))

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        outputs["out"] = np.zeros((SPATIAL,) * 3)


@pytest.fixture(scope="module")
def unet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_unet(tmp_path_factory.mktemp("torch") / "unet.ts")


def _direct(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The reference: the eager (not scripted) module on a ``[N, 1, D, H, W]`` batch."""
    with torch.inference_mode():
        return TinyUNet3d(seed=seed)(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def _run(pipeline: Pipeline, payload: dict[str, Any], workers: int = 2) -> dict[str, Any]:
    with Runtime(workers=workers) as rt:
        return rt.submit(pipeline, payload, timeout=120).result()


def test_inference_op_declares_ports_from_the_model_and_matches_a_direct_call(
        unet_file: Path) -> None:
    p = Pipeline("torch-seg")
    seg = p.add(InferenceOp("seg", model=unet_file))
    assert (seg.spec.inputs["image"].dtype, seg.spec.inputs["image"].shape) == (
        "float32", (SPATIAL,) * 3)
    assert seg.spec.outputs["pred"].shape == (2, SPATIAL, SPATIAL, SPATIAL)
    volume = np.random.default_rng(3).random((SPATIAL,) * 3, dtype=np.float32)
    out = _run(p, {"seg.image": volume})["seg.pred"]
    np.testing.assert_array_equal(out, _direct(volume[None, None])[0])


def test_a_torchscript_file_picks_torch_even_with_a_triton_service(unet_file: Path) -> None:
    from clara_rt.backends.torch import TorchBackend

    op = InferenceOp("seg", model=unet_file)
    op.connections = {"NVIDIA_CLARA_TRTISURI": "127.0.0.1:1"}  # as a YAML services: entry sets
    Pipeline("svc").add(op)
    assert isinstance(op.inference_backend, TorchBackend)
    op.stop()


def test_connecting_a_mismatched_port_fails_at_connect(unet_file: Path) -> None:
    p = Pipeline("torch-connect")
    src, seg = p.add(_Source("src")), p.add(InferenceOp("seg", model=unet_file))
    with pytest.raises(PipelineError, match=r"float64.*float32|float32.*float64"):
        p.connect(src, "out", seg, "image")


def test_numpy_goes_through_the_runtime_without_a_copy(tmp_path: Path) -> None:
    p = Pipeline("torch-identity")
    p.add(InferenceOp("same", model=save_identity(tmp_path / "id.ts")))
    volume = np.random.default_rng(0).random((16, 16, 16), dtype=np.float32)
    out = _run(p, {"same.image": volume})["same.pred"]
    assert same_buffer(out, volume) and data_pointer(out) == data_pointer(volume)


def test_errors_name_the_operator_and_the_file(tmp_path: Path, unet_file: Path) -> None:
    with pytest.raises(PipelineError, match=r"^operator 'seg': TorchScript model file not "
                                            r"found: .*missing\.ts$"):
        Pipeline("e1").add(InferenceOp("seg", model=tmp_path / "missing.ts"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(PipelineError, match=r"^operator 'seg': model 'junk' \(.*junk\.pt\): not "
                                            r"a TorchScript archive"):
        Pipeline("e2").add(InferenceOp("seg", model=junk))
    p = Pipeline("e3")
    p.add(InferenceOp("seg", model=unet_file))
    with pytest.raises(PipelineError, match=r"^payload 'seg\.image' of pipeline 'e3': expected "
                                            r"shape \(32, 32, 32\), got \(16, 16, 16\)"):
        _run(p, {"seg.image": np.zeros((16, 16, 16), np.float32)})
    p = Pipeline("e4")  # no metadata: any [C, D, H, W]; the net itself rejects 3 channels
    p.add(InferenceOp("seg", model=save_unet(tmp_path / "free.ts", metadata=False)))
    with pytest.raises(OperatorError, match=r"^operator 'seg' failed in job .*: BackendError: "
                                            r"model 'free' \(.*free\.ts\): the model raised"):
        _run(p, {"seg.image": np.zeros((3, 8, 8, 8), np.float32)})


def test_sliding_window_batched_matches_one_window_at_a_time(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    volume = np.random.default_rng(1).random((40, 24, 20), dtype=np.float32)
    results, batches = {}, {}
    for size in (1, 4):
        p = Pipeline(f"sw{size}")
        op = p.add(InferenceOp("seg", model=bundle, sliding_window={
            "roi": (16, 16, 16), "overlap": 0.25, "batch_size": size}))
        backend = op.inference_backend
        seen: list[int] = []
        infer = backend.infer

        def counting(inputs: dict[str, Any], outputs: Any = None, seen: list[int] = seen,
                     infer: Any = infer) -> dict[str, Any]:
            seen.append(inputs["image"].shape[0])
            return infer(inputs, outputs)

        backend.infer = counting  # type: ignore[method-assign]
        results[size] = _run(p, {"seg.image": volume}, workers=0)["seg.pred"]
        batches[size] = seen
    windows = 3 * 2 * 2  # starts per axis: 40 -> 0,12,24; 24 -> 0,8; 20 -> 0,4
    assert batches[1] == [1] * windows and batches[4] == [4, 4, 4]
    assert results[4].shape == (2, 40, 24, 20)
    np.testing.assert_allclose(results[4], results[1], rtol=1e-5, atol=1e-6)


def test_sliding_window_of_one_window_equals_the_direct_call(tmp_path: Path) -> None:
    p = Pipeline("sw-one")
    p.add(InferenceOp("seg", model=make_bundle(tmp_path / "b"),
                      sliding_window={"roi": (24, 24, 24), "batch_size": 2}))
    volume = np.random.default_rng(2).random((24, 24, 24), dtype=np.float32)
    out = _run(p, {"seg.image": volume})["seg.pred"]
    np.testing.assert_allclose(out, _direct(volume[None, None])[0], rtol=1e-6, atol=1e-6)


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *map(str, args)],
                          env=checkout_env(), capture_output=True, text=True, timeout=300,
                          check=False)


def test_clara_rt_bundle_writes_a_pipeline_that_validates_and_runs(tmp_path: Path) -> None:
    # seed 2: about 30 % of the voxels are class 1 on this input, so the labels mean something
    bundle = make_bundle(tmp_path / "bundle", roi=SPATIAL, scale=(-1000.0, 1000.0), seed=2)
    rng = np.random.default_rng(4)
    ct = (rng.random((SPATIAL,) * 3) * 2400 - 1200).astype(np.int16)
    (tmp_path / "in").mkdir()
    write_nifti(ct, None, tmp_path / "in" / "ct.nii.gz")
    pipeline = tmp_path / "pipeline.yaml"
    done = _cli("bundle", bundle, "-o", pipeline)
    assert done.returncode == 0, done.stderr
    text = pipeline.read_text()
    assert "not applied here: preprocessing Orientationd" in text
    assert "ScaleIntensityRanged [-1000, 1000] -> [0, 1]" in text
    done = _cli("validate", pipeline)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    (written,) = (tmp_path / "out").rglob("*.nii.gz")
    labels, _ = read_nifti(written)
    volume, _ = read_nifti(tmp_path / "in" / "ct.nii.gz")
    scaled = np.clip((volume.astype(np.float32) + 1000) / 2000, 0, 1)
    expected = _direct(scaled[None, None], seed=2)[0].argmax(axis=0)
    assert labels.shape == (SPATIAL,) * 3 and labels.dtype == np.uint8
    assert 0.1 < expected.mean() < 0.9
    assert (labels == expected).mean() > 0.999  # float rounding of the window may flip a tie


def test_clara_rt_bundle_on_a_dicom_series_writes_nifti_and_a_seg(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from tests.data.chest_dicom import write_chest_series

    bundle = make_bundle(tmp_path / "bundle", roi=SPATIAL, scale=(-1000.0, 1000.0), seed=2)
    files = write_chest_series(tmp_path / "in", shape=(32, 48, 48))
    pipeline = tmp_path / "pipeline.yaml"
    done = _cli("bundle", bundle, "--input", "dicom", "-o", pipeline)
    assert done.returncode == 0, done.stderr
    assert "DicomSeriesLoaderOp" in pipeline.read_text()
    done = _cli("run", pipeline, "--input", tmp_path / "in", "--output", tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    (nifti,) = (tmp_path / "out").rglob("*.nii.gz")
    labels, _ = read_nifti(nifti)
    assert labels.shape == (32, 48, 48) and 0 < labels.sum() < labels.size
    (seg_file,) = (tmp_path / "out").rglob("*.dcm")
    seg = pydicom.dcmread(seg_file)
    source = pydicom.dcmread(files[0])
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == source.StudyInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Lung"]
    assert seg.SeriesDescription == "Tiny UNet bundle (clara-rt)"
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "Tiny UNet bundle"


def test_clara_rt_package_sees_that_a_bundle_pipeline_needs_torch(tmp_path: Path) -> None:
    from clara_rt.package.needs import inspect_pipeline

    pipeline = tmp_path / "pipeline.yaml"
    done = _cli("bundle", make_bundle(tmp_path / "bundle"), "-o", pipeline)
    assert done.returncode == 0, done.stderr
    needs = inspect_pipeline(pipeline)
    assert needs.extras == ("dicom-net", "server", "torch")
    assert needs.reasons["torch"].startswith("operator 'infer' (")


def test_clara_rt_bundle_rejects_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    done = _cli("bundle", tmp_path)
    assert done.returncode == 2
    assert f"not a MONAI bundle: {tmp_path} (no configs/metadata.json)" in done.stderr


@pytest.mark.gpu
def test_cupy_goes_through_torch_on_the_worker_stream_without_a_copy(tmp_path: Path) -> None:
    import cupy

    if not torch.cuda.is_available():
        pytest.skip("this torch build has no CUDA")
    p = Pipeline("torch-gpu-identity")
    p.add(InferenceOp("same", model=save_identity(tmp_path / "id.ts")))
    volume = cupy.random.random((16, 16, 16), dtype=cupy.float32)
    out = _run(p, {"same.image": volume})["same.pred"]
    assert isinstance(out, cupy.ndarray) and data_pointer(out) == data_pointer(volume)
    unet = Pipeline("torch-gpu-unet")
    unet.add(InferenceOp("seg", model=save_unet(tmp_path / "unet.ts"),
                         backend_args={"device": "cuda"}))
    x = cupy.random.random((SPATIAL,) * 3, dtype=cupy.float32)
    got = _run(unet, {"seg.image": x})["seg.pred"]
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(got), _direct(cupy.asnumpy(x)[None, None])[0],
                               rtol=1e-3, atol=1e-4)


def test_bench_inference_compares_torch_and_onnxruntime_on_one_net() -> None:
    pytest.importorskip("onnxruntime")
    from clara_rt.bench._inference import inference

    record = inference(size=16, repeat=1, triton=False)
    assert set(record.figures) == {"torch (direct)", "clara-rt InferenceOp (torch)",
                                   "onnxruntime (direct)", "clara-rt InferenceOp (onnx)"}
    assert all(v > 0 for fig in record.figures.values() for v in fig.values())
    assert "InferenceOp: onnxruntime / torch (same net)" in record.ratios
    assert [t.name for t in record.targets] == [
        "InferenceOp(torch) overhead over the direct call (wall)",
        "InferenceOp(torch) overhead over the direct call (CPU)"]

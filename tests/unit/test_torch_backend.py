"""TorchBackend and MONAI bundle metadata, on TorchScript models the tests script and save."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from clara_rt.arrays import data_pointer
from clara_rt.backends.monai_bundle import load_bundle, parse_network_data_format
from clara_rt.bench import checkout_env
from clara_rt.errors import BackendError, BackendUnavailableError

torch = pytest.importorskip("torch")

from clara_rt.backends import torch as torch_backend  # noqa: E402
from clara_rt.backends.torch import TorchBackend  # noqa: E402
from tests.data.torch_models import (  # noqa: E402
    SPATIAL,
    TinyUNet3d,
    make_bundle,
    save_identity,
    save_unet,
)


@pytest.fixture(scope="module")
def unet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_unet(tmp_path_factory.mktemp("torch") / "unet.ts")


def _volume(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _direct(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return TinyUNet3d()(torch.from_numpy(x)).numpy()


def test_spec_comes_from_the_metadata_stored_in_the_archive(unet_file: Path) -> None:
    backend = TorchBackend(unet_file)
    spec = backend.spec()
    assert [(t.name, t.dtype, t.shape) for t in spec.inputs] == [
        ("image", "float32", (-1, 1, SPATIAL, SPATIAL, SPATIAL))]
    assert [(t.name, t.dtype, t.shape) for t in spec.outputs] == [
        ("pred", "float32", (-1, 2, SPATIAL, SPATIAL, SPATIAL))]
    assert spec.max_batch_size > 0 and spec.platform == "pytorch"
    backend.close()


def test_outputs_equal_calling_the_model_directly(unet_file: Path) -> None:
    backend = TorchBackend(unet_file)
    x = _volume(2, 1, SPATIAL, SPATIAL, SPATIAL)
    out = backend.infer({"image": x})["pred"]
    assert type(out) is np.ndarray and out.shape == (2, 2, SPATIAL, SPATIAL, SPATIAL)
    np.testing.assert_array_equal(out, _direct(x))
    backend.close()


def test_contiguous_numpy_goes_through_without_a_copy(tmp_path: Path) -> None:
    backend = TorchBackend(save_identity(tmp_path / "id.ts"))
    x = _volume(1, 1, 16, 16, 16)
    out = backend.infer({"image": x})["pred"]
    assert data_pointer(out) == data_pointer(x)  # from_numpy in, .numpy() out: one buffer
    frozen = _volume(1, 1, 16, 16, 16)
    frozen.flags.writeable = False  # the runtime freezes shared arrays; from_numpy would warn
    assert data_pointer(backend.infer({"image": frozen})["pred"]) == data_pointer(frozen)
    backend.close()


def test_a_file_without_metadata_is_taken_as_a_3d_net(tmp_path: Path) -> None:
    backend = TorchBackend(save_unet(tmp_path / "plain.pt", metadata=False))
    spec = backend.spec()
    assert [(t.name, t.shape) for t in spec.inputs] == [("image", (-1,) * 5)]
    assert [(t.name, t.shape) for t in spec.outputs] == [("output", (-1,) * 5)]
    x = _volume(1, 1, 8, 8, 8)
    np.testing.assert_array_equal(backend.infer({"image": x})["output"], _direct(x))
    backend.close()


def test_network_data_format_argument_overrides_the_file(unet_file: Path) -> None:
    ndf = {"inputs": {"ct": {"num_channels": 1, "spatial_shape": [16, 16, 16]}},
           "outputs": {"logits": {"num_channels": 2, "spatial_shape": [16, 16, 16]}}}
    backend = TorchBackend(unet_file, network_data_format=ndf)
    assert backend.spec().inputs[0].shape == (-1, 1, 16, 16, 16)
    x = _volume(1, 1, 16, 16, 16)
    np.testing.assert_array_equal(backend.infer({"ct": x})["logits"], _direct(x))
    backend.close()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError,
                       match=r"^TorchScript model file not found: .*nothere\.ts$"):
        TorchBackend(tmp_path / "nothere.ts").spec()


def test_a_file_that_is_not_torchscript(tmp_path: Path) -> None:
    text = tmp_path / "notes.ts"
    text.write_text("not a model")
    with pytest.raises(BackendError, match=r"model 'notes' \(.*notes\.ts\): not a TorchScript "
                                           r"archive \(.*\); save the model with torch\.jit"):
        TorchBackend(text).spec()
    state = tmp_path / "weights.pt"
    torch.save(TinyUNet3d().state_dict(), state)
    with pytest.raises(BackendError, match=r"weights\.pt\): not a TorchScript archive .*"
                                           r"state_dict cannot be run"):
        TorchBackend(state).spec()


def test_a_device_this_torch_cannot_use(unet_file: Path) -> None:
    device = "cuda" if not torch.cuda.is_available() else "nodevice"
    with pytest.raises(BackendError, match=rf"unet\.ts\): bad device '{device}'"):
        TorchBackend(unet_file, device=device).spec()


def test_wrong_input_shape_dtype_and_names(unet_file: Path) -> None:
    backend = TorchBackend(unet_file)
    with pytest.raises(BackendError, match=r"unet\.ts\): input 'image' expects float32\[-1, 1, "
                                           r"32, 32, 32\], got float32\[1, 1, 16, 32, 32\] "
                                           r"\(axis 2 is 16, not 32\)"):
        backend.infer({"image": _volume(1, 1, 16, SPATIAL, SPATIAL)})
    with pytest.raises(BackendError, match=r"\(dtype float64, not float32\)"):
        backend.infer({"image": np.zeros((1, 1, SPATIAL, SPATIAL, SPATIAL))})
    with pytest.raises(BackendError, match=r"missing input 'image'; inputs are: image"):
        backend.infer({"img": _volume(1, 1, 4, 4, 4)})
    with pytest.raises(BackendError, match=r"unknown output\(s\) mask; outputs are: pred"):
        backend.infer({"image": _volume(1, 1, SPATIAL, SPATIAL, SPATIAL)}, ("mask",))
    backend.close()


def test_a_shape_the_layers_reject_is_reported_with_torch_message(tmp_path: Path) -> None:
    backend = TorchBackend(save_unet(tmp_path / "free.ts", metadata=False))
    with pytest.raises(BackendError, match=r"free\.ts\): the model raised: .*"):
        backend.infer({"image": _volume(1, 3, 8, 8, 8)})  # 3 channels into Conv3d(1, ...)
    backend.close()


def test_one_model_per_file_shared_and_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = save_unet(tmp_path / "shared.ts")
    a, b = TorchBackend(path), TorchBackend(path)
    assert a.module is b.module
    x = _volume(1, 1, SPATIAL, SPATIAL, SPATIAL)
    before = a.infer({"image": x})["pred"]
    save_unet(path, seed=1)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    c = TorchBackend(path)
    assert c.module is not a.module
    assert not np.array_equal(c.infer({"image": x})["pred"], before)
    for backend in (a, b, c):
        backend.close()
    assert all(key[0] != str(path) for key in torch_backend._cache.live)
    assert len(torch_backend._cache.idle) <= torch_backend.IDLE_MODELS


def test_concurrent_first_uses_load_once_and_calls_run_in_parallel(unet_file: Path) -> None:
    backends = [TorchBackend(unet_file) for _ in range(4)]
    x = _volume(1, 1, SPATIAL, SPATIAL, SPATIAL)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda b=b: results.append(b.infer({"image": x})["pred"]))
               for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(b.module) for b in backends}) == 1
    expected = _direct(x)
    assert len(results) == 4 and all(np.array_equal(r, expected) for r in results)
    for backend in backends:
        backend.close()


def test_thread_count_leaves_room_for_the_workers(unet_file: Path) -> None:
    backend = TorchBackend(unet_file, threads=1)
    backend.warmup()
    assert torch.get_num_threads() == 1
    backend.close()
    assert torch_backend.default_threads() == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        TorchBackend(unet_file, threads=0)


def test_amp_runs_in_low_precision_and_returns_the_declared_dtype(unet_file: Path) -> None:
    backend = TorchBackend(unet_file, amp=True)
    x = _volume(1, 1, SPATIAL, SPATIAL, SPATIAL)
    out = backend.infer({"image": x})["pred"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _direct(x), atol=0.05)
    backend.close()


def test_bundle_metadata_and_inference_settings(tmp_path: Path) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "b", roi=16))
    assert (bundle.name, bundle.version) == ("Tiny UNet bundle", "0.2.0")
    assert bundle.model_file == tmp_path / "b" / "models" / "model.ts"
    (image,), (pred,) = bundle.inputs, bundle.outputs
    assert (image.format, image.num_channels, image.spatial_shape, image.value_range) == (
        "hounsfield", 1, (-1, -1, -1), (0.0, 1.0))
    assert pred.tensor().shape == (-1, 2, -1, -1, -1)
    s = bundle.inference
    assert (s.roi_size, s.sw_batch_size, s.overlap, s.scale_range, s.argmax) == (
        (16, 16, 16), 4, 0.5, (-1000.0, 1000.0), True)
    assert s.ignored == ("preprocessing Orientationd",)
    backend = TorchBackend(tmp_path / "b")
    assert backend.model == "Tiny UNet bundle" and backend.spec().version == "0.2.0"
    x = _volume(1, 1, 16, 16, 16)
    np.testing.assert_array_equal(backend.infer({"image": x})["pred"], _direct(x))
    backend.close()


def test_a_model_zoo_style_inference_json(tmp_path: Path) -> None:
    """The layout of the model zoo's spleen_ct_segmentation: `$` expressions, `@` references."""
    root = make_bundle(tmp_path / "spleen")
    pre = [{"_target_": "LoadImaged", "keys": "image"},
           {"_target_": "EnsureChannelFirstd", "keys": "image"},
           {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
           {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0]},
           {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164,
            "b_min": 0, "b_max": 1, "clip": True},
           {"_target_": "EnsureTyped", "keys": "image"}]
    post = [{"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing"},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir"}]
    config = {"imports": ["$import glob"], "output_dir": "$@bundle_root + '/eval'",
              "device": "$torch.device('cpu')",
              "preprocessing": {"_target_": "Compose", "transforms": pre},
              "dataset": {"_target_": "Dataset", "transform": "@preprocessing"},
              "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96],
                          "sw_batch_size": 4, "overlap": 0.5},
              "postprocessing": {"_target_": "Compose", "transforms": post}}
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    s = load_bundle(root).inference
    assert (s.roi_size, s.sw_batch_size, s.overlap, s.mode) == ((96, 96, 96), 4, 0.5,
                                                                 "constant")
    assert (s.scale_range, s.argmax) == ((-57.0, 164.0), True)
    assert s.ignored == ("preprocessing Orientationd", "preprocessing Spacingd",
                         "postprocessing Invertd")


def test_bad_bundle_metadata_is_named(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    meta = root / "configs" / "metadata.json"
    meta.write_text(json.dumps({"name": "x"}))
    with pytest.raises(BackendError, match=r"metadata\.json: no 'network_data_format' object"):
        load_bundle(root)
    meta.write_text("{not json")
    with pytest.raises(BackendError, match=r"metadata\.json: cannot be read as a bundle config"):
        load_bundle(root)
    with pytest.raises(BackendError, match=r"network_data_format\.inputs\.image: dtype 'complex'"):
        parse_network_data_format({"inputs": {"image": {"dtype": "complex"}}, "outputs": {
            "pred": {}}}, where="w")
    (root / "models" / "model.ts").unlink()
    meta.write_text(json.dumps({"name": "x", "network_data_format": {}}))
    with pytest.raises(BackendUnavailableError, match=r"bundle 'x' .* has no TorchScript model"):
        load_bundle(root)


_NO_TORCH = """
import sys, tempfile
from pathlib import Path
import clara_rt, clara_rt.backends, clara_rt.operators.inference
from clara_rt.cli import build_parser
build_parser()
from clara_rt.server.app import Server, create_app
from clara_rt.server.config import ServerConfig
data = Path(tempfile.mkdtemp())
create_app(ServerConfig(data=data))
Server(ServerConfig(data=data, monitor_interval=60)).close()
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_clara_rt_and_the_server_never_import_torch() -> None:
    pytest.importorskip("fastapi")
    done = subprocess.run([sys.executable, "-c", _NO_TORCH], env=checkout_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout

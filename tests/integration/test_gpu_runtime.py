"""The CuPy path: streams per worker, event hand-off, zero copy on the device; device choice.

The ``gpu`` tests run whenever CuPy finds a CUDA device; without one they are skipped. The
device-choice tests run everywhere: on a machine without a GPU they check, for real, that asking
for ``cuda`` is a clear error and that ``auto`` runs on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clara_rt import Operator, Pipeline, Runtime
from clara_rt.arrays import cuda_available, data_pointer, get_array_module
from clara_rt.bench import checkout_env
from clara_rt.definition.build import build_pipeline
from clara_rt.definition.schema import parse_definition
from clara_rt.errors import DefinitionError, DeviceUnavailableError

ROOT = Path(__file__).resolve().parents[2]
CT_LUNG_SEG = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"


class _Heavy(Operator):
    """out = sin(in) * k + 1, repeated so kernels take long enough to expose a missing sync."""

    k = 1.0
    rounds = 20

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,), device="cuda")
        spec.output("out", dtype="float32", shape=(-1,), device="cuda")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        x = inputs["in"]
        outputs["out"] = _heavy(x, self.k, self.rounds)


class _Sum(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("a", dtype="float32", shape=(-1,), device="cuda")
        spec.input("b", dtype="float32", shape=(-1,), device="cuda")
        spec.output("out", dtype="float32", shape=(-1,), device="cuda")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = inputs["a"] + inputs["b"]


def _heavy(x: Any, k: float, rounds: int) -> Any:
    xp = get_array_module(x)
    for _ in range(rounds):
        x = xp.sin(x) * k + 1
    return x.astype(xp.float32)


def _expected(x: Any, k1: float, k2: float, rounds: int) -> np.ndarray:
    """The same float32 kernels called directly, on one stream, with no runtime in between.

    Elementwise CuPy kernels are deterministic, so a job must match this bit for bit: any
    difference is a missing wait between streams. (A float64 NumPy reference cannot be matched
    tightly: ``x -> 2 sin x + 1`` amplifies a 1-ulp difference between CUDA's and libm's ``sin``
    by up to 2 per round, to about 1e-4 after 20 rounds.)
    """
    import cupy

    out = _heavy(x, k1, rounds) + _heavy(x, k2, rounds)
    cupy.cuda.get_current_stream().synchronize()
    return cupy.asnumpy(out)


@pytest.mark.gpu
def test_gpu_diamond_many_jobs_matches_numpy() -> None:
    import cupy

    p = Pipeline("gpu-diamond")
    left, right, total = p.add(_Heavy("l", k=0.5)), p.add(_Heavy("r", k=2.0)), p.add(_Sum("s"))
    p.connect(left, "out", total, "a")
    p.connect(right, "out", total, "b")
    rng = np.random.default_rng(0)
    hosts = [rng.random(1 << 20, dtype=np.float32) for _ in range(8)]
    expected = [_expected(cupy.asarray(h), 0.5, 2.0, 20) for h in hosts]
    with Runtime(workers=4) as rt:
        jobs = []
        for i in range(64):
            x = cupy.asarray(hosts[i % 8])  # made on this thread's stream just before submit
            jobs.append((rt.submit(p, {"l.in": x, "r.in": x}), i % 8))
        for job, k in jobs:
            got = cupy.asnumpy(job.result()["s.out"])
            np.testing.assert_array_equal(got, expected[k])


@pytest.mark.gpu
def test_gpu_zero_copy_pointer_identity() -> None:
    import cupy

    class Pass(Operator):
        def setup(self, spec: Any) -> None:
            spec.input("in", device="cuda")
            spec.output("out", device="cuda")

        def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
            outputs["out"] = inputs["in"]

    p = Pipeline("gpu-pass")
    a, b = p.add(Pass("a")), p.add(Pass("b"))
    p.connect(a, "out", b, "in")
    x = cupy.arange(1 << 16, dtype=cupy.float32)
    with Runtime(workers=2) as rt:
        out = rt.run(p, {"a.in": x})["b.out"]
    assert out is x and data_pointer(out) == x.data.ptr


# --- choosing the device for a whole pipeline ------------------------------------------------


def _with_device(tmp_path: Path, device: str) -> Path:
    """ct-lung-seg with a pipeline-level ``clara-rt: {device: ...}`` (written next to it)."""
    text = CT_LUNG_SEG.read_text().replace("name: ct-lung-seg\n",
                                           f"name: ct-lung-seg\nclara-rt: {{device: {device}}}\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_pipeline_device_reaches_the_reader_and_auto_follows_the_machine(tmp_path: Path) -> None:
    expected = "cuda" if cuda_available() else "cpu"
    auto = build_pipeline(parse_definition(_with_device(tmp_path, "auto")))
    assert auto.device == expected and auto.definition.device == "auto"
    assert auto.pipeline.operator("dicom-reader").device == expected  # type: ignore[attr-defined]
    forced = build_pipeline(parse_definition(_with_device(tmp_path, "auto")), device="cpu")
    assert forced.device == "cpu"
    assert forced.pipeline.operator("dicom-reader").device == "cpu"  # type: ignore[attr-defined]
    plain = build_pipeline(parse_definition(CT_LUNG_SEG))
    assert plain.device == "cpu" and plain.definition.device is None


def test_a_pipeline_device_outside_the_choices_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"pipeline.yaml:6:\d+: expected one of cpu, cuda, "
                                              r"auto for 'device' .* got 'gpu'"):
        parse_definition(_with_device(tmp_path, "gpu"))


def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    if cuda_available():
        pytest.skip("this machine has a GPU: test_ct_lung_seg_on_the_gpu covers --device cuda")
    with pytest.raises(DeviceUnavailableError, match=r"^device 'cuda' was asked for, but "):
        build_pipeline(parse_definition(_with_device(tmp_path, "cuda")))
    (tmp_path / "in").mkdir()
    proc = subprocess.run([sys.executable, "-m", "clara_rt.cli", "run", str(CT_LUNG_SEG),
                           "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                           "--device", "cuda"], cwd=ROOT, env=checkout_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("clara-rt: error: device 'cuda' was asked for, but ")
    assert "Traceback" not in proc.stderr and "'auto'" in proc.stderr


def test_run_reports_the_device_it_ran_on(tmp_path: Path) -> None:
    from tests.data.chest_dicom import write_chest_series

    write_chest_series(tmp_path / "in", shape=(16, 48, 48))
    proc = subprocess.run([sys.executable, "-m", "clara_rt.cli", "run", str(CT_LUNG_SEG),
                           "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                           "--device", "auto", "--json"], cwd=ROOT, env=checkout_env(),
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["state"] == "succeeded"
    assert report["device"].startswith("cuda (") if cuda_available() else report["device"] == "cpu"


# --- whole pipelines with the volume on the GPU ----------------------------------------------


def _run_built(built: Any, input_dir: Path, workspace: Path) -> dict[str, Any]:
    with Runtime(workers=4) as rt:
        job = rt.submit(built.pipeline, built.payload_for(input_dir), workspace=workspace)
        return job.result(timeout=600)  # type: ignore[no-any-return]


def _copies(before: Any, after: Any) -> tuple[int, int]:
    return (after.host_to_device - before.host_to_device,
            after.device_to_host - before.device_to_host)


@pytest.mark.gpu
def test_ct_lung_seg_on_the_gpu_copies_to_the_host_once_per_writer(tmp_path: Path) -> None:
    from clara_rt.arrays import transfer_counters
    from tests.data.chest_dicom import write_chest_series

    write_chest_series(tmp_path / "in")
    definition = parse_definition(CT_LUNG_SEG)
    on_cpu = _run_built(build_pipeline(definition, device="cpu"), tmp_path / "in", tmp_path / "c")
    built = build_pipeline(definition, device="cuda")
    assert built.device == "cuda"
    before = transfer_counters()
    on_gpu = _run_built(built, tmp_path / "in", tmp_path / "g")
    # in: the reader's one upload; out: SEG, NIfTI, the PNG planes (packed) and the stats table
    assert _copies(before, transfer_counters()) == (1, 4)
    cpu_stats, gpu_stats = on_cpu["volumes.stats"], on_gpu["volumes.stats"]
    assert sorted(cpu_stats) == sorted(gpu_stats)
    for label, row in cpu_stats.items():
        got = gpu_stats[label]
        assert (got.voxels, got.bbox) == (row.voxels, row.bbox)  # the same masks
        assert got.mean == pytest.approx(row.mean, rel=1e-9)


@pytest.mark.gpu
def test_chestxray_preprocessing_stays_on_the_gpu() -> None:
    import cupy

    from clara_rt.arrays import transfer_counters
    from clara_rt.operators.preprocess import NormalizeOp, Resize2DOp

    p = Pipeline("chestxray-pre")
    norm = p.add(NormalizeOp("n", mode="minmax", ndim=2))
    resize = p.add(Resize2DOp("r", size=(32, 32)))
    p.connect(norm, "normalized", resize, "image")
    image = np.random.default_rng(5).integers(0, 4096, (300, 250)).astype(np.uint16)
    with Runtime(workers=2) as rt:
        expected = rt.run(p, {"n.volume": image})["r.resized"]
        device_image = cupy.asarray(image)
        before = transfer_counters()
        got = rt.run(p, {"n.volume": device_image})["r.resized"]
        assert _copies(before, transfer_counters()) == (0, 0)
    assert isinstance(got, cupy.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(cupy.asnumpy(got), expected, rtol=0, atol=1e-5)


# --- clara-rt bench gpu ----------------------------------------------------------------------


def test_bench_gpu_without_a_gpu_says_so_and_exits_2() -> None:
    if cuda_available():
        pytest.skip("this machine has a GPU: make gpu-check runs clara-rt bench gpu")
    proc = subprocess.run([sys.executable, "-m", "clara_rt.cli", "bench", "gpu", "--json"],
                          cwd=ROOT, env=checkout_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "clara-rt: error: bench gpu needs a CUDA device, but " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_gpu_measurements_run_on_numpy_arrays_too() -> None:
    """The chain, concurrency and ct-lung-seg job helpers are array-agnostic: run them small."""
    from clara_rt.bench import _gpu
    from clara_rt.bench._chest import chest_series

    volume = np.random.default_rng(6).integers(-1100, 500, (8, 32, 32)).astype(np.int16)
    value = volume
    for f in _gpu.chain_functions():
        value = f(value)
    with Runtime(workers=2) as rt:
        got = rt.run(_gpu.chain_pipeline_of_functions(), {"f0.in": volume})["f3.out"]
        assert int(got) == int(value) > 0
        wall: dict[str, float] = {}
        built = build_pipeline(parse_definition(CT_LUNG_SEG), device="cpu")
        times = _gpu._lung_job(rt, built, chest_series((16, 48, 48)), wall)
    assert wall["last"] > 0 and set(times) >= {"lung-seg_ms", "seg-writer_ms", "render_ms"}
    figures: dict[str, dict[str, float]] = {}
    ratios: dict[str, float] = {}
    targets: list[Any] = []
    _gpu._chain(figures, ratios, targets, volume, 3, 1)
    _gpu._concurrency(figures, ratios, targets, volume, 4)
    assert {"4-op chain, one job", "4-op chain, direct calls"} <= set(figures)
    assert [t.name for t in targets] == ["chain overhead over direct calls",
                                         "4 workers / 1 worker"]
    assert all(v > 0 for v in ratios.values())


@pytest.mark.gpu
def test_chestxray_classify_on_the_gpu_uploads_the_image_and_downloads_the_model_input(
        tmp_path: Path) -> None:
    import importlib.util

    from clara_rt.arrays import transfer_counters
    from tests.conftest import need_peer
    from tests.data import onnx_models

    for module in ("onnx", "onnxruntime"):
        need_peer(importlib.util.find_spec(module) is not None, f"{module} (pip install {module})")
    model = onnx_models.centre_classifier(tmp_path / "model.onnx")
    folder = onnx_models.write_xray_png(tmp_path / "in", "bright").parent
    definition = parse_definition(ROOT / "examples" / "chestxray-classify" / "pipeline.yaml",
                                  variables={"MODEL": str(model)})
    on_cpu = _run_built(build_pipeline(definition, device="cpu"), folder, tmp_path / "c")
    built = build_pipeline(definition, device="cuda")
    before = transfer_counters()
    on_gpu = _run_built(built, folder, tmp_path / "g")
    # in: the reader's upload; out: the resized model input (the classifier runs on the host)
    assert _copies(before, transfer_counters()) == (1, 1)
    key = next(k for k in on_cpu if k.endswith(".probs"))
    np.testing.assert_allclose(on_gpu[key], on_cpu[key], rtol=0, atol=1e-5)


def test_server_jobs_choose_their_device(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from clara_rt.client import ClientError
    from tests.data.chest_dicom import write_chest_series
    from tests.server_process import ServerProcess

    write_chest_series(tmp_path / "in", shape=(16, 48, 48))
    with ServerProcess(tmp_path / "data", "--workers", "2") as server:
        client = server.client()
        client.create_pipeline(CT_LUNG_SEG)
        payload = client.create_payload(tmp_path / "in")["id"]
        body = {"pipeline": "ct-lung-seg", "payloads": [payload], "start": True}
        job = client._json("POST", "/v1/jobs", {**body, "device": "auto"})
        assert job["device"] == "auto"
        done = client.wait_job(job["id"], timeout=120)
        assert (done["status"], done["error"], done["device"]) == ("healthy", None, "auto")
        with pytest.raises(ClientError, match=r"device must be|Input should be") as bad:
            client._json("POST", "/v1/jobs", {**body, "device": "gpu"})
        assert bad.value.status == 422
        if not cuda_available():
            with pytest.raises(ClientError, match=r"device 'cuda' was asked for, but ") as no:
                client._json("POST", "/v1/jobs", {**body, "device": "cuda"})
            assert no.value.status == 422

"""The ``gpu`` scenario: the CuPy path against the NumPy path and direct calls, in one run.

Four measurements, each with its baseline in the same process:

* **hops**: a 10-stage no-op chain carrying a CuPy array vs the same chain carrying a NumPy
  array, ``Runtime(workers=1)``, one job in flight; per hop = ``start(op i+1) - end(op i)``.
  Target: CuPy p50 <= NumPy p50 + 1 us.
* **chain**: window -> z-score -> threshold -> count on a CuPy int16 volume (300x512x512): one
  job at a time vs the same four functions called directly on the caller's stream, both
  synchronised at the end. Target: overhead <= 2 %.
* **concurrency**: many jobs of that chain submitted at once to ``Runtime(workers=4)`` vs
  ``workers=1`` (and direct sequential calls). Target: 4 workers >= 1.8x one.
* **ct-lung-seg** on the chest phantom (256x512x512) written as DICOM: the whole job on a warm
  runtime with ``device: cuda`` vs ``device: cpu`` (per-operator times from ``job.timings``),
  and ``segment_lungs`` (LungThresholdOp) alone on both, whose masks must be identical.
  Targets: job >= 5x, LungThresholdOp >= 50x.

Without a CUDA device the scenario raises :class:`~clara_rt.errors.DeviceUnavailableError`
(``clara-rt bench gpu`` prints it and exits 2). The record's ``machine`` names the GPU, driver,
CUDA runtime and CuPy versions.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.arrays import cuda_available, get_array_module, no_cuda_reason
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _collected, chain_pipeline
from clara_rt.errors import DeviceUnavailableError
from clara_rt.executor import Runtime
from clara_rt.job import Context
from clara_rt.operator import Inputs, Operator, OperatorSpec, Outputs
from clara_rt.pipeline import Pipeline

__all__ = ["chain_functions", "gpu", "gpu_info"]

_CT_LUNG_SEG = Path(__file__).resolve().parents[2] / "examples" / "ct-lung-seg" / "pipeline.yaml"
_WINDOW = (-1000.0, 400.0)


def gpu(hop_jobs: int = 2000, stages: int = 10,
        chain_shape: tuple[int, int, int] = (300, 512, 512), chain_jobs: int = 20,
        concurrent: int = 32, lung_shape: tuple[int, int, int] = (256, 512, 512), *,
        repeat: int = 1, progress: Progress | None = None) -> BenchRecord:
    """Run the four GPU measurements (see the module docstring) and return their record.

    Raises:
        DeviceUnavailableError: CuPy finds no CUDA device here.
    """
    if not cuda_available():
        raise DeviceUnavailableError(f"bench gpu needs a CUDA device, but {no_cuda_reason()}; "
                                     "nothing was measured")
    import cupy

    say = progress or _quiet
    figures: dict[str, dict[str, float]] = {}
    ratios: dict[str, float] = {}
    targets: list[Target] = []
    say("gpu: hops, NumPy vs CuPy payload")
    _hops(figures, ratios, targets, hop_jobs, stages, repeat)
    rng = np.random.default_rng(0)
    volume = cupy.asarray(rng.integers(-1100, 500, chain_shape, dtype=np.int16))
    say(f"gpu: 4-operator chain on {chain_shape}, job vs direct calls")
    _chain(figures, ratios, targets, volume, chain_jobs, repeat)
    say(f"gpu: {concurrent} concurrent chain jobs, 1 vs 4 workers")
    _concurrency(figures, ratios, targets, volume, concurrent)
    del volume
    say(f"gpu: ct-lung-seg on the {lung_shape} chest phantom, GPU vs CPU (the CPU run is long)")
    _lungs(figures, ratios, targets, lung_shape, say)
    return BenchRecord(
        scenario="gpu",
        title=f"CuPy path: hops ({stages} stages), 4-op chain on {chain_shape}, {concurrent} "
              f"concurrent jobs, ct-lung-seg on {lung_shape}",
        machine={**machine_info(), **gpu_info()},
        params={"hop_jobs": hop_jobs, "stages": stages, "chain_shape": list(chain_shape),
                "chain_jobs": chain_jobs, "concurrent": concurrent,
                "lung_shape": list(lung_shape), "repeat": repeat},
        figures=figures, ratios=ratios, targets=tuple(targets),
        notes="hops alternate NumPy and CuPy rounds on one runtime each; chain and job times "
              "end with the device synchronised; the CPU ct-lung-seg uses every core.")


def gpu_info() -> dict[str, Any]:
    """Name, memory and compute capability of the current GPU; driver, CUDA and CuPy versions."""
    import cupy

    runtime = cupy.cuda.runtime
    props = runtime.getDeviceProperties(runtime.getDevice())
    name = props["name"]
    info: dict[str, Any] = {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "gpu_memory_gib": round(int(props["totalGlobalMem"]) / 2**30, 1),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "cuda_driver": runtime.driverGetVersion(), "cuda_runtime": runtime.runtimeGetVersion(),
        "cupy": cupy.__version__,
    }
    try:
        import importlib.metadata

        info["numba"] = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        info["numba"] = None
    return info


def chain_functions() -> list[Callable[[Any], Any]]:
    """The chain's four steps as plain functions (window, z-score, threshold, count)."""
    from clara_rt.operators.kernels import window
    from clara_rt.operators.preprocess.normalize import normalize
    return [lambda v: window(v, *_WINDOW), lambda v: normalize(v, "zscore"),
            lambda v: (v > 0.5).view(np.uint8),
            lambda v: get_array_module(v).asarray(get_array_module(v).count_nonzero(v))]


def chain_pipeline_of_functions(name: str = "gpu-chain") -> Pipeline:
    """``f0 -> f1 -> f2 -> f3`` of :func:`chain_functions`, one operator each; payload ``f0.in``."""
    pipe = Pipeline(name)
    ops = [pipe.add(_FunctionOp(f"f{i}", func=f)) for i, f in enumerate(chain_functions())]
    for a, b in itertools.pairwise(ops):
        pipe.connect(a, "out", b, "in")
    return pipe


class _FunctionOp(Operator):
    """One array in, ``func(array)`` out (any device, dtype and rank)."""

    def __init__(self, name: str, /, *, func: Callable[[Any], Any]) -> None:
        super().__init__(name)
        self.func = func

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("in")
        spec.output("out")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        outputs["out"] = self.func(inputs["in"])


# --- private: the measurements -------------------------------------------------------------


def _hops(figures: dict[str, dict[str, float]], ratios: dict[str, float], targets: list[Target],
          jobs: int, stages: int, repeat: int) -> None:
    import cupy

    pipe = chain_pipeline(stages, "gpu-hops")
    payloads = {"NumPy": np.zeros(1024, np.float32), "CuPy": cupy.zeros(1024, cupy.float32)}
    gaps: dict[str, list[int]] = {k: [] for k in payloads}
    with Runtime(workers=1) as rt:
        for _ in range(repeat):
            for kind, payload in payloads.items():
                gaps[kind] += _hop_gaps(rt, pipe, payload, jobs)
    p50 = {}
    for kind, found in gaps.items():
        us = np.asarray(found, dtype=np.float64) / 1000.0
        p50[kind] = float(np.percentile(us, 50))
        figures[f"hop, {kind} array"] = {"p50_us": p50[kind],
                                         "p99_us": float(np.percentile(us, 99))}
    ratios["hop p50 NumPy / CuPy"] = _ratio(p50["NumPy"], p50["CuPy"])
    targets.append(Target("CuPy hop p50 - NumPy hop p50", p50["CuPy"] - p50["NumPy"], 1.0,
                          "us"))


def _hop_gaps(rt: Runtime, pipe: Pipeline, payload: Any, jobs: int) -> list[int]:
    names = [op.name for op in pipe.operators]
    for _ in range(100):
        rt.submit(pipe, {"op0.in": payload}).result()
    gaps: list[int] = []
    with _collected():
        for _ in range(jobs):
            job = rt.submit(pipe, {"op0.in": payload})
            job.result()
            spans = [job.timings[n] for n in names]
            gaps += [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    return gaps


def _chain(figures: dict[str, dict[str, float]], ratios: dict[str, float],
           targets: list[Target], volume: Any, jobs: int, repeat: int) -> None:
    pipe = chain_pipeline_of_functions()
    funcs = chain_functions()
    sync = _synchronizer(volume)
    job_ms: list[float] = []
    direct_ms: list[float] = []
    with Runtime(workers=1) as rt:
        for warm in (True, False):
            for _ in range(1 if warm else jobs * repeat):
                t0 = time.perf_counter()
                rt.submit(pipe, {"f0.in": volume}).result()  # synchronised by the runtime
                t1 = time.perf_counter()
                value = volume
                for f in funcs:
                    value = f(value)
                sync()
                t2 = time.perf_counter()
                if not warm:
                    job_ms.append((t1 - t0) * 1e3)
                    direct_ms.append((t2 - t1) * 1e3)
    job, direct = float(np.percentile(job_ms, 50)), float(np.percentile(direct_ms, 50))
    figures["4-op chain, one job"] = {"p50_ms": job}
    figures["4-op chain, direct calls"] = {"p50_ms": direct}
    ratios["chain direct / job p50"] = _ratio(direct, job)
    targets.append(Target("chain overhead over direct calls", (job / direct - 1) * 100, 2.0, "%"))


def _concurrency(figures: dict[str, dict[str, float]], ratios: dict[str, float],
                 targets: list[Target], volume: Any, jobs: int) -> None:
    pipe = chain_pipeline_of_functions("gpu-concurrent")
    funcs, sync = chain_functions(), _synchronizer(volume)
    rate: dict[str, float] = {}
    t0 = time.perf_counter()
    for _ in range(jobs):
        value = volume
        for f in funcs:
            value = f(value)
    sync()
    rate["direct sequential"] = jobs / (time.perf_counter() - t0)
    for workers in (1, 4):
        with Runtime(workers=workers) as rt:
            rt.submit(pipe, {"f0.in": volume}).result()
            t0 = time.perf_counter()
            submitted = [rt.submit(pipe, {"f0.in": volume}) for _ in range(jobs)]
            for job in submitted:
                job.result()
            rate[f"{workers} worker(s)"] = jobs / (time.perf_counter() - t0)
    for name, value in rate.items():
        figures[f"{jobs} chain jobs, {name}"] = {"jobs_per_s": value}
    ratios["4 workers / 1 worker jobs/s"] = _ratio(rate["4 worker(s)"], rate["1 worker(s)"])
    ratios["4 workers / direct sequential jobs/s"] = _ratio(rate["4 worker(s)"],
                                                            rate["direct sequential"])
    targets.append(Target("4 workers / 1 worker", ratios["4 workers / 1 worker jobs/s"], 1.8,
                          "x", True))


def _lungs(figures: dict[str, dict[str, float]], ratios: dict[str, float],
           targets: list[Target], shape: tuple[int, int, int], say: Progress) -> None:
    from clara_rt.bench._chest import chest_series
    from clara_rt.definition.build import build_pipeline
    from clara_rt.definition.schema import parse_definition

    big, small = chest_series(shape), chest_series((32, 64, 64))
    definition = parse_definition(_CT_LUNG_SEG)
    wall: dict[str, float] = {}
    for device in ("cuda", "cpu"):
        built = build_pipeline(definition, device=device)
        with Runtime(workers=4) as rt:
            _lung_job(rt, built, small, None)  # warm: imports, kernels compiled, pools filled
            say(f"gpu: ct-lung-seg job on {device}")
            times = _lung_job(rt, built, big, wall)
        figures[f"ct-lung-seg job, {device}"] = {"wall_ms": wall["last"], **times}
        wall[device] = wall["last"]
    ratios["ct-lung-seg job cpu / cuda"] = _ratio(wall["cpu"], wall["cuda"])
    targets.append(Target("ct-lung-seg job cpu / cuda", ratios["ct-lung-seg job cpu / cuda"],
                          5.0, "x", True))
    _lung_op(figures, ratios, targets, big, say)


def _lung_job(rt: Runtime, built: Any, folder: Path,
              wall: dict[str, float] | None) -> dict[str, float]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="clara-rt-bench-gpu-") as work:
        t0 = time.perf_counter()
        job = rt.submit(built.pipeline, built.payload_for(folder), workspace=work)
        job.result(timeout=1800)
        if wall is not None:
            wall["last"] = (time.perf_counter() - t0) * 1e3
    return {f"{name}_ms": (end - start) / 1e6 for name, (start, end) in job.timings.items()}


def _lung_op(figures: dict[str, dict[str, float]], ratios: dict[str, float],
             targets: list[Target], folder: Path, say: Progress) -> None:
    import cupy

    from clara_rt.operators.io.dicom_series import load_series
    from clara_rt.operators.segment.lung_threshold import segment_lungs
    host, meta = load_series(folder)
    device = cupy.asarray(host)
    middle = device.shape[0] // 2
    segment_lungs(device[max(0, middle - 8):middle + 8], meta)  # warm the CuPy kernels
    cupy.cuda.get_current_stream().synchronize()
    t0 = time.perf_counter()
    on_gpu = segment_lungs(device, meta)
    cupy.cuda.get_current_stream().synchronize()
    gpu_ms = (time.perf_counter() - t0) * 1e3
    say("gpu: segment_lungs on the CPU")
    t0 = time.perf_counter()
    on_cpu = segment_lungs(host, meta)
    cpu_ms = (time.perf_counter() - t0) * 1e3
    same = bool(np.array_equal(cupy.asnumpy(on_gpu.labels), on_cpu.labels))
    figures["LungThresholdOp (segment_lungs), cuda"] = {"ms": gpu_ms, "masks_equal": float(same)}
    figures["LungThresholdOp (segment_lungs), cpu"] = {"ms": cpu_ms}
    ratios["LungThresholdOp cpu / cuda"] = _ratio(cpu_ms, gpu_ms)
    targets.append(Target("LungThresholdOp cpu / cuda", ratios["LungThresholdOp cpu / cuda"],
                          50.0, "x", True))
    targets.append(Target("LungThresholdOp masks equal on cpu and cuda", float(same), 1.0, "",
                          True))


def _synchronizer(array: Any) -> Callable[[], None]:
    """Return a function that waits for the current stream's work (a no-op for NumPy)."""
    if get_array_module(array) is np:
        return lambda: None
    import cupy

    return lambda: cupy.cuda.get_current_stream().synchronize()

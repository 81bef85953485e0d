"""The ``inference`` scenario: in-process torch and ONNX Runtime, then Triton if one is up.

**In process** (needs torch; ONNX Runtime too for its rows): one 3-D UNet
(:mod:`clara_rt.bench._unet3d`, 8/16 channels) scripted to TorchScript and exported to ONNX with
the same weights, on a ``size^3`` float32 volume (96 by default). Each round times one
inference through:

* ``torch (direct)``: ``module(torch.from_numpy(x[None, None]))`` under ``inference_mode`` and
  ``.numpy()`` -- what a script would write, on the very module clara-rt loaded;
* ``clara-rt InferenceOp (torch)``: a one-operator pipeline on ``Runtime(workers=1)``, submit and
  ``job.result()`` (ports checked, batch axes added and stripped, a worker thread);
* ``onnxruntime (direct)``: ``session.run`` on the same session clara-rt's backend opened;
* ``clara-rt InferenceOp (onnx)``: the same pipeline with the ONNX file.

torch runs with clara-rt's thread count and ONNX Runtime with its backend's (half the cores
each), so the engines compare like for like. Target: InferenceOp(torch) overhead over the direct
call <= 3 %.

**Triton** (``url`` or ``CLARA_RT_TRITON_URL``, default ``http://127.0.0.1:8000``, the
``double`` model ``x`` FP32 ``[-1, -1]`` -> ``2x``); without a reachable server its rows are
left out and the note says why. For each input size (1 MiB and 64 MiB of FP32 by default) each
round times one request through:

* ``tritonclient (http binary)``: ``InferInput.set_data_from_numpy`` + ``client.infer`` +
  ``as_numpy`` -- what a script would write;
* ``clara-rt (http binary)``: ``TritonBackend.infer`` with ``shared_memory="none"`` (spec check,
  input validation, thread-local client, same payload);
* ``clara-rt (system shm)``: ``TritonBackend.infer`` with ``shared_memory="system"`` (inputs and
  outputs through ``/dev/shm``; outputs copied out).

Figures are medians in ms. Targets: backend overhead over the bare call <= 5 % per size.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.errors import BackendError

__all__ = ["inference"]

BARE, BINARY, SHM = "tritonclient (http binary)", "clara-rt (http binary)", "clara-rt (system shm)"
TORCH, TORCH_OP = "torch (direct)", "clara-rt InferenceOp (torch)"
ORT, ORT_OP = "onnxruntime (direct)", "clara-rt InferenceOp (onnx)"

_Figures = dict[str, dict[str, float]]


def inference(url: str | None = None, model: str = "double", sizes_mb: tuple[int, ...] = (1, 64),
              repeat: int = 10, *, size: int = 96, in_process: bool = True,
              triton: bool = True, progress: Progress | None = None) -> BenchRecord:
    """Time the in-process engines on a ``size^3`` UNet, then Triton requests.

    Args:
        url: Triton's HTTP URL; ``CLARA_RT_TRITON_URL`` or ``http://127.0.0.1:8000`` when None.
        model: A Triton model taking ``x`` FP32 ``[1, n]`` and returning ``y`` of that shape.
        sizes_mb: Triton input sizes in MiB.
        repeat: Rounds (in process, and for the largest Triton size; smaller sizes get
            proportionally more, up to 16x).
        size: Edge of the in-process volume.
        in_process: Measure torch and ONNX Runtime in this process.
        triton: Measure Triton (when reachable).
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    url = url or os.environ.get("CLARA_RT_TRITON_URL", "http://127.0.0.1:8000")
    params: dict[str, Any] = {"size": size, "url": url, "model": model,
                              "sizes_mb": list(sizes_mb), "repeat": repeat}
    figures: _Figures = {}
    ratios: dict[str, float] = {}
    targets: list[Target] = []
    notes: list[str] = []
    if in_process:
        figures, ratios, targets, notes = _in_process(size, repeat, say)
    if triton:
        t_figures, t_ratios, t_targets, t_note = _triton(url, model, sizes_mb, repeat, say)
        figures.update(t_figures)
        ratios.update(t_ratios)
        targets.extend(t_targets)
        notes.append(t_note)
    title = (f"one inference of a 3-D UNet on {size}^3 in process (torch, ONNX Runtime), and "
             f"one '{model}' Triton request of {sizes_mb} MiB; medians in ms")
    return BenchRecord("inference", title, machine_info(), params, figures, ratios,
                       tuple(targets), notes=" ".join(notes))


# --- in process -----------------------------------------------------------------------------


def _in_process(size: int, repeat: int, say: Progress
                ) -> tuple[_Figures, dict[str, float], list[Target], list[str]]:
    try:
        import torch

        from clara_rt.bench._unet3d import write_models
    except ImportError:
        return {}, {}, [], ["In-process part not measured: torch is not installed "
                            "(pip install 'clara-rt[torch]')."]
    from clara_rt import Pipeline, Runtime

    # mapped from operators/ (see cli), so imported by name
    from clara_rt.operators.inference import InferenceOp

    x = np.random.default_rng(size).random((size,) * 3, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="clara-rt-bench-") as tmp:
        say("inference: scripting the UNet and exporting it to ONNX")
        ts, onnx_path = write_models(Path(tmp), size)
        pipelines = {TORCH_OP: _one_op(Pipeline, InferenceOp, ts)}
        notes = []
        if onnx_path is None or not _has_onnxruntime():
            notes.append("ONNX Runtime rows left out: onnx or onnxruntime is not installed.")
        else:
            pipelines[ORT_OP] = _one_op(Pipeline, InferenceOp, onnx_path)
        with Runtime(workers=1) as rt:
            systems: dict[str, Callable[[], Any]] = {}
            for name, (pipeline, op) in pipelines.items():
                systems[name] = partial(_submit, rt, pipeline, x)
                direct = (partial(_torch_call, torch, op.inference_backend.module, x)
                          if name == TORCH_OP else
                          partial(_ort_call, op.inference_backend.session, x))
                systems[TORCH if name == TORCH_OP else ORT] = direct
            cpu: dict[str, float] = {}
            times = _rounds(systems, repeat, f"{size}^3 UNet", say, cpu)
        for _pipeline, op in pipelines.values():
            op.stop()
    figures = {name: {f"{size}^3_ms": t * 1e3, "cpu_ms": cpu[name] * 1e3}
               for name, t in times.items()}
    overhead = (times[TORCH_OP] / times[TORCH] - 1) * 100
    cpu_overhead = (cpu[TORCH_OP] / cpu[TORCH] - 1) * 100
    ratios = {"torch direct / InferenceOp(torch)": _ratio(times[TORCH], times[TORCH_OP])}
    if ORT in times:
        ratios["InferenceOp: onnxruntime / torch (same net)"] = _ratio(times[ORT_OP],
                                                                        times[TORCH_OP])
        ratios["onnxruntime direct / InferenceOp(onnx)"] = _ratio(times[ORT], times[ORT_OP])
    notes.append(f"In process: systems alternate within each round; cpu_ms is this "
                 "process's CPU time per call (all threads), steadier than wall time on a "
                 "loaded machine; torch uses "
                 f"{torch.get_num_threads()} intra-op thread(s), ONNX Runtime its backend's "
                 "default (half the cores, no spinning).")
    return figures, ratios, [
        Target("InferenceOp(torch) overhead over the direct call (wall)", overhead, 3.0, "%"),
        Target("InferenceOp(torch) overhead over the direct call (CPU)", cpu_overhead, 3.0,
               "%")], notes


def _one_op(pipeline_cls: Any, op_cls: Any, model: Path) -> tuple[Any, Any]:
    pipeline = pipeline_cls(f"bench-{model.suffix[1:]}")
    op = pipeline.add(op_cls("seg", model=model))
    return pipeline, op


def _submit(rt: Any, pipeline: Any, x: np.ndarray[Any, Any]) -> Any:
    return rt.submit(pipeline, {"seg.image": x}).result()


def _torch_call(torch: Any, module: Any, x: np.ndarray[Any, Any]) -> Any:
    with torch.inference_mode():
        return module(torch.from_numpy(x)[None, None]).numpy()


def _ort_call(session: Any, x: np.ndarray[Any, Any]) -> Any:
    return session.run(None, {"image": x[None, None]})[0]


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


# --- Triton ---------------------------------------------------------------------------------


def _triton(url: str, model: str, sizes_mb: tuple[int, ...], repeat: int, say: Progress
            ) -> tuple[_Figures, dict[str, float], list[Target], str]:
    try:
        from clara_rt.backends.triton import TritonBackend
    except ImportError as exc:
        return {}, {}, [], f"Triton not measured: {exc}."
    backends: list[TritonBackend] = []
    try:
        backends = [TritonBackend(url, model, shared_memory=m) for m in ("none", "system")]
        backends[0].spec()
    except BackendError as exc:
        for backend in backends:
            backend.close()
        return {}, {}, [], (f"Triton not measured: {exc}. Start Triton with the 'double' "
                            "model and set CLARA_RT_TRITON_URL.")
    binary, shm = backends
    bare = _BareCall(binary.url, model)
    try:
        figures: _Figures = {BARE: {}, BINARY: {}, SHM: {}}
        for mb in sizes_mb:
            x = np.random.default_rng(mb).random((1, mb * (1 << 20) // 4), dtype=np.float32)
            rounds = repeat * max(1, min(16, max(sizes_mb) // mb))
            systems: dict[str, Callable[[], Any]] = {
                BARE: partial(bare, x), BINARY: partial(binary.infer, {"x": x}),
                SHM: partial(shm.infer, {"x": x})}
            for name, t in _rounds(systems, rounds, f"{mb} MiB", say).items():
                figures[name][f"{mb}MiB_ms"] = t * 1e3
    finally:
        bare.close()
        binary.close()
        shm.close()
    ratios, targets = {}, []
    for mb in sizes_mb:
        key = f"{mb}MiB_ms"
        ratios[f"tritonclient / clara-rt http ({mb} MiB)"] = _ratio(figures[BARE][key],
                                                                    figures[BINARY][key])
        ratios[f"http binary / system shm ({mb} MiB)"] = _ratio(figures[BINARY][key],
                                                                figures[SHM][key])
        overhead = (figures[BINARY][key] / figures[BARE][key] - 1) * 100
        targets.append(Target(f"clara-rt overhead over tritonclient at {mb} MiB", overhead, 5.0,
                              "%"))
    return figures, ratios, targets, (
        "Triton: systems alternate within each round, in reverse order every other round; all "
        "send the same array to the same server; shm copies the outputs out of the region.")


# --- private ------------------------------------------------------------------------------


class _BareCall:
    """The baseline: a plain tritonclient HTTP request with binary tensors."""

    def __init__(self, url: str, model: str) -> None:
        import tritonclient.http as th

        self._th, self._model = th, model
        self._client = th.InferenceServerClient(url.split("://", 1)[-1])

    def __call__(self, x: np.ndarray[Any, Any]) -> Any:
        item = self._th.InferInput("x", list(x.shape), "FP32")
        item.set_data_from_numpy(x)
        return self._client.infer(self._model, [item]).as_numpy("y")

    def close(self) -> None:
        self._client.close()


def _rounds(systems: dict[str, Callable[[], Any]], rounds: int, label: str,
            say: Progress, cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Warm every system up, then run ``rounds`` rounds, alternating the order; return medians.

    With ``cpu``, also fill it with the median CPU time of this process (every thread) per call.
    """
    for run in systems.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in systems}
    cpus: dict[str, list[float]] = {name: [] for name in systems}
    order = list(systems.items())
    for r in range(rounds):
        for name, run in order if r % 2 == 0 else order[::-1]:  # no system always goes first
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
        if r == 0 or (r + 1) % max(1, rounds // 4) == 0:
            say(f"inference: {label} round {r + 1}/{rounds}")
    if cpu is not None:
        cpu.update({name: float(np.median(t)) for name, t in cpus.items()})
    return {name: float(np.median(t)) for name, t in times.items()}

"""The ``branches`` scenario: multiai-seg's four ROI branches against one Triton server.

The pipeline is the branch part of ``tests/data/multiai_triton/pipeline.yaml``, built in Python:
``RoiSplitOp`` cuts a CT volume into its four quadrants (views), each quadrant goes through its
own branch -- ``WindowOp`` ([-1000, 0] HU to [0, 1]) then ``InferenceOp`` running the Triton model
``threshold_mask`` (``../shared/peers/triton/models``: mask = image > 0.5, Python backend) -- and
``RoiMergeOp`` pastes the four masks into one label map. The same pipeline object runs on
``Runtime(workers=4)`` (the four branches at once, one shared Triton client per model) and on
``Runtime(workers=1)`` (the branches one after another); both runtimes stay open, rounds
alternate between them (reversed every other round) and the figures are medians of the
end-to-end job latency (``submit`` to ``result``). Both runs must give the same label map.

Needs a running Triton server with ``threshold_mask``; its URL comes from ``url`` or
``CLARA_RT_TRITON_URL`` (default ``http://127.0.0.1:8000``). Without a reachable server the record
has no figures and its note says why.

What bounds the speed-up: the shared model has ``instance_group [{count: 1}]``, so Triton runs
one ``threshold_mask`` request at a time; what overlaps is the windowing, the HTTP transfers and
(de)serialisation on both sides, and Triton's own queueing. On a 2-core machine the server, the
client threads and the Python backend's stub share those two cores.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from clara_rt.bench._record import BenchRecord, Progress, _quiet, _ratio, machine_info

__all__ = ["branches"]

CONCURRENT, SEQUENTIAL = "clara-rt workers=4 (branches at once)", "clara-rt workers=1 (in turn)"
QUADRANTS = ("right_inferior", "right_superior", "left_inferior", "left_superior")


def branches(url: str | None = None, model: str = "threshold_mask",
             shape: tuple[int, int, int] = (128, 256, 256), repeat: int = 20, *,
             progress: Progress | None = None) -> BenchRecord:
    """Time one job of the four-branch pipeline with 4 workers and with 1; medians of rounds.

    Args:
        url: Triton's URL (``http://`` or ``grpc://``); ``CLARA_RT_TRITON_URL`` or
            ``http://127.0.0.1:8000`` when None.
        model: A model taking ``image`` FP32 ``[D, H, W]`` and returning ``mask`` UINT8 of the
            same shape (``threshold_mask``).
        shape: The CT volume (int16 HU); each branch gets one quarter.
        repeat: Rounds; each round runs one job on each runtime.
        progress: Called with one-line progress messages.
    """
    from clara_rt import Runtime
    from clara_rt.errors import PipelineError

    say = progress or _quiet
    url = url or os.environ.get("CLARA_RT_TRITON_URL", "http://127.0.0.1:8000")
    params: dict[str, Any] = {"url": url, "model": model, "shape": list(shape), "repeat": repeat,
                              "branches": len(QUADRANTS)}
    mb = int(np.prod(shape)) * 4 / (1 << 20)
    title = (f"multiai-seg's 4 ROI branches (window + Triton '{model}'), {mb:.0f} MiB of FP32 "
             "in all, one job end to end, 4 workers vs 1, median of rounds")
    try:
        pipeline = _pipeline(url, model, shape)
    except PipelineError as exc:
        return BenchRecord("branches", title, machine_info(), params, {}, {},
                           notes=f"not measured: {exc}. Start Triton with the '{model}' model "
                                 "and set CLARA_RT_TRITON_URL.")
    volume = _volume(shape)
    times: dict[str, list[float]] = {CONCURRENT: [], SEQUENTIAL: []}
    with Runtime(workers=4) as four, Runtime(workers=1) as one:
        runtimes = [(CONCURRENT, four), (SEQUENTIAL, one)]
        labels = [rt.submit(pipeline, {"roi-split.volume": volume}).result()["roi-merge.labels"]
                  for _, rt in runtimes]  # warm-up: numba, ONNX/Triton clients, server
        if not np.array_equal(labels[0], labels[1]):
            raise AssertionError("the 4-worker and 1-worker runs gave different label maps")
        for r in range(repeat):
            for name, rt in runtimes if r % 2 == 0 else runtimes[::-1]:
                t0 = time.perf_counter()
                rt.submit(pipeline, {"roi-split.volume": volume}).result()
                times[name].append(time.perf_counter() - t0)
            if r == 0 or (r + 1) % max(1, repeat // 4) == 0:
                say(f"branches: round {r + 1}/{repeat}")
    figures = {name: {"job_ms": float(np.median(t)) * 1e3, "min_ms": min(t) * 1e3}
               for name, t in times.items()}
    ratios = {"branches in turn / at once (job latency)": _ratio(figures[SEQUENTIAL]["job_ms"],
                                                                 figures[CONCURRENT]["job_ms"])}
    return BenchRecord(
        "branches", title, machine_info(), params, figures, ratios,
        notes=f"one pipeline, two runtimes open side by side, rounds alternate; {os.cpu_count()} "
              "CPUs shared with the Triton server on this host; the model has one instance, so "
              "Triton runs its requests one at a time and the overlap is in windowing, "
              "transfers and (de)serialisation.")


def _pipeline(url: str, model: str, shape: tuple[int, int, int]) -> Any:
    """RoiSplitOp -> 4 x (WindowOp -> InferenceOp) -> RoiMergeOp, as in multiai_triton."""
    from clara_rt import Pipeline

    # mapped from operators/ (see cli), so imported by name
    from clara_rt.operators.inference import InferenceOp
    from clara_rt.operators.preprocess.window import WindowOp
    from clara_rt.operators.roi import split_merge as roi
    RoiSplitOp, RoiMergeOp = roi.RoiSplitOp, roi.RoiMergeOp

    z, x = shape[0] // 2, shape[2] // 2
    boxes = {"right_inferior": [(0, z), (None, None), (0, x)],
             "right_superior": [(z, None), (None, None), (0, x)],
             "left_inferior": [(0, z), (None, None), (x, None)],
             "left_superior": [(z, None), (None, None), (x, None)]}
    p = Pipeline("multiai-branches")
    split = p.add(RoiSplitOp("roi-split", rois=boxes))
    merge = p.add(RoiMergeOp("roi-merge", rois=list(QUADRANTS)))
    p.connect(split, "config", merge, "config")
    for quadrant in QUADRANTS:
        win = p.add(WindowOp(f"window-{quadrant}", level=-500, width=1000))
        seg = p.add(InferenceOp(f"segment-{quadrant}", model=model, backend="triton", url=url,
                                batch=False))
        p.connect(split, quadrant, win, "volume")
        p.connect(win, "windowed", seg, "image")
        p.connect(seg, "mask", merge, quadrant)
    return p


def _volume(shape: tuple[int, int, int]) -> np.ndarray[Any, Any]:
    """An int16 HU volume: a water ellipsoid body with two air lungs in air, plus noise."""
    z, y, x = np.ogrid[-1:1:shape[0] * 1j, -1:1:shape[1] * 1j, -1:1:shape[2] * 1j]
    hu = np.full(shape, -1000.0)
    hu[np.broadcast_to((y / 0.8) ** 2 + (x / 0.9) ** 2 < 1, shape)] = 40.0
    for cx in (-0.4, 0.4):
        hu[((x - cx) / 0.3) ** 2 + (y / 0.5) ** 2 + (z / 0.9) ** 2 < 1] = -850.0
    noise = np.random.default_rng(0).normal(0.0, 20.0, shape)
    return (hu + noise).astype(np.int16)

"""A pipeline built in Python (no YAML): segment the lungs of a synthetic CT volume.

    volume ─▶ window ─▶ threshold ─▶ largest ─▶ stats
                 └────────────▶ mip

Five operators, a fan-out, NumPy arrays handed over by reference, run by the C++ scheduler on
two worker threads. Prints what each operator did and how long it took.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from clara_rt import Operator, Pipeline, Runtime, get_array_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.phantom import ct_phantom


class WindowOp(Operator):
    """Clip a CT volume to a Hounsfield window and scale it to [0, 1] (float32)."""

    level = -600.0
    width = 1500.0

    def setup(self, spec: Any) -> None:
        spec.input("volume", dtype="int16", shape=("Z", "Y", "X"))
        spec.output("windowed", dtype="float32", shape=("Z", "Y", "X"))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        vol = inputs.receive("volume")
        xp = get_array_module(vol)
        lo = self.level - self.width / 2
        out = xp.clip((vol.astype(xp.float32) - lo) / self.width, 0.0, 1.0)
        outputs.emit("windowed", out)


class ThresholdOp(Operator):
    """Mask of voxels with ``low < value < high`` (lung parenchyma: HU -950..-500 here)."""

    low = 0.267
    high = 0.567

    def setup(self, spec: Any) -> None:
        spec.input("image", dtype="float32", shape=("Z", "Y", "X"))
        spec.output("mask", dtype="bool", shape=("Z", "Y", "X"))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        img = inputs["image"]
        outputs["mask"] = (img > self.low) & (img < self.high)


class LargestComponentsOp(Operator):
    """Keep the ``count`` largest 3-D connected components (scipy.ndimage.label)."""

    count = 2

    def setup(self, spec: Any) -> None:
        spec.input("mask", dtype="bool", shape=(-1, -1, -1))
        spec.output("mask", dtype="bool", shape=(-1, -1, -1))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        mask = inputs["mask"]
        labels, _ = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.argsort(sizes)[::-1][: self.count] + 1
        outputs["mask"] = np.isin(labels, keep)


class StatsOp(Operator):
    """Voxel count and volume of a mask."""

    spacing_mm = (2.5, 0.7, 0.7)

    def setup(self, spec: Any) -> None:
        spec.input("mask", dtype="bool", shape=(-1, -1, -1))
        spec.output("stats", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        voxels = int(inputs["mask"].sum())
        ml = voxels * float(np.prod(self.spacing_mm)) / 1000.0
        outputs["stats"] = {"voxels": voxels, "volume_ml": round(ml, 1)}


class MipOp(Operator):
    """Maximum-intensity projection along z."""

    def setup(self, spec: Any) -> None:
        spec.input("image", dtype="float32", shape=(-1, -1, -1))
        spec.output("mip", dtype="float32", shape=(-1, -1))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["mip"] = inputs["image"].max(axis=0)


def build() -> Pipeline:
    p = Pipeline("lung-demo")
    window = p.add(WindowOp("window"))
    threshold = p.add(ThresholdOp("threshold"))
    largest = p.add(LargestComponentsOp("largest"))
    stats = p.add(StatsOp("stats"))
    mip = p.add(MipOp("mip"))
    p.connect(window, "windowed", threshold, "image")
    p.connect(threshold, "mask", largest, "mask")
    p.connect(largest, "mask", stats, "mask")
    p.connect(window, "windowed", mip, "image")
    return p


def main() -> int:
    volume = ct_phantom()
    pipeline = build()
    print(f"clara-rt demo: pipeline '{pipeline.name}' with {len(pipeline)} operators")
    for c in pipeline.connections:
        print(f"  {c}")
    print(f"input: synthetic CT {volume.shape} {volume.dtype}, "
          f"{volume.nbytes / 2**20:.1f} MiB, HU {volume.min()}..{volume.max()}")
    t0 = time.perf_counter()
    with Runtime(workers=2) as rt:
        job = rt.submit(pipeline, {"window.volume": volume}, priority="high", timeout=60)
        results = job.result()
        jobs = [rt.submit(pipeline, {"window.volume": volume}) for _ in range(8)]
        for j in jobs:
            j.result()
    wall = time.perf_counter() - t0
    print(f"job {job.id}: {job.state.value} (priority {job.priority.name.lower()})")
    start = min(s for s, _ in job.timings.values())
    for name, (s, e) in sorted(job.timings.items(), key=lambda kv: kv[1][0]):
        print(f"  {name:<10} {(s - start) / 1e6:8.2f} ms  +{(e - s) / 1e6:7.2f} ms")
    stats = results["stats.stats"]
    print(f"result stats.stats: {stats['voxels']} lung voxels, {stats['volume_ml']} mL")
    print(f"result mip.mip: {results['mip.mip'].shape} {results['mip.mip'].dtype}")
    print(f"ran 1 + {len(jobs)} jobs on 2 worker threads in {wall * 1e3:.1f} ms")
    ok = job.state.value == "succeeded" and stats["voxels"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""In-process stand-ins for the containers of Clara's multi-AI segmentation pipeline.

Mapped onto `multiai-segmentation.yaml` through `clara-rt:` keys (see `pipeline.yaml` beside
this file, a copy of the example with those keys added). They split a synthetic volume into
four ROIs, "segment" each by a threshold, merge the masks into one label volume and register
the result, so the test can check every number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt import Operator

ORGANS = ("lung", "liver", "spleen", "colon")


class RoiSplit(Operator):
    """Read `volume.npy` from the input folder; emit one ROI per organ plus the ROI config."""

    def setup(self, spec: Any) -> None:
        spec.input("input", kind="path")
        for organ in ORGANS:
            spec.output(organ, dtype="float32", shape=(-1, -1, -1))
        spec.output("config", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        volume = np.load(Path(inputs["input"]) / "volume.npy")
        depth = volume.shape[0] // len(ORGANS)
        config = {}
        for k, organ in enumerate(ORGANS):
            outputs[organ] = volume[k * depth:(k + 1) * depth]  # a view: no copy
            config[organ] = [k * depth, (k + 1) * depth]
        outputs["config"] = config


class ThresholdSegmentation(Operator):
    """Mask of voxels above `threshold` (stands in for a segmentation network)."""

    threshold = 0.5

    def setup(self, spec: Any) -> None:
        spec.input("image", dtype="float32", shape=(-1, -1, -1))
        spec.output("mask", dtype="uint8", shape=(-1, -1, -1))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["mask"] = (inputs["image"] > self.threshold).astype(np.uint8)


class VolumeMerger(Operator):
    """Put each organ's mask back in place with its label (1..4); emit labels and a summary."""

    def setup(self, spec: Any) -> None:
        spec.input("config", kind="object")
        for organ in ORGANS:
            spec.input(organ, dtype="uint8", shape=(-1, -1, -1))
        spec.output("output", dtype="uint8", shape=(-1, -1, -1))
        spec.output("rendering", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        config = inputs["config"]
        depth = max(end for _, end in config.values())
        first = inputs[ORGANS[0]]
        labels = np.zeros((depth, *first.shape[1:]), dtype=np.uint8)
        for label, organ in enumerate(ORGANS, start=1):
            start, end = config[organ]
            labels[start:end][inputs[organ] > 0] = label
        outputs["output"] = labels
        outputs["rendering"] = {organ: int((labels == k).sum())
                                for k, organ in enumerate(ORGANS, start=1)}


class RegisterResults(Operator):
    """Write the rendering summary into the job workspace (stands in for the render server)."""

    def setup(self, spec: Any) -> None:
        spec.input("rendering", kind="object")
        spec.output("registered", kind="path")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        folder = Path(context.workspace) / self.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "registered.json").write_text(json.dumps(inputs["rendering"], sort_keys=True))
        outputs["registered"] = folder

"""Tiny operators for the pipeline-builder tests (tests/unit/test_build.py).

They are reached the way a user's operators are: by ``module:Class`` in a ``clara-rt:`` key, or
through the ``clara_rt.images`` entry points of the fake distribution the tests write on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clara_rt import Operator


class Threshold(Operator):
    """mask = image > level (inputs ``image``; output ``mask``)."""

    level = 0.5
    label = "none"

    def setup(self, spec: Any) -> None:
        spec.input("image", dtype="float32")
        spec.output("mask", dtype="uint8")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["mask"] = (inputs["image"] > self.level).astype(np.uint8)


class Masked(Operator):
    """out = image * mask (two inputs, ``image`` and ``mask``; output ``out``)."""

    def setup(self, spec: Any) -> None:
        spec.input("image", dtype="float32")
        spec.input("mask", dtype="uint8")
        spec.output("out", dtype="float32")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = (inputs["image"] * inputs["mask"]).astype(np.float32)


class Single(Operator):
    """One input ``x`` and one output ``y`` with names no YAML entry uses (fallback matching)."""

    def setup(self, spec: Any) -> None:
        spec.input("x", kind="object")
        spec.output("y", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["y"] = inputs["x"]


class ListFolder(Operator):
    """Emit the sorted file names of the folder on ``folder`` (a path port)."""

    def setup(self, spec: Any) -> None:
        spec.input("folder", kind="path")
        spec.output("names", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["names"] = sorted(p.name for p in Path(inputs["folder"]).iterdir())


class MakeArray(Operator):
    """Emit ``arange(6).reshape(2, 3) * scale`` as float32 on ``array`` (format ``fmt``)."""

    scale = 1.0
    fmt: str | None = None

    def setup(self, spec: Any) -> None:
        spec.output("array", dtype="float32", shape=(2, 3), format=self.fmt)

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["array"] = (np.arange(6, dtype=np.float32) * self.scale).reshape(2, 3)


class SumArray(Operator):
    """Emit the sum of the array on ``array`` (read in format ``fmt``) and the array itself."""

    fmt: str | None = "npy"

    def setup(self, spec: Any) -> None:
        spec.input("array", dtype="float32", format=self.fmt)
        spec.output("total", kind="object")
        spec.output("seen", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["total"] = float(inputs["array"].sum())
        outputs["seen"] = inputs["array"]


class Typed(Operator):
    """Declares 0.5.0-style typed ports: ``volume`` float32 (3-d) in, ``labels`` uint8 out."""

    def setup(self, spec: Any) -> None:
        spec.input("volume", dtype="float32", shape=(-1, -1, -1))
        spec.output("labels", dtype="uint8", shape=(-1, -1, -1))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["labels"] = (inputs["volume"] > 0).astype(np.uint8)


class Connected(Operator):
    """Reports the service URLs it was given (``connections``) on ``urls``."""

    def setup(self, spec: Any) -> None:
        spec.input("input", kind="path")
        spec.output("urls", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["urls"] = dict(getattr(self, "connections", {}))


class ChestXray(Operator):
    """Stands in for the ``clara/ai-chestxray`` image (any tag): one folder in, one out."""

    tagged = False

    def setup(self, spec: Any) -> None:
        spec.input("input", kind="path")
        spec.output("output", kind="object")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["output"] = type(self).__name__


class ChestXrayLatest(ChestXray):
    """Stands in for ``clara/ai-chestxray:1.0`` only."""


class Exploding(Operator):
    """Its constructor refuses every argument set, as a misconfigured operator would."""

    def __init__(self, name: str | None = None, /, **params: Any) -> None:
        raise ValueError(f"threshold must be positive, got {params.get('threshold')!r}")


class Outer:
    """Holds an operator class one attribute down (``module:Outer.Inner``)."""

    class Inner(Single):
        """A nested operator class."""


class NotAnOperator:
    """A class that takes a name but is no Operator."""

    def __init__(self, name: str, /, **params: Any) -> None:
        self.name = name

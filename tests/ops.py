"""Small operators shared by the tests (real operators, real arrays)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import numpy as np

from clara_rt import Operator, Pipeline
from clara_rt.arrays import get_array_module


class Source(Operator):
    """Emit the payload array (a pipeline entry point with one input)."""

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = inputs["in"]


class Scale(Operator):
    """out = in * factor (a new array)."""

    factor = 1.0

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = (inputs["in"] * self.factor).astype("float32")


class Lifecycle(Scale):
    """Scale that records its ``start()`` and ``stop()`` calls in ``events``."""

    def setup(self, spec: Any) -> None:
        super().setup(spec)
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")


def chain(*ops: Operator, name: str = "chain") -> Pipeline:
    """``ops[0] -> ops[1] -> ...`` joined ``out -> in``."""
    p = Pipeline(name)
    for op in ops:
        p.add(op)
    for a, b in itertools.pairwise(ops):
        p.connect(a, "out", b, "in")
    return p


class Passthrough(Operator):
    """Forward the very object it received (for zero-copy checks); records what it saw."""

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))
        self.seen: list[int] = []

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        value = inputs.receive("in")
        self.seen.append(id(value))
        outputs.emit("out", value)


class Add(Operator):
    """out = a + b (fan-in)."""

    def setup(self, spec: Any) -> None:
        spec.input("a", dtype="float32", shape=(-1,))
        spec.input("b", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        xp = get_array_module(inputs["a"])
        outputs["out"] = xp.add(inputs["a"], inputs["b"], dtype="float32")


class Sleep(Operator):
    """Sleep ``seconds`` (polling cancellation), then forward; tracks concurrency."""

    seconds = 0.05

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.calls = 0

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        with self.lock:
            self.active += 1
            self.calls += 1
            self.peak = max(self.peak, self.active)
        try:
            end = time.monotonic() + self.seconds
            while time.monotonic() < end and not context.cancelled:
                time.sleep(0.002)
        finally:
            with self.lock:
                self.active -= 1
        outputs["out"] = inputs["in"]


class Fail(Operator):
    """Raise on purpose."""

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        raise ValueError("boom from Fail")


class Record(Operator):
    """Append (job_id, operator) to a shared list when it runs, then forward."""

    def __init__(self, name: str, log: list[tuple[int, str]]) -> None:
        super().__init__(name)
        self.log = log

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        self.log.append((context.job_id, self.name))
        outputs["out"] = inputs["in"]


def vec(n: int = 4, value: float = 1.0) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


class FolderWork(Operator):
    """Folder in, folder out (the platform server's tests): logs, waits, then writes a summary.

    Keyword args: ``seconds`` to wait (polling cancellation; ``stubborn``: not, like a hung
    operator), ``fail`` to raise instead. Writes ``<workspace>/<name>/summary.json`` listing the
    input's files, and emits that folder.
    """

    seconds = 0.0
    fail = False
    stubborn = False

    def setup(self, spec: Any) -> None:
        spec.input("in", kind="path")
        spec.output("out", kind="path")

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        import json
        import logging
        from pathlib import Path

        folder = Path(inputs["in"])
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        logging.getLogger("tests.ops").info("%s sees %d input files", self.name, len(files))
        end = time.monotonic() + float(self.seconds)
        while time.monotonic() < end and (self.stubborn or not context.cancelled):
            time.sleep(0.01)
        if self.fail:
            raise RuntimeError(f"{self.name} failed on purpose")
        out = Path(context.workspace) / self.name / "out"
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"files": files, "job": context.job_id}))
        outputs["out"] = out

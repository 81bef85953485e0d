"""The ``startup`` scenario: time from process start to the first operator running.

* **cold**: ``python -m clara_rt.cli run PIPELINE.yaml --input DIR --output DIR --json`` as a
  subprocess, on a generated 10-operator YAML pipeline (:class:`StampOp` then nine
  :class:`PassOp`, in-process through their ``clara-rt`` keys, fed the input folder). The first
  operator writes ``time.time_ns()`` to a file, so process start -> first operator is measured on
  one clock (the parent's ``time_ns()`` just before ``Popen``). Baselines: the same interpreter
  running ``pass``, and ``import numpy`` then writing the same stamp (the floor any Python tool
  with NumPy pays). The process's whole wall time (to exit) is reported too.
* **warm**: in one process, ``Runtime()`` + parse and build the same YAML + submit the first
  job, to the first operator's start (``job.timings``) and to the result; the same with the
  pipeline built through the Python API; baseline: start a 10-stage ``queue.Queue`` thread chain
  and push one item to its first stage.

Every round runs each system once, in turn; the first round is an untimed warm-up (page cache).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.bench._baselines import QueueChain
from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import _ARRAY, _now, chain_pipeline, checkout_env
from clara_rt.executor import Runtime
from clara_rt.job import Context
from clara_rt.operator import Inputs, Operator, OperatorSpec, Outputs

__all__ = ["PassOp", "StampOp", "startup", "startup_yaml"]

_ROOT = Path(__file__).resolve().parents[2]


class StampOp(Operator):
    """First operator: write ``time.time_ns()`` to the file ``stamp`` (when set), pass the input."""

    stamp: str = ""

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``input`` (the job's input folder) and ``out`` (any object)."""
        spec.input("input", kind="path")
        spec.output("out", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Stamp the wall clock, then forward the folder path."""
        if self.stamp:
            Path(self.stamp).write_text(str(time.time_ns()))
        outputs["out"] = str(inputs["input"])


class PassOp(Operator):
    """Forward the input object unchanged."""

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``in`` and ``out`` (any object)."""
        spec.input("in", kind="object")
        spec.output("out", kind="object")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Emit the input object itself."""
        outputs["out"] = inputs["in"]


def startup_yaml(stages: int = 10, stamp: Path | str = "") -> str:
    """Return a Clara pipeline definition: :class:`StampOp` then ``stages - 1`` :class:`PassOp`."""
    lines = ["api-version: 0.5.0", "name: startup", "operators:"]
    for i in range(stages):
        cls, args = ("StampOp", f"    args: {{stamp: '{stamp}'}}\n") if i == 0 else ("PassOp", "")
        src = "  - path: /input" if i == 0 else f"  - from: op{i - 1}\n    name: out"
        lines.append(f"- name: op{i}\n  container: {{image: bench/noop, tag: '1'}}\n"
                     f"  clara-rt:\n    operator: \"clara_rt.bench._startup:{cls}\"\n{args}"
                     f"  input:\n{src}\n  output:\n  - name: out")
    return "\n".join(lines) + "\n"


def startup(stages: int = 10, *, repeat: int = 5, warm_repeat: int = 20,
            lung_shape: tuple[int, int, int] | None = (64, 128, 128),
            progress: Progress | None = None) -> BenchRecord:
    """Measure cold (new process) and warm (in-process) start to the first operator.

    Also, as processes in the same rounds: ``clara-rt run examples/ct-lung-seg/pipeline.yaml``
    on a ``lung_shape`` chest phantom, start to exit (issue 19.1: target 1.0 s), next to a
    Python that only imports the imaging libraries that pipeline uses (numpy, scipy.ndimage,
    pydicom, highdicom, PIL: the floor of any tool doing the same), and a trivial 2-operator
    Python app on a :class:`Runtime` next to ``python + import numpy``.

    Args:
        stages: Operators in the YAML chain.
        repeat: Timed processes per cold system (after one warm-up each).
        warm_repeat: Timed in-process starts per warm system.
        lung_shape: Phantom shape (z, y, x) for the ct-lung-seg run; ``None`` skips it.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    with tempfile.TemporaryDirectory(prefix="clara-rt-bench-startup-") as tmp:
        work = Path(tmp)
        stamp = work / "stamp"
        yaml_path = work / "pipeline.yaml"
        yaml_path.write_text(startup_yaml(stages, stamp))
        (work / "input").mkdir()
        (work / "input" / "hello.txt").write_text("hello\n")
        say(f"startup: cold, {repeat} processes per system")
        cold = _cold(work, yaml_path, stamp, repeat, _app_commands(work, lung_shape))
        say(f"startup: warm, {warm_repeat} starts per system")
        warm = _warm(yaml_path, work / "input", stages, warm_repeat)
    figures = {**cold, **warm}
    clara_cold = figures["cold: clara-rt run"]["first_op_ms"]
    floor = figures["cold: python + import numpy"]["first_op_ms"]
    clara_warm = figures["warm: Runtime + YAML build + submit"]["first_op_ms"]
    return BenchRecord(
        scenario="startup",
        title=f"process start -> first operator of a {stages}-operator YAML pipeline "
              f"(`clara-rt run`, cold) and in-process Runtime + build + first job (warm); "
              "medians",
        machine=machine_info(),
        params={"stages": stages, "repeat": repeat, "warm_repeat": warm_repeat},
        figures=figures, ratios=_ratios(figures),
        targets=(Target("clara-rt run cold, to first op", clara_cold, 1000.0, "ms"),
                 Target("clara-rt run cold overhead over python+numpy", clara_cold - floor,
                        500.0, "ms"),
                 Target("warm Runtime + YAML build + first op", clara_warm, 50.0, "ms"),
                 *_app_targets(figures)),
        notes="cold = a new interpreter (page cache warm); 'first_op_ms' is the first "
              "operator's time_ns() stamp minus the parent's time_ns() before Popen; the numpy "
              "baseline writes the same stamp right after `import numpy`. clara-rt run also "
              "imports yaml, the CLI, the definition parser and the executor, starts the "
              "runtime's threads and writes a JSON report. Warm figures exclude imports.")


# --- private ------------------------------------------------------------------------------


def _ratios(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    """clara-rt against its baselines, cold and warm (and the apps' ratios)."""
    clara_cold = figures["cold: clara-rt run"]["first_op_ms"]
    floor = figures["cold: python + import numpy"]["first_op_ms"]
    clara_warm = figures["warm: Runtime + YAML build + submit"]["first_op_ms"]
    ratios = _app_ratios(figures)
    ratios.update({
        "python+numpy / clara-rt run, to first op": _ratio(floor, clara_cold),
        "python -c pass / clara-rt run, to exit":
            _ratio(figures["cold: python -c pass"]["exit_ms"],
                   figures["cold: clara-rt run"]["exit_ms"]),
        "queue threads / clara-rt (YAML), warm to first op":
            _ratio(figures["warm: queue threads start + put"]["first_op_ms"], clara_warm),
        "queue threads / clara-rt (Python API), warm to first op":
            _ratio(figures["warm: queue threads start + put"]["first_op_ms"],
                   figures["warm: Runtime + Python API + submit"]["first_op_ms"]),
    })
    return ratios


def _cold(work: Path, yaml_path: Path, stamp: Path, repeat: int,
          extra: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    exe = sys.executable
    commands: dict[str, list[str]] = {**extra,
        "cold: python -c pass": [exe, "-c", "pass"],
        "cold: python + import numpy": [exe, "-c", f"import time, numpy; open({str(stamp)!r}, "
                                        "'w').write(str(time.time_ns()))"],
        "cold: clara-rt run": [exe, "-m", "clara_rt.cli", "run", str(yaml_path), "--input",
                               str(work / "input"), "--output", str(work / "output"),
                               "--overwrite", "--json"],
    }
    env = checkout_env()
    first: dict[str, list[float]] = {name: [] for name in commands}
    exits: dict[str, list[float]] = {name: [] for name in commands}
    for r in range(repeat + 1):
        for name, cmd in commands.items():
            stamp.unlink(missing_ok=True)
            t0 = time.time_ns()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, cwd=work)
            t1 = time.time_ns()
            if r == 0:
                continue  # warm-up: page cache, .pyc files
            exits[name].append((t1 - t0) / 1e6)
            if stamp.exists():
                first[name].append((int(stamp.read_text()) - t0) / 1e6)
    figures: dict[str, dict[str, float]] = {}
    for name in commands:
        fig = {"exit_ms": float(np.median(exits[name]))}
        if first[name]:
            fig["first_op_ms"] = float(np.median(first[name]))
        figures[name] = fig
    return figures


def _warm(yaml_path: Path, input_dir: Path, stages: int,
          repeat: int) -> dict[str, dict[str, float]]:
    from clara_rt.definition import parse_definition
    from clara_rt.definition.build import build_pipeline

    def yaml_start() -> tuple[int, int, int]:
        t0 = _now()
        with Runtime(workers=2) as rt:
            built = build_pipeline(parse_definition(yaml_path))
            job = rt.submit(built.pipeline, built.payload_for(input_dir))
            job.result()
            t1 = _now()
        return t0, job.timings["op0"][0], t1

    def api_start() -> tuple[int, int, int]:
        t0 = _now()
        with Runtime(workers=2) as rt:
            pipe = chain_pipeline(stages, "startup")
            job = rt.submit(pipe, {"op0.in": _ARRAY})
            job.result()
            t1 = _now()
        return t0, job.timings["op0"][0], t1

    def queue_start() -> tuple[int, int, int]:
        t0 = _now()
        with QueueChain(stages, timed=True) as chain:
            chain.queues[0].put(_ARRAY)
            chain.queues[-1].get()
            t1 = _now()
        return t0, chain.stamps[0][0][0], t1

    runners: dict[str, Callable[[], tuple[int, int, int]]] = {
        "warm: Runtime + YAML build + submit": yaml_start,
        "warm: Runtime + Python API + submit": api_start,
        "warm: queue threads start + put": queue_start,
    }
    samples: dict[str, list[tuple[int, int, int]]] = {name: [] for name in runners}
    for r in range(repeat + 1):
        for name, run in runners.items():
            sample = run()
            if r:
                samples[name].append(sample)
    return {name: _warm_figures(s) for name, s in samples.items()}


def _warm_figures(samples: list[tuple[int, int, int]]) -> dict[str, Any]:
    first = [(b - a) / 1e6 for a, b, _ in samples]
    done = [(c - a) / 1e6 for a, _, c in samples]
    return {"first_op_ms": float(np.median(first)), "result_ms": float(np.median(done)),
            "best_first_op_ms": min(first)}


# --- private: the ct-lung-seg run and the trivial app (issue 19.1) ---------------------------

_LUNG = "cold: clara-rt run ct-lung-seg"
_IMAGING = "cold: python + imaging imports"
_APP = "cold: 2-operator app"
_NUMPY = "cold: python + import numpy"
_IMAGING_IMPORTS = "import numpy, scipy.ndimage, pydicom, highdicom, PIL.Image"
_TWO_OPS = """
import numpy as np
from clara_rt import Operator, Pipeline, Runtime
class Twice(Operator):
    def setup(self, spec):
        spec.input("x", dtype="float32", shape=(-1,))
        spec.output("y", dtype="float32", shape=(-1,))
    def compute(self, inputs, outputs, context):
        outputs["y"] = inputs["x"] * 2
p = Pipeline("app")
a, b = p.add(Twice("a")), p.add(Twice("b"))
p.connect(a, "y", b, "x")
with Runtime() as rt:
    assert rt.run(p, {"a.x": np.ones(4, np.float32)})["b.y"][0] == 4
"""


def _app_commands(work: Path, lung_shape: tuple[int, int, int] | None) -> dict[str, list[str]]:
    exe = sys.executable
    commands = {_APP: [exe, "-c", _TWO_OPS]}
    if lung_shape is not None:
        from clara_rt.bench._chest import chest_series

        commands[_LUNG] = [exe, "-m", "clara_rt.cli", "run",
                           str(_ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"), "--input",
                           str(chest_series(lung_shape)), "--output", str(work / "lung-out"),
                           "--overwrite"]
        commands[_IMAGING] = [exe, "-c", _IMAGING_IMPORTS]
    return commands


def _app_ratios(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    ratios = {"python+numpy / 2-operator app, to exit":
              _ratio(figures[_NUMPY]["exit_ms"], figures[_APP]["exit_ms"])}
    if _LUNG in figures:
        lung = figures[_LUNG]["exit_ms"]
        ratios["1.0 s target / clara-rt run ct-lung-seg, to exit"] = _ratio(1000.0, lung)
        ratios["imaging imports / clara-rt run ct-lung-seg, to exit"] = _ratio(
            figures[_IMAGING]["exit_ms"], lung)
    return ratios


def _app_targets(figures: dict[str, dict[str, float]]) -> tuple[Target, ...]:
    targets = [Target("2-operator app, start to exit", figures[_APP]["exit_ms"], 500.0, "ms")]
    if _LUNG in figures:
        targets.append(Target("clara-rt run ct-lung-seg, start to exit",
                              figures[_LUNG]["exit_ms"], 1000.0, "ms"))
    return tuple(targets)

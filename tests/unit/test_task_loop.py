"""The C task loop (csrc/task_loop.cpp) against the Python reference (TaskRunner._run_task).

Every scenario runs twice, once per loop (``Runtime._run_tasks = None`` selects the Python one),
and must end the same: results, job state, error type and message, each operator's state,
which operators have times, and which intermediate values the job still holds.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import numpy as np
import pytest

from clara_rt import Operator, Pipeline, Runtime
from clara_rt.errors import OperatorError, PipelineError, PortTypeError
from clara_rt.job import Job, JobState
from tests.ops import chain

LOOPS = ("c", "python")


def vec(n: int = 4) -> np.ndarray:
    return np.arange(n, dtype=np.float32)


class Step(Operator):
    """out = in + 1, or what ``mode`` says goes wrong."""

    mode = "ok"

    def setup(self, spec: Any) -> None:
        spec.input("in", dtype="float32", shape=(-1,))
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        value = inputs["in"]
        if self.mode == "raise":
            raise ValueError(f"bad value in {self.name}")
        if self.mode == "exit":
            raise SystemExit(3)
        if self.mode == "dtype":
            outputs["out"] = value.astype(np.float64)
        elif self.mode == "missing":
            pass
        elif self.mode == "unknown":
            outputs["other"] = value
        elif self.mode == "wrong-name":  # as many outputs as declared, not the declared names
            outputs["ou"] = value
        elif self.mode == "no-input":
            outputs["out"] = inputs["nope"]
        else:
            outputs["out"] = value + 1


class Fan(Operator):
    """out = a + b, with an optional third input ``c`` that is added when given."""

    def setup(self, spec: Any) -> None:
        spec.input("a", dtype="float32", shape=(-1,))
        spec.input("b", dtype="float32", shape=(-1,))
        spec.input("c", dtype="float32", shape=(-1,), optional=True)
        spec.output("out", dtype="float32", shape=(-1,))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        c = inputs.get("c")
        outputs["out"] = inputs["a"] + inputs["b"] + (0 if c is None else c)


class Sym(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("a", dtype="float32", shape=("N",))
        spec.input("b", dtype="float32", shape=("N",))
        spec.output("out", dtype="float32", shape=("N",))

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = inputs["a"] * 2


def diamond(mode: str = "ok", where: str = "left") -> Pipeline:
    """src -> left, right -> fan(a, b) -> tail; ``mode`` applies to the operator ``where``."""
    p = Pipeline("diamond")
    ops = {name: p.add(Step(name, mode=mode if name == where else "ok"))
           for name in ("src", "left", "right", "tail")}
    fan = p.add(Fan("fan"))
    p.connect(ops["src"], "out", ops["left"], "in")
    p.connect(ops["src"], "out", ops["right"], "in")
    p.connect(ops["left"], "out", fan, "a")
    p.connect(ops["right"], "out", fan, "b")
    p.connect(fan, "out", ops["tail"], "in")
    return p


def outcome(job: Job) -> dict[str, Any]:
    """What must not depend on the loop."""
    try:
        results = {k: v.tolist() for k, v in job.result().items()}
        error = None
    except BaseException as exc:
        results, error = None, (type(exc).__name__, str(exc).replace(job.id, "<id>"))
    states = {row["name"]: (row["state"], row["start_ns"] is not None, row["end_ns"] is not None)
              for row in job.operator_states()}
    held = [i for i, v in enumerate(job._values) if v is not None]
    return {"results": results, "error": error, "state": job.state, "operators": states,
            "held": held, "started": job.started_ns is not None}


def run_both(pipe: Pipeline, payload: dict[str, Any], workers: int = 1) -> list[dict[str, Any]]:
    got = []
    for loop in LOOPS:
        with Runtime(workers=workers) as rt:
            assert rt._run_tasks is not None  # no GPU here: the C loop is the default
            if loop == "python":
                rt._run_tasks = None
            got.append(outcome(rt.submit(pipe, payload)))
    return got


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_success_is_the_same_in_both_loops(workers: int) -> None:
    c, py = run_both(diamond(), {"src.in": vec()}, workers)
    assert c == py
    assert c["results"] == {"tail.out": (2 * (vec() + 2) + 1).tolist()}
    assert c["state"] is JobState.SUCCEEDED and c["started"]
    assert set(c["operators"].values()) == {("succeeded", True, True)}
    assert c["held"] == [4]  # only the result slot: every intermediate value was dropped


@pytest.mark.parametrize(("mode", "error", "message"), [
    ("raise", OperatorError, "operator 'left' failed in job <id> ('diamond'): ValueError: bad "
                             "value in left"),
    ("exit", OperatorError, "SystemExit: 3"),
    ("dtype", PortTypeError, "emitted a bad value on output 'out'"),
    ("missing", PipelineError, "did not emit output(s) out"),
    ("unknown", PipelineError, "emitted unknown output 'other'"),
    ("wrong-name", PipelineError, "emitted unknown output 'ou'"),
    ("no-input", OperatorError, "has no input 'nope'; inputs are: in"),
])
def test_failures_are_the_same_in_both_loops(mode: str, error: type, message: str) -> None:
    c, py = run_both(diamond(mode), {"src.in": vec()})
    assert c == py
    assert c["error"][0] == error.__name__ and message in c["error"][1]
    assert c["state"] is JobState.FAILED
    assert c["operators"]["left"] == ("failed", True, True)
    assert c["operators"]["src"][0] == "succeeded"
    assert c["operators"]["tail"] == ("not_run", False, False)


def test_an_operators_traceback_reaches_the_error() -> None:
    with Runtime(workers=1) as rt:
        job = rt.submit(diamond("raise"), {"src.in": vec()})
        with pytest.raises(OperatorError) as info:
            job.result()
    assert "raise ValueError(f\"bad value in {self.name}\")" in info.value.traceback
    assert isinstance(info.value.__cause__, ValueError)


def test_optional_inputs_and_symbolic_ports_in_both_loops() -> None:
    p = Pipeline("sym")
    src = p.add(Step("src"))
    sym = p.add(Sym("sym"))
    fan = p.add(Fan("fan"))
    p.connect(src, "out", sym, "a")
    p.connect(sym, "out", fan, "a")
    ok = run_both(p, {"src.in": vec(3), "sym.b": vec(3), "fan.b": vec(3)})
    assert ok[0] == ok[1] and ok[0]["results"] == {"fan.out": [2.0, 5.0, 8.0]}
    bad = run_both(p, {"src.in": vec(3), "sym.b": vec(4), "fan.b": vec(3), "fan.c": vec(3)})
    assert bad[0] == bad[1]
    assert bad[0]["error"][0] == "PortTypeError" and "dimension 'N' is 3" in bad[0]["error"][1]


class Hold(Step):
    """Forward its input once ``release`` is set; ``started`` says it is running."""

    started: threading.Event
    release: threading.Event

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        self.started.set()
        self.release.wait(10)
        outputs["out"] = inputs["in"]


def test_a_job_cancelled_while_an_operator_runs_in_both_loops() -> None:
    for loop in LOOPS:
        started, release = threading.Event(), threading.Event()

        p = Pipeline("held")
        a, b = p.add(Hold("a", started=started, release=release)), p.add(Step("b"))
        p.connect(a, "out", b, "in")
        with Runtime(workers=1) as rt:
            if loop == "python":
                rt._run_tasks = None
            job = rt.submit(p, {"a.in": vec()})
            assert started.wait(10)
            assert job.cancel()
            release.set()
            assert job.wait(10)
        rows = {row["name"]: row["state"] for row in job.operator_states()}
        assert job.state is JobState.CANCELLED and rows == {"a": "cancelled", "b": "not_run"}, loop


def test_the_c_loop_keeps_no_reference_to_what_a_job_dropped() -> None:
    class Keep(Step):
        def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
            made = inputs["in"] + 1
            refs.append(weakref.ref(made))
            outputs["out"] = made

    refs: list[weakref.ref[np.ndarray]] = []
    p = chain(*(Keep(f"k{i}") for i in range(4)))
    with Runtime(workers=1) as rt:
        results = [rt.run(p, {"k0.in": vec()}) for _ in range(50)]
    gc.collect()
    alive = [r for r in refs if r() is not None]
    assert len(refs) == 200 and len(alive) == 50  # the results only
    assert {id(r()) for r in alive} == {id(res["k3.out"]) for res in results}


def test_the_task_loop_keeps_its_scheduler_alive_and_no_runtime() -> None:
    from clara_rt import _core
    from clara_rt.operator import Inputs, Outputs

    sched = _core.Scheduler()
    run_tasks = sched.task_loop((Inputs, Outputs, JobState.PENDING, JobState.RUNNING))
    alive = weakref.ref(sched)
    del sched
    gc.collect()
    assert alive() is not None  # held by run_tasks
    del run_tasks
    gc.collect()
    assert alive() is None
    with pytest.raises(TypeError, match=r"task_loop\(\) takes \(Inputs, Outputs"):
        _core.Scheduler().task_loop((Inputs, Outputs))  # type: ignore[arg-type]

    rt = Runtime(workers=1)
    rt.run(diamond(), {"src.in": vec()})
    rt.close()
    gone = weakref.ref(rt)
    del rt
    gc.collect()
    assert gone() is None  # the loop holds the scheduler, never the runtime

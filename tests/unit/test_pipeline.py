"""Pipeline building and validation: every mistake is reported where it is made."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from clara_rt import Operator, Pipeline, PipelineError, PortSpec
from tests.ops import Add, Scale, Source


class Typed(Operator):
    """An operator whose ports are given at construction (for type-mismatch tests)."""

    def __init__(self, name: str, ins: dict[str, dict[str, Any]],
                 outs: dict[str, dict[str, Any]]) -> None:
        super().__init__(name)
        self.ins, self.outs = ins, outs

    def setup(self, spec: Any) -> None:
        for port, kw in self.ins.items():
            spec.input(port, **kw)
        for port, kw in self.outs.items():
            spec.output(port, **kw)

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        pass


def chain(n: int) -> Pipeline:
    p = Pipeline("chain")
    ops = [p.add(Scale(f"s{i}")) for i in range(n)]
    for a, b in itertools.pairwise(ops):
        p.connect(a, "out", b, "in")
    return p


def test_connect_both_forms_and_open_ports() -> None:
    p = Pipeline("demo")
    a, b = p.add(Scale("a", factor=2.0)), p.add(Scale("b", factor=0.5))
    p.connect(a, "out", b, "in")
    assert a.factor == 2.0
    q = Pipeline("demo2")
    q.add(Scale("a"))
    q.add(Scale("b"))
    conn = q.connect("a.out", "b.in")
    assert str(conn) == "a.out -> b.in"
    for pipe in (p, q):
        assert list(pipe.open_inputs()) == ["a.in"]
        assert list(pipe.open_outputs()) == ["b.out"]
        assert pipe.topological_order() == ["a", "b"]


def test_duplicate_operator_name() -> None:
    p = Pipeline("dup")
    p.add(Scale("seg"))
    with pytest.raises(PipelineError, match=r"^duplicate operator name 'seg'"):
        p.add(Scale("seg"))


def test_default_names_are_unique() -> None:
    p = Pipeline()
    a, b = p.add(Scale()), p.add(Scale())
    assert a.name != b.name and a.name.startswith("Scale-")


def test_unknown_operator_lists_names() -> None:
    p = Pipeline("x")
    p.add(Scale("a"))
    with pytest.raises(PipelineError, match=r"has no operator 'b'; operators are: a"):
        p.connect("a.out", "b.in")


def test_unknown_input_port_lists_inputs() -> None:
    p = Pipeline("x")
    p.add(Scale("a"))
    p.add(Add("seg"))
    with pytest.raises(PipelineError,
                       match=r"^operator 'seg' has no input 'imgae'; inputs are: a, b$"):
        p.connect("a", "out", "seg", "imgae")


def test_unknown_output_port_lists_outputs() -> None:
    p = Pipeline("x")
    p.add(Scale("a"))
    p.add(Scale("b"))
    with pytest.raises(PipelineError, match=r"operator 'a' has no output 'outt'; outputs are: out"):
        p.connect("a.outt", "b.in")


def test_bad_address() -> None:
    p = Pipeline("x")
    with pytest.raises(PipelineError, match=r"'aout' is not an 'operator.port' address"):
        p.connect("aout", "b.in")


def test_input_connected_twice() -> None:
    p = Pipeline("x")
    for n in "abc":
        p.add(Scale(n))
    p.connect("a.out", "c.in")
    with pytest.raises(PipelineError, match=r"input 'c.in' is already fed by a.out -> c.in"):
        p.connect("b.out", "c.in")


def test_cycle_is_printed() -> None:
    p = Pipeline("x")
    for n in "abc":
        p.add(Scale(n))
    p.connect("a.out", "b.in")
    p.connect("b.out", "c.in")
    with pytest.raises(PipelineError, match=r"would make a cycle: a -> b -> c -> a$"):
        p.connect("c.out", "a.in")
    q = Pipeline("self")
    q.add(Add("a"))
    with pytest.raises(PipelineError, match=r"would make a cycle: a -> a$"):
        q.connect("a.out", "a.b")


@pytest.mark.parametrize(
    ("out", "inp", "message"),
    [
        ({"dtype": "float32"}, {"dtype": "int16"}, r"dtype float32 cannot feed dtype int16"),
        ({"shape": (3, -1)}, {"shape": (-1, -1, -1)},
         r"shape \(3, \*\) \(2-d\) cannot feed shape \(\*, \*, \*\) \(3-d\)"),
        ({"shape": (3, 4)}, {"shape": (3, 5)},
         r"shape \(3, 4\) cannot feed shape \(3, 5\) \(axis 1: 4 vs 5\)"),
        ({"device": "cuda"}, {"device": "cpu"}, r"device cuda cannot feed device cpu"),
        ({"format": "dicom"}, {"format": "nifti"}, r"format dicom cannot feed format nifti"),
        ({"kind": "stream"}, {"kind": "array"}, r"kind stream cannot feed kind array"),
    ],
)
def test_incompatible_ports(out: dict[str, Any], inp: dict[str, Any], message: str) -> None:
    p = Pipeline("x")
    p.add(Typed("src", {}, {"out": out}))
    p.add(Typed("dst", {"in": inp}, {}))
    with pytest.raises(PipelineError, match=r"cannot connect src.out -> dst.in: " + message):
        p.connect("src.out", "dst.in")


@pytest.mark.parametrize(
    ("out", "inp"),
    [
        ({"dtype": "float32", "shape": (-1, -1)}, {"dtype": "float32", "shape": ("H", "W")}),
        ({"shape": ("N", 3)}, {"shape": (7, 3)}),
        ({"device": "cuda"}, {"device": "any"}),
        ({"dtype": None}, {"dtype": "uint8"}),
        ({"kind": "stream", "format": "dicom"}, {"kind": "path"}),
        ({"kind": "array"}, {"kind": "object"}),
    ],
)
def test_compatible_ports(out: dict[str, Any], inp: dict[str, Any]) -> None:
    p = Pipeline("x")
    p.add(Typed("src", {}, {"out": out}))
    p.add(Typed("dst", {"in": inp}, {}))
    p.connect("src.out", "dst.in")
    plan = p.validate()
    assert [n.operator.name for n in plan.nodes] == ["src", "dst"]
    assert plan.edges == ((0, 1),)
    assert list(plan.payload) == [] and list(plan.results) == []


def test_port_spec_rejects_bad_declarations() -> None:
    with pytest.raises(ValueError, match=r"unknown dtype 'float33'"):
        PortSpec("x", dtype="float33")
    with pytest.raises(ValueError, match=r"kind must be one of array, stream, path, object"):
        PortSpec("x", kind="tensor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"device must be one of cpu, cuda, any"):
        PortSpec("x", device="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"use -1 for any size"):
        PortSpec("x", shape=(-2, 3))
    with pytest.raises(ValueError, match=r"port name must be an identifier"):
        PortSpec("a.b")
    assert PortSpec("x", dtype="f4").dtype == "float32"


def test_duplicate_port_declaration() -> None:
    with pytest.raises(PipelineError, match=r"operator 'bad' declares input 'in' twice"):
        Pipeline().add(_TwiceIn("bad"))


class _TwiceIn(Operator):
    def setup(self, spec: Any) -> None:
        spec.input("in")
        spec.input("in")


def test_operator_name_rules() -> None:
    with pytest.raises(PipelineError, match=r"without dots or whitespace, got 'a.b'"):
        Scale("a.b")
    with pytest.raises(PipelineError, match=r"parameter name 'compute' is reserved"):
        Scale("a", compute=1)


def test_unconnected_required_input_reported_before_any_job() -> None:
    p = Pipeline("fanin")
    p.add(Scale("src"))
    p.add(Add("merge"))
    p.connect("src.out", "merge.a")
    assert p.validate(inputs=["src.in", "merge.b"])
    with pytest.raises(PipelineError, match=r"^inputs of pipeline 'fanin': missing merge.b; its "
                                            r"open inputs are: src.in, merge.b \(connect the"):
        p.validate(inputs=["src.in"])
    with pytest.raises(PipelineError, match=r"unknown merge.a"):
        p.validate(inputs=["src.in", "merge.b", "merge.a"])


def test_empty_pipeline_rejected() -> None:
    with pytest.raises(PipelineError, match=r"pipeline 'empty' has no operators"):
        Pipeline("empty").validate()


def test_plan_fan_out_fan_in_slots() -> None:
    p = Pipeline("diamond")
    src, left, right = p.add(Source("src")), p.add(Scale("l")), p.add(Scale("r"))
    merge = p.add(Add("m"))
    p.connect(src, "out", left, "in")
    p.connect(src, "out", right, "in")
    p.connect(left, "out", merge, "a")
    p.connect(right, "out", merge, "b")
    plan = p.validate()
    assert [n.operator.name for n in plan.nodes] == ["src", "l", "r", "m"]
    assert plan.edges == ((0, 1), (0, 2), (1, 3), (2, 3))
    assert list(plan.payload) == ["src.in"] and list(plan.results) == ["m.out"]
    src_slot = plan.nodes[0].outputs[0][1]
    assert plan.shared_slots == {src_slot}
    assert p.validate() is plan  # cached until the pipeline changes


def test_100_operator_chain_validates() -> None:
    # How fast this is belongs to benchmarks/test_construct.py (`clara-rt bench construct`).
    plan = chain(100).validate()
    assert [n.operator.name for n in plan.nodes] == [f"s{i}" for i in range(100)]
    assert plan.edges == tuple((i, i + 1) for i in range(99))
    assert list(plan.payload) == ["s0.in"] and list(plan.results) == ["s99.out"]

"""Plan: a pipeline compiled into flat tables for the executor's hot path.

Every port value of a job lives in one list, ``job.values``, indexed by *slot*: one slot per
output port and one per open input (the payload). A node reads its inputs from the slots of the
outputs that feed it and writes its outputs into its own slots, so handing a value to N consumers
is one list store, and every consumer gets the very same object.

Nodes are numbered in topological order; the C++ scheduler sees only these numbers and the edges
between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clara_rt.operator import Operator
from clara_rt.ports import PortSpec

if TYPE_CHECKING:
    from clara_rt.pipeline import Pipeline

__all__ = ["Plan", "PlanNode"]


@dataclass(frozen=True, slots=True)
class PlanNode:
    """One operator of a compiled pipeline.

    Attributes:
        index: Node id (topological position) used by the scheduler.
        operator: The operator instance (shared by all jobs).
        compute: The operator's bound ``compute`` (looked up once).
        inputs: ``(port, slot)`` for every input; slot ``-1`` for an absent optional input.
        outputs: ``(port, slot, spec)`` for every output.
        checks: ``(port, slot, check)`` for every output, ``check`` being the port's compiled
            value checker (returns ``None`` or the problem), for the hot path.
        output_names: Declared output names, to detect unknown or missing outputs.
        release: Input slots that no other node reads, dropped as soon as this node is done.
        symbolic: ``(spec, is_output, port)`` of the ports with symbolic dimensions.
        producers: Nodes whose outputs this node reads (GPU: their CUDA events are waited on);
            ``-1`` stands for the payload (the submitting thread's stream).
        start: Index of its start time in a job's time list (``2 * index``).
        end: Index of its end time (``2 * index + 1``).
        hot: What the C task loop reads of the node, in one tuple: ``(compute, inputs,
            checks, len(outputs), start, end, index, release, operator, bool(symbolic))``
            (csrc/task_loop.cpp, ``HotField``, keeps the same order).
    """

    index: int
    operator: Operator
    compute: Any
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int, PortSpec], ...]
    checks: tuple[tuple[str, int, Callable[[Any], str | None]], ...]
    output_names: frozenset[str]
    release: tuple[int, ...]
    symbolic: tuple[tuple[PortSpec, bool, str], ...]
    producers: tuple[int, ...]
    start: int
    end: int
    hot: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Plan:
    """A validated, compiled pipeline (immutable; shared by every job of that pipeline).

    Weakly referenceable: a runtime releases a plan's graph and operators when it dies.

    Attributes:
        name: Pipeline name.
        nodes: One :class:`PlanNode` per operator, in topological order.
        edges: ``(src_node, dst_node)`` pairs, deduplicated.
        payload: ``"op.port"`` -> ``(slot, spec)`` for every open input.
        results: ``"op.port"`` -> slot for every open output.
        shared_slots: Slots read by more than one node (fan-out).
        num_slots: Length of a job's value list.
        open_inputs: ``(key, slot, spec)`` of every open input: ``payload`` as a table, for
            laying out a job's payload without a lookup per key.
    """

    name: str
    nodes: tuple[PlanNode, ...]
    edges: tuple[tuple[int, int], ...]
    payload: dict[str, tuple[int, PortSpec]]
    results: dict[str, int]
    shared_slots: frozenset[int]
    num_slots: int
    open_inputs: tuple[tuple[str, int, PortSpec], ...] = ()

    def payload_problem(self, keys: Iterable[str]) -> str | None:
        """Return what is wrong with a payload made of ``keys`` (missing or unknown), or None."""
        keys = list(keys)
        unknown = [k for k in keys if k not in self.payload]
        missing = [k for k, (_, spec) in self.payload.items()
                   if k not in keys and not spec.optional]
        if not unknown and not missing:
            return None
        expected = ", ".join(self.payload) or "(none: every input is connected)"
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if unknown:
            parts.append("unknown " + ", ".join(unknown))
        return (f"payload for pipeline '{self.name}': {'; '.join(parts)}; its open inputs are: "
                f"{expected}")

    @classmethod
    def build(cls, pipeline: Pipeline) -> Plan:
        """Compile ``pipeline`` (already checked edge by edge by ``connect``)."""
        order = pipeline.topological_order()
        index = {name: i for i, name in enumerate(order)}
        out_slot: dict[tuple[str, str], int] = {}
        for name in order:
            for port in pipeline.operator(name).spec.outputs:
                out_slot[(name, port)] = len(out_slot)
        num_slots = len(out_slot)
        payload: dict[str, tuple[int, PortSpec]] = {}
        readers: dict[int, int] = {}
        node_inputs: list[list[tuple[str, int]]] = []
        edges: set[tuple[int, int]] = set()
        edges_from_payload: set[int] = set()
        for name in order:
            op = pipeline.operator(name)
            ins: list[tuple[str, int]] = []
            for port, spec in op.spec.inputs.items():
                conn = pipeline.feeding(name, port)
                if conn is None:
                    slot = num_slots
                    num_slots += 1
                    payload[f"{name}.{port}"] = (slot, spec)
                    edges_from_payload.add(index[name])
                else:
                    slot = out_slot[(conn.src, conn.src_port)]
                    edges.add((index[conn.src], index[name]))
                ins.append((port, slot))
                readers[slot] = readers.get(slot, 0) + 1
            node_inputs.append(ins)
        results = {f"{n}.{p}": s for (n, p), s in out_slot.items() if s not in readers}
        producers: dict[int, set[int]] = {i: {-1} for i in edges_from_payload}
        for src, dst in edges:
            producers.setdefault(dst, set()).add(src)
        nodes = tuple(_node(i, pipeline.operator(name), node_inputs[i], out_slot, readers,
                            tuple(sorted(producers.get(i, ()))))
                      for i, name in enumerate(order))
        return cls(name=pipeline.name, nodes=nodes, edges=tuple(sorted(edges)), payload=payload,
                   results=results,
                   shared_slots=frozenset(s for s, n in readers.items() if n > 1),
                   num_slots=num_slots,
                   open_inputs=tuple((k, slot, spec) for k, (slot, spec) in payload.items()))


def _node(i: int, op: Operator, ins: list[tuple[str, int]], out_slot: dict[tuple[str, str], int],
          readers: dict[int, int], producers: tuple[int, ...]) -> PlanNode:
    spec = op.spec
    outs = tuple((port, out_slot[(op.name, port)], ps) for port, ps in spec.outputs.items())
    symbolic = tuple((ps, False, port) for port, ps in spec.inputs.items() if ps.symbols) + tuple(
        (ps, True, port) for port, ps in spec.outputs.items() if ps.symbols)
    compute = op.compute
    inputs = tuple(ins)
    checks = tuple((port, slot, ps._check) for port, slot, ps in outs)
    release = tuple(slot for _, slot in ins if readers[slot] == 1)
    return PlanNode(
        index=i,
        operator=op,
        compute=compute,
        inputs=inputs,
        outputs=outs,
        checks=checks,
        output_names=frozenset(spec.outputs),
        release=release,
        symbolic=symbolic,
        producers=producers,
        start=2 * i,
        end=2 * i + 1,
        hot=(compute, inputs, checks, len(outs), 2 * i, 2 * i + 1, i, release, op,
             bool(symbolic)),
    )

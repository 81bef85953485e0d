"""Pipeline: operators and the connections between their ports, checked as they are made.

Building a pipeline never starts a thread. Every mistake is reported by the call that makes it:
``add`` rejects a duplicate name, ``connect`` rejects an unknown operator or port (listing the
valid ones), an input connected twice, incompatible port types, and a connection that would close
a cycle (printing the cycle). Inputs left unconnected are the pipeline's inputs (the job payload
fills them); outputs left unconnected are its results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

from clara_rt.errors import PipelineError
from clara_rt.names import name_problem
from clara_rt.operator import Operator
from clara_rt.ports import PortSpec, connection_problem

if TYPE_CHECKING:
    from clara_rt.plan import Plan

__all__ = ["Connection", "Pipeline"]


@dataclass(frozen=True, slots=True)
class Connection:
    """One edge: output ``src.src_port`` feeds input ``dst.dst_port``."""

    src: str
    src_port: str
    dst: str
    dst_port: str

    def __str__(self) -> str:
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"


class Pipeline:
    """A DAG of operators connected through typed ports.

    Not thread-safe while it is being built; once built, many runtimes and jobs may use it at
    once. Changing a pipeline after jobs ran is allowed: the next submit compiles it again.

    Args:
        name: Shown in logs, errors and job records.
    """

    def __init__(self, name: str = "pipeline") -> None:
        self.name = name
        self._operators: dict[str, Operator] = {}
        self._connections: list[Connection] = []
        self._feeding: dict[tuple[str, str], Connection] = {}  # (dst, dst_port) -> connection
        self._successors: dict[str, list[str]] = {}
        self._version = 0
        self._plan: Plan | None = None

    # --- building -------------------------------------------------------------------------

    def add(self, operator: Operator) -> Operator:
        """Add ``operator`` (running its ``setup`` to learn its ports) and return it."""
        if not isinstance(operator, Operator):
            raise PipelineError(f"pipeline '{self.name}': add() takes an Operator, got "
                                f"{type(operator).__name__}")
        if operator.name in self._operators:
            other = self._operators[operator.name]
            what = "is already in" if other is operator else "has another operator named it in"
            raise PipelineError(f"duplicate operator name '{operator.name}': pipeline "
                                f"'{self.name}' {what} it; give each operator a unique name")
        operator.spec  # noqa: B018 - runs setup() now so that port errors surface here
        _check_names(self.name, operator)
        self._operators[operator.name] = operator
        self._successors[operator.name] = []
        self._changed()
        return operator

    @overload
    def connect(self, src: str, src_port: str, /) -> Connection: ...

    @overload
    def connect(self, src: Operator | str, src_port: str, dst: Operator | str, dst_port: str,
                /) -> Connection: ...

    def connect(self, src: Operator | str, src_port: str, dst: Operator | str | None = None,
                dst_port: str | None = None, /) -> Connection:
        """Connect an output to an input: ``connect(a, "out", b, "in")`` or ``("a.out", "b.in")``.

        Raises:
            PipelineError: unknown operator or port, input already connected, incompatible port
                types, or a cycle; the message names operators and ports.
        """
        if dst is None and dst_port is None:
            if not isinstance(src, str):
                raise PipelineError("connect() takes (src, src_port, dst, dst_port) or "
                                    "('op.port', 'op.port')")
            (src, src_port), (dst, dst_port) = _split(src), _split(src_port)
        elif dst is None or dst_port is None:
            raise PipelineError("connect() takes (src, src_port, dst, dst_port) or "
                                "('op.port', 'op.port')")
        a, b = self._operator(src), self._operator(dst)
        out_spec = _port(a, "output", src_port)
        in_spec = _port(b, "input", dst_port)
        conn = Connection(a.name, src_port, b.name, dst_port)
        if (b.name, dst_port) in self._feeding:
            raise PipelineError(f"input '{b.name}.{dst_port}' is already fed by "
                                f"{self._feeding[(b.name, dst_port)]}; an input takes one "
                                "connection (use an operator with several inputs to merge)")
        problem = connection_problem(out_spec, in_spec)
        if problem:
            raise PipelineError(f"cannot connect {conn}: {problem} (output is "
                                f"{out_spec.describe()}, input is {in_spec.describe()})")
        cycle = self._path(b.name, a.name)
        if cycle is not None:
            raise PipelineError(f"connecting {conn} would make a cycle: "
                                + " -> ".join([*cycle, b.name]))
        self._connections.append(conn)
        self._feeding[(b.name, dst_port)] = conn
        if b.name not in self._successors[a.name]:
            self._successors[a.name].append(b.name)
        self._changed()
        return conn

    # --- reading --------------------------------------------------------------------------

    @property
    def operators(self) -> tuple[Operator, ...]:
        """Operators in the order they were added."""
        return tuple(self._operators.values())

    @property
    def connections(self) -> tuple[Connection, ...]:
        """Connections in the order they were made."""
        return tuple(self._connections)

    def operator(self, name: str) -> Operator:
        """Return the operator called ``name`` (error lists the names that exist)."""
        return self._operator(name)

    def feeding(self, op: str, port: str) -> Connection | None:
        """Return the connection that feeds input ``op.port``, if any."""
        return self._feeding.get((op, port))

    def open_inputs(self) -> dict[str, PortSpec]:
        """Unconnected inputs, keyed ``"op.port"``: what a job's payload provides."""
        return {f"{op.name}.{name}": spec for op in self._operators.values()
                for name, spec in op.spec.inputs.items() if (op.name, name) not in self._feeding}

    def open_outputs(self) -> dict[str, PortSpec]:
        """Unconnected outputs, keyed ``"op.port"``: what ``job.result()`` returns."""
        used = {(c.src, c.src_port) for c in self._connections}
        return {f"{op.name}.{name}": spec for op in self._operators.values()
                for name, spec in op.spec.outputs.items() if (op.name, name) not in used}

    def topological_order(self) -> list[str]:
        """Operator names so that every operator comes after those that feed it.

        Ties keep the order of ``add`` (Kahn's algorithm with a FIFO), so it is deterministic.
        """
        indegree = {name: 0 for name in self._operators}
        for succs in self._successors.values():
            for s in succs:
                indegree[s] += 1
        ready = [n for n, d in indegree.items() if d == 0]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for s in self._successors[name]:
                indegree[s] -= 1
                if indegree[s] == 0:
                    ready.append(s)
        if len(order) != len(self._operators):  # connect() prevents this; guard anyway
            raise PipelineError(f"pipeline '{self.name}' has a cycle among: "
                                + ", ".join(n for n in self._operators if n not in order))
        return order

    def validate(self, inputs: Iterable[str] | None = None) -> Plan:
        """Check the whole pipeline and return its compiled :class:`~clara_rt.plan.Plan`.

        ``connect`` already checks each edge; this adds the whole-graph checks (not empty,
        acyclic) and, given ``inputs``, checks that exactly these ``"op.port"`` inputs are left
        for the payload: every other required input must be connected. Cached until the pipeline
        changes.

        Raises:
            PipelineError: empty pipeline, or unconnected required inputs not in ``inputs`` (or
                ``inputs`` naming ports that are connected or do not exist).
        """
        if self._plan is None:
            from clara_rt.plan import Plan

            if not self._operators:
                raise PipelineError(f"pipeline '{self.name}' has no operators; add() some first")
            self._plan = Plan.build(self)
        if inputs is not None:
            problem = self._plan.payload_problem(inputs)
            if problem is not None:
                raise PipelineError(problem.replace("payload for", "inputs of", 1)
                                    + " (connect the missing ones or provide them as inputs)")
        return self._plan

    def __iter__(self) -> Iterator[Operator]:
        return iter(self._operators.values())

    def __len__(self) -> int:
        return len(self._operators)

    def __repr__(self) -> str:
        return (f"<Pipeline '{self.name}': {len(self._operators)} operators, "
                f"{len(self._connections)} connections>")

    # --- private --------------------------------------------------------------------------

    def _changed(self) -> None:
        self._version += 1
        self._plan = None

    def _operator(self, ref: Operator | str) -> Operator:
        name = ref.name if isinstance(ref, Operator) else ref
        op = self._operators.get(name)
        if op is None or (isinstance(ref, Operator) and op is not ref):
            names = ", ".join(self._operators) or "(none)"
            raise PipelineError(f"pipeline '{self.name}' has no operator '{name}'; operators "
                                f"are: {names} (add() it first)")
        return op

    def _path(self, start: str, goal: str) -> list[str] | None:
        """Return a path start -> ... -> goal along connections, or None (iterative DFS)."""
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            if node == goal:
                return path
            if node in seen:
                continue
            seen.add(node)
            stack.extend((s, [*path, s]) for s in self._successors[node])
        return None


def _split(address: str) -> tuple[str, str]:
    op, dot, port = address.rpartition(".")
    if not dot or not op or not port:
        raise PipelineError(f"'{address}' is not an 'operator.port' address")
    return op, port


def _port(op: Operator, direction: str, port: str) -> PortSpec:
    ports = op.spec.inputs if direction == "input" else op.spec.outputs
    spec = ports.get(port)
    if spec is None:
        names = ", ".join(ports) or "(none)"
        raise PipelineError(f"operator '{op.name}' has no {direction} '{port}'; "
                            f"{direction}s are: {names}")
    return spec


def _check_names(pipeline: str, operator: Operator) -> None:
    """Refuse operator and port names that are not one safe path component (issue 16)."""
    named = [("operator", operator.name)]
    named += [("input", port) for port in operator.spec.inputs]
    named += [("output", port) for port in operator.spec.outputs]
    for what, name in named:
        problem = name_problem(name)
        if problem is not None:
            where = "" if what == "operator" else f" of operator '{operator.name}'"
            raise PipelineError(f"pipeline '{pipeline}': {what} name {name!r}{where} {problem}; "
                                f"names become file and folder names, so each must be one "
                                f"plain component such as 'liver-seg'")

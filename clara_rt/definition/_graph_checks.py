"""The graph checks that :class:`~clara_rt.definition._parser.Parser` runs after the operators.

Each check raises :class:`~clara_rt.errors.DefinitionError` at the YAML entry at fault. ``entries``
maps ``id(PortDef)`` to the mapping the port was read from and its label (``input #1 of operator
'seg'``), as the parser recorded them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clara_rt.definition._yaml import YMap
from clara_rt.definition.schema import OperatorDef, PortDef, find_source
from clara_rt.definition.typed_ports import mismatch, mismatch_key

__all__ = ["Entries", "check_cycles", "check_outputs", "check_source", "check_types"]

Entries = Mapping[int, tuple[YMap, str]]
"""``id(PortDef)`` -> (the mapping it was read from, its label)."""


def check_outputs(op: OperatorDef) -> None:
    """Refuse two outputs of one operator with the same name (or two unnamed ones)."""
    seen: dict[str | None, PortDef] = {}
    for port in op.outputs:
        first = seen.get(port.name)
        if first is not None:
            which = f"outputs named '{port.name}'" if port.name else "unnamed outputs"
            fix = "output names must be unique" if port.name else "name all but one"
            raise port.loc.error(f"operator '{op.name}' has two {which} (lines "
                                 f"{first.loc.line} and {port.loc.line}); {fix}")
        seen[port.name] = port


def check_source(ops: Mapping[str, OperatorDef], port: PortDef, entries: Entries) -> None:
    """Refuse an input whose ``from`` (and ``name``) finds no output."""
    if port.from_ is None:
        return
    found, key, problem = find_source(ops, port)
    if found is None:
        entry, what = entries[id(port)]
        raise entry.value_locs.get(key, port.loc).error(f"{what}: {problem}")


def check_types(ops: Mapping[str, OperatorDef], port: PortDef, entries: Entries) -> None:
    """Typed ports (0.5.0): the consumer's declared type must fit its producer's."""
    if port.from_ is None:
        return
    source = find_source(ops, port)[0]
    problem = mismatch(source, port) if source is not None else None
    if problem is None:
        return
    entry, what = entries[id(port)]
    assert source is not None
    source_what = entries[id(source)][1]
    raise entry.value_locs.get(mismatch_key(problem) or "", port.loc).error(
        f"{what} does not fit {source_what} (line {source.loc.line}): {problem}")


def check_cycles(operators: Sequence[OperatorDef], entries: Entries) -> None:
    """Refuse a loop among operators, naming it at the ``from`` that closes it."""
    consumers: dict[str, list[tuple[str, PortDef]]] = {op.name: [] for op in operators}
    for op in operators:
        for port in op.inputs:
            if port.from_ is not None:
                consumers[port.from_].append((op.name, port))
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        path.append(name)
        for consumer, port in consumers[name]:
            if consumer in path:
                cycle = " -> ".join([*path[path.index(consumer):], consumer])
                loc = entries[id(port)][0].value_locs["from"]
                raise loc.error(f"cycle among operators: {cycle}; a pipeline must not loop")
            if consumer not in done:
                visit(consumer)
        path.pop()
        done.add(name)

    for op in operators:
        if op.name not in done:
            visit(op.name)

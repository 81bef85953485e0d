"""Typed ports of api-version 0.5.0 definitions: does a ``from`` connection's declared type fit?

A 0.5.0 input or output entry may declare ``type`` (array|stream), ``element-type``, ``shape``
and ``format``. When both ends of a ``from`` connection declare some of them, they must agree by
the same rules as :meth:`clara_rt.Pipeline.connect` (:func:`clara_rt.ports.connection_problem`):
equal element types, equal rank, equal fixed sizes (``-1``, ``*`` and names such as ``H`` match
any size), equal kind and format. The check needs only the definition, so ``clara-rt validate``
runs it without resolving any operator: ``mismatch(producer_output, consumer_input)`` returns
e.g. ``'dtype float32 cannot feed dtype uint8'``, or ``None`` when they fit.
"""

from __future__ import annotations

from clara_rt.definition.schema import PortDef
from clara_rt.ports import PortKind, PortSpec, connection_problem

__all__ = ["declared_spec", "mismatch", "mismatch_key"]

_KEY_OF_PROBLEM = {"dtype": "element-type", "shape": "shape", "kind": "type", "format": "format"}


def declared_spec(entry: PortDef, *, kind: str | None = None) -> PortSpec | None:
    """Return the port type ``entry`` declares, or ``None`` when it declares none.

    Args:
        entry: An input or output entry.
        kind: Kind to assume when the entry has typed fields but no ``type`` (the other end's).
    """
    if (entry.type is None and entry.element_type is None and entry.shape is None
            and entry.format is None):
        return None
    port_kind: PortKind = "stream" if (entry.type or kind) == "stream" else "array"
    return PortSpec("declared", kind=port_kind, dtype=entry.element_type, shape=entry.shape,
                    format=entry.format)


def mismatch(source: PortDef, target: PortDef) -> str | None:
    """Say why output ``source`` cannot feed input ``target`` as declared (``None``: it can).

    A field declared on one side only is not compared (the operator's own ports decide it when
    the pipeline is built); a missing ``type`` is taken to be the other side's.
    """
    src = declared_spec(source, kind=target.type)
    dst = declared_spec(target, kind=source.type)
    if src is None or dst is None:
        return None
    return connection_problem(src, dst)


def mismatch_key(problem: str) -> str | None:
    """Return the YAML key a :func:`mismatch` message is about (``element-type``, ``shape``...)."""
    return _KEY_OF_PROBLEM.get(problem.split(" ", 1)[0])

"""Resolve each YAML operator of a definition to a runtime operator and name its ports.

The steps of :func:`~clara_rt.definition.build.build_pipeline` that turn one
:class:`~clara_rt.definition.schema.OperatorDef` into an operator added to the pipeline: which
way it is resolved (:func:`resolution`), the Python class imported and built, or the
:class:`~clara_rt.definition.command.CommandOperator` made, and where each YAML entry landed
(:class:`OpPorts`). The rules are in the docstring of ``build.py``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from clara_rt.definition.command import CommandOperator
from clara_rt.definition.schema import Location, OperatorDef, PortDef
from clara_rt.errors import DefinitionError, PipelineError
from clara_rt.operator import Operator
from clara_rt.pipeline import Pipeline
from clara_rt.ports import PortSpec, connection_problem

__all__ = ["ENTRY_POINT_GROUP", "OpPorts", "add_operator", "error_at", "port_name", "resolution"]

ENTRY_POINT_GROUP = "clara_rt.images"


def port_name(entry: PortDef, *, is_input: bool) -> str:
    """Return the runtime port name of a YAML input/output entry (see the module docstring)."""
    if is_input and entry.from_ is not None:
        candidates = (entry.path, entry.name)
    else:
        candidates = (entry.name, entry.path)
    for candidate in candidates:
        if candidate:
            name = re.sub(r"\W+", "_", candidate.strip("/")).strip("_")
            if name:
                return name if name[0].isalpha() or name[0] == "_" else f"p_{name}"
    return "input" if is_input else "output"


@dataclass
class OpPorts:
    """Where each YAML entry of one operator landed: entry -> runtime port name."""

    operator: Operator
    inputs: dict[int, str]  # id(entry) -> input port
    outputs: dict[str, str]  # YAML output name ("" for the unnamed one) -> output port
    entries: dict[str, PortDef]  # runtime port -> YAML entry


def resolution(op: OperatorDef) -> str | None:
    """Return how ``op`` runs ("clara-rt key", "image entry point", "command"), or None."""
    if op.clara_rt is not None and op.clara_rt.operator:
        return "clara-rt key"
    if op.container is not None and _image_target(op) is not None:
        return "image entry point"
    if op.container is not None and op.container.command:
        return "command"
    return None


def add_operator(pipeline: Pipeline, op_def: OperatorDef, how: str,
                  connections: dict[str, str], device: str | None = None) -> OpPorts:
    """Build the operator of ``op_def`` (resolved ``how``), add it and match its ports."""
    if how == "command":
        return _add_command(pipeline, op_def, connections)
    target = (op_def.clara_rt.operator if how == "clara-rt key" and op_def.clara_rt
              else _image_target(op_def))
    assert target is not None
    args = dict(op_def.clara_rt.args) if op_def.clara_rt is not None else {}
    op = _instantiate(target, op_def, args, device)
    if connections:
        op.connections = connections  # type: ignore[attr-defined]
    try:
        pipeline.add(op)
    except PipelineError as exc:
        raise DefinitionError(str(exc), path=op_def.loc.path, line=op_def.loc.line) from exc
    return _match_python_ports(op, op_def)


def error_at(loc: Location, message: str) -> DefinitionError:
    """Return a :class:`DefinitionError` carrying ``loc``'s file, line and column."""
    return DefinitionError(message, path=loc.path, line=loc.line, column=loc.column)


def _yaml_spec(entry: PortDef | None) -> PortSpec | None:
    if entry is None or entry.type is None:
        return None
    return PortSpec("typed", kind="array" if entry.type == "array" else "stream",
                    dtype=entry.element_type, shape=entry.shape, format=entry.format)


def _image_target(op: OperatorDef) -> str | None:
    assert op.container is not None
    image, tag = op.container.image, op.container.tag
    if not image:
        return None
    names = [f"{image}:{tag}", image] if tag else [image]
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return next((found[n] for n in names if n in found), None)


def _add_command(pipeline: Pipeline, op_def: OperatorDef,
                 connections: dict[str, str]) -> OpPorts:
    assert op_def.container is not None and op_def.container.command is not None
    ins = [(port_name(e, is_input=True), e) for e in op_def.inputs]
    outs = [(port_name(e, is_input=False), e) for e in op_def.outputs]
    for kind, named in (("input", ins), ("output", outs)):
        _unique(op_def, kind, [n for n, _ in named])
        for n, e in named:
            if not e.path:
                raise error_at(e.loc, f"{kind} '{n}' of command operator '{op_def.name}' needs a "
                                    "path: a command exchanges folders")
            if not e.path.startswith("/") or not e.path.strip("/"):
                raise error_at(e.loc, f"operator '{op_def.name}': container path must be an "
                                    f"absolute folder below /, got {e.path!r} ({kind} '{n}')")
    try:
        op = CommandOperator(op_def.name, command=op_def.container.command,
                             inputs=[(n, e.path or "") for n, e in ins],
                             outputs=[(n, e.path or "") for n, e in outs],
                             variables=op_def.variables, connections=connections,
                             source=str(op_def.loc), values=dict(op_def.container.values))
        pipeline.add(op)
    except PipelineError as exc:
        raise error_at(op_def.loc, str(exc)) from exc
    return OpPorts(op, {id(e): n for n, e in ins}, {(e.name or ""): n for n, e in outs},
                    {n: e for n, e in [*ins, *outs]})


def _instantiate(target: str, op_def: OperatorDef, args: dict[str, Any],
                 device: str | None = None) -> Operator:
    module_name, _, attr = target.partition(":")
    loc = op_def.clara_rt.loc if op_def.clara_rt is not None else op_def.loc
    if not module_name or not attr:
        raise error_at(loc, f"operator '{op_def.name}': '{target}' is not 'module.path:ClassName'")
    try:
        cls: Any = importlib.import_module(module_name)
        for part in attr.split("."):  # "module:Outer.Inner", as entry points allow
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as exc:
        hint = _import_hint(module_name, loc) if isinstance(exc, ModuleNotFoundError) else ""
        raise error_at(loc, f"operator '{op_def.name}': cannot import '{target}': {exc}"
                          f"{hint}") from exc
    if device is not None and "device" not in args and _takes_device(cls):
        args = {**args, "device": device}
    try:
        op = cls(op_def.name, **args)
    except Exception as exc:
        raise error_at(loc, f"operator '{op_def.name}': {target}({op_def.name!r}, **args) failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(op, Operator):
        raise error_at(loc, f"operator '{op_def.name}': '{target}' is not an Operator subclass")
    return op


def _takes_device(cls: Any) -> bool:
    """Whether an operator class's constructor has a ``device`` keyword parameter."""
    try:
        return "device" in inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to read (a C extension type)
        return False


def _import_hint(module_name: str, loc: Location) -> str:
    """Say where operator modules are looked for (``run`` and ``serve`` differ)."""
    folder = Path(loc.path).resolve().parent
    return (f"; clara-rt run and validate look for '{module_name}' in installed packages, then "
            f"in the definition's folder ({folder}); clara-rt serve only in installed packages "
            "and the server's PYTHONPATH (pip install the package holding it, or start serve "
            "with PYTHONPATH=DIR)")


def _match_python_ports(op: Operator, op_def: OperatorDef) -> OpPorts:
    mapping = dict(op_def.clara_rt.ports) if op_def.clara_rt is not None else {}
    inputs: dict[int, str] = {}
    outputs: dict[str, str] = {}
    entries: dict[str, PortDef] = {}
    for kind, yaml_entries, declared in (("input", op_def.inputs, op.spec.inputs),
                                         ("output", op_def.outputs, op.spec.outputs)):
        for entry in yaml_entries:
            port = _python_port(op_def, kind, entry, declared, mapping, len(yaml_entries))
            _check_declared_type(op_def, kind, entry, declared[port])
            entries[port] = entry
            if kind == "input":
                inputs[id(entry)] = port
            else:
                outputs[entry.name or ""] = port
    return OpPorts(op, inputs, outputs, entries)


def _python_port(op_def: OperatorDef, kind: str, entry: PortDef, declared: Mapping[str, PortSpec],
                 mapping: Mapping[str, str], count: int) -> str:
    yaml_name = port_name(entry, is_input=kind == "input")
    basename = entry.path.rstrip("/").rsplit("/", 1)[-1] if entry.path else None
    for key in (yaml_name, entry.name, entry.path, basename):
        if key and key in mapping:
            if mapping[key] not in declared:
                raise error_at(entry.loc, f"operator '{op_def.name}': ports maps '{key}' to "
                                        f"{kind} '{mapping[key]}', but its {kind}s are: "
                                        f"{', '.join(declared) or '(none)'}")
            return mapping[key]
    for key in (yaml_name, entry.name, basename):
        if key and key in declared:
            return key
    if count == 1 and len(declared) == 1:
        return next(iter(declared))
    raise error_at(entry.loc, f"operator '{op_def.name}': no {kind} matches '{yaml_name}'; its "
                            f"{kind}s are: {', '.join(declared) or '(none)'} (map it with "
                            f"clara-rt: {{ports: {{{yaml_name}: <port>}}}})")


def _check_declared_type(op_def: OperatorDef, kind: str, entry: PortDef, spec: PortSpec) -> None:
    typed = _yaml_spec(entry)
    if typed is None:
        return
    problem = (connection_problem(typed, spec) if kind == "input"
               else connection_problem(spec, typed))
    if problem:
        raise error_at(entry.loc, f"operator '{op_def.name}' {kind} '{spec.name}': the definition "
                                f"says {typed.describe()} but the operator declares "
                                f"{spec.describe()}: {problem}")


def _unique(op_def: OperatorDef, kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise error_at(op_def.loc, f"operator '{op_def.name}' has two {kind}s named '{name}' "
                                     "(give them different paths or names)")
        seen.add(name)

"""Turn a parsed Clara pipeline definition into a runnable :class:`~clara_rt.Pipeline`.

Each YAML operator becomes one runtime operator, resolved in this order:

1. an explicit ``clara-rt: {operator: "module:Class", args: {...}, ports: {...}}`` key;
2. an image mapping registered by an operator package in the entry-point group
   ``clara_rt.images`` (entry name ``image:tag`` or ``image``, value ``module:Class``);
3. its ``container.command``, run as a subprocess by
   :class:`~clara_rt.definition.command.CommandOperator`;
4. otherwise it is *unresolved*; :func:`build_pipeline` lists every unresolved operator and how
   to map it.

Port names. Each YAML ``input``/``output`` entry becomes one port. An output is named by its
``name``, else by its ``path`` (``/app/out/lung`` -> ``app_out_lung``), else ``output``. An input
with ``from`` is named by its ``path`` (else by the source output's name); one without ``from``
by its ``name``, else its ``path``, else ``input``: such inputs are the job's payload, filled with
the job's input folder. For a Python operator, a YAML port is matched to a Python port through the
key's ``ports`` mapping, else by equal name (the port name, the entry's ``name`` or the last part
of its ``path``), else when both sides have exactly one port.

Folders meet arrays: when a folder (``path``) port feeds a Python array port declared with a
``format``, a :class:`LoadFolderOp` is inserted that reads the folder in that format, and the
reverse (:class:`SaveFolderOp`) when an array feeds a command operator.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from clara_rt.arrays import resolve_device
from clara_rt.definition.command import CommandOperator
from clara_rt.definition.folders import LoadFolderOp, SaveFolderOp, folder_formats
from clara_rt.definition.schema import Location, OperatorDef, PipelineDefinition, PortDef
from clara_rt.errors import DefinitionError, PipelineError
from clara_rt.operator import Operator
from clara_rt.pipeline import Pipeline
from clara_rt.ports import PortSpec, connection_problem

__all__ = ["ENTRY_POINT_GROUP", "TRITON_GRPC_ENV", "TRITON_HTTP_ENV", "TRITON_SERVICE",
           "BuiltPipeline", "build_pipeline", "port_name", "unresolved"]

ENTRY_POINT_GROUP = "clara_rt.images"
TRITON_SERVICE = "triton"
"""The ``--service`` name whose URL serves every operator's Clara 0.6 ``models:``."""
TRITON_HTTP_ENV, TRITON_GRPC_ENV = "NVIDIA_TRITON_HTTPURI", "NVIDIA_TRITON_GRPCURI"


@dataclass(frozen=True)
class BuiltPipeline:
    """A definition turned into a runnable pipeline.

    Attributes:
        definition: The parsed definition.
        pipeline: The runtime pipeline.
        payload: ``"op.port"`` -> the YAML input entry fed by the job's input folder.
        results: ``"op.port"`` -> the YAML output entry (or Python port) left unconnected.
        resolved_by: Operator name -> ``"clara-rt key"``, ``"image entry point"`` or ``"command"``.
        device: Where the pipeline's arrays live: ``"cpu"`` or ``"cuda"`` (the resolved
            ``device`` of :func:`build_pipeline`; ``"cpu"`` when none was asked for).
    """

    definition: PipelineDefinition
    pipeline: Pipeline
    payload: dict[str, PortDef | None]
    results: dict[str, PortDef | None]
    resolved_by: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"

    def payload_for(self, input_dir: Path) -> dict[str, Any]:
        """Return the job payload: every payload port gets ``input_dir``."""
        return dict.fromkeys(self.payload, Path(input_dir))


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


def unresolved(definition: PipelineDefinition) -> list[OperatorDef]:
    """Return the operators that have no clara-rt key, image mapping or command."""
    return [op for op in definition.operators if _how(op) is None]


def build_pipeline(definition: PipelineDefinition, *,
                   services: Mapping[str, str] | None = None,
                   require_services: bool = True,
                   device: str | None = None) -> BuiltPipeline:
    """Build the runtime pipeline of ``definition``.

    Args:
        definition: A parsed definition.
        services: Service name -> URL (``--service trtis=http://127.0.0.1:8000``) for every
            service an operator declares; ``triton`` serves the Clara 0.6 ``models:`` of every
            operator (``NVIDIA_TRITON_HTTPURI``, or ``NVIDIA_TRITON_GRPCURI`` for ``grpc://``).
        require_services: With ``False`` (``clara-rt validate``), a service without a URL is
            not an error; its connection is left unset.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (``clara-rt run --device``, a job's
            ``device``); default the definition's ``clara-rt: {device: ...}``. Every operator
            whose class takes a ``device`` keyword (the readers, which put the data where the
            rest of the pipeline computes) gets the resolved device unless its own ``args`` set
            one; the other operators follow their inputs (NumPy or CuPy).

    Raises:
        DefinitionError: unresolved operators (all listed), a Python class that cannot be
            imported or built, ports that cannot be matched or whose types disagree, or a
            service (or ``models:`` without ``triton``) without a URL; each with the file
            position.
        DeviceUnavailableError: ``cuda`` was asked for where CuPy finds no CUDA device.
    """
    missing = unresolved(definition)
    if missing:
        raise DefinitionError(_unresolved_message(missing), path=definition.path,
                              line=missing[0].loc.line, column=missing[0].loc.column)
    services = dict(services or {})
    requested = device or definition.device
    resolved = resolve_device(requested)
    pipeline = Pipeline(definition.name)
    ports: dict[str, _OpPorts] = {}
    resolved_by: dict[str, str] = {}
    for op_def in definition.operators:
        how = _how(op_def)
        assert how is not None
        resolved_by[op_def.name] = how
        connections = _connections(op_def, services, require_services)
        ports[op_def.name] = _add_operator(pipeline, op_def, how, connections,
                                           resolved if requested is not None else None)
    for op_def in definition.operators:
        for entry in op_def.inputs:
            if entry.from_ is not None:
                _connect(pipeline, ports, op_def, entry)
    return BuiltPipeline(definition=definition, pipeline=pipeline,
                         payload=_payload(pipeline, ports, definition),
                         results=_results(pipeline, ports),
                         resolved_by=resolved_by, device=resolved)


# --- operators ------------------------------------------------------------------------------


@dataclass
class _OpPorts:
    """Where each YAML entry of one operator landed: entry -> runtime port name."""

    operator: Operator
    inputs: dict[int, str]  # id(entry) -> input port
    outputs: dict[str, str]  # YAML output name ("" for the unnamed one) -> output port
    entries: dict[str, PortDef]  # runtime port -> YAML entry


def _how(op: OperatorDef) -> str | None:
    if op.clara_rt is not None and op.clara_rt.operator:
        return "clara-rt key"
    if op.container is not None and _image_target(op) is not None:
        return "image entry point"
    if op.container is not None and op.container.command:
        return "command"
    return None


def _image_target(op: OperatorDef) -> str | None:
    assert op.container is not None
    image, tag = op.container.image, op.container.tag
    if not image:
        return None
    names = [f"{image}:{tag}", image] if tag else [image]
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return next((found[n] for n in names if n in found), None)


def _add_operator(pipeline: Pipeline, op_def: OperatorDef, how: str,
                  connections: dict[str, str], device: str | None = None) -> _OpPorts:
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


def _add_command(pipeline: Pipeline, op_def: OperatorDef,
                 connections: dict[str, str]) -> _OpPorts:
    assert op_def.container is not None and op_def.container.command is not None
    ins = [(port_name(e, is_input=True), e) for e in op_def.inputs]
    outs = [(port_name(e, is_input=False), e) for e in op_def.outputs]
    for kind, named in (("input", ins), ("output", outs)):
        _unique(op_def, kind, [n for n, _ in named])
        for n, e in named:
            if not e.path:
                raise _error(e.loc, f"{kind} '{n}' of command operator '{op_def.name}' needs a "
                                    "path: a command exchanges folders")
            if not e.path.startswith("/") or not e.path.strip("/"):
                raise _error(e.loc, f"operator '{op_def.name}': container path must be an "
                                    f"absolute folder below /, got {e.path!r} ({kind} '{n}')")
    try:
        op = CommandOperator(op_def.name, command=op_def.container.command,
                             inputs=[(n, e.path or "") for n, e in ins],
                             outputs=[(n, e.path or "") for n, e in outs],
                             variables=op_def.variables, connections=connections,
                             source=str(op_def.loc), values=dict(op_def.container.values))
        pipeline.add(op)
    except PipelineError as exc:
        raise _error(op_def.loc, str(exc)) from exc
    return _OpPorts(op, {id(e): n for n, e in ins}, {(e.name or ""): n for n, e in outs},
                    {n: e for n, e in [*ins, *outs]})


def _instantiate(target: str, op_def: OperatorDef, args: dict[str, Any],
                 device: str | None = None) -> Operator:
    module_name, _, attr = target.partition(":")
    loc = op_def.clara_rt.loc if op_def.clara_rt is not None else op_def.loc
    if not module_name or not attr:
        raise _error(loc, f"operator '{op_def.name}': '{target}' is not 'module.path:ClassName'")
    try:
        cls: Any = importlib.import_module(module_name)
        for part in attr.split("."):  # "module:Outer.Inner", as entry points allow
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as exc:
        hint = _import_hint(module_name, loc) if isinstance(exc, ModuleNotFoundError) else ""
        raise _error(loc, f"operator '{op_def.name}': cannot import '{target}': {exc}"
                          f"{hint}") from exc
    if device is not None and "device" not in args and _takes_device(cls):
        args = {**args, "device": device}
    try:
        op = cls(op_def.name, **args)
    except Exception as exc:
        raise _error(loc, f"operator '{op_def.name}': {target}({op_def.name!r}, **args) failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(op, Operator):
        raise _error(loc, f"operator '{op_def.name}': '{target}' is not an Operator subclass")
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


def _match_python_ports(op: Operator, op_def: OperatorDef) -> _OpPorts:
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
    return _OpPorts(op, inputs, outputs, entries)


def _python_port(op_def: OperatorDef, kind: str, entry: PortDef, declared: Mapping[str, PortSpec],
                 mapping: Mapping[str, str], count: int) -> str:
    yaml_name = port_name(entry, is_input=kind == "input")
    basename = entry.path.rstrip("/").rsplit("/", 1)[-1] if entry.path else None
    for key in (yaml_name, entry.name, entry.path, basename):
        if key and key in mapping:
            if mapping[key] not in declared:
                raise _error(entry.loc, f"operator '{op_def.name}': ports maps '{key}' to "
                                        f"{kind} '{mapping[key]}', but its {kind}s are: "
                                        f"{', '.join(declared) or '(none)'}")
            return mapping[key]
    for key in (yaml_name, entry.name, basename):
        if key and key in declared:
            return key
    if count == 1 and len(declared) == 1:
        return next(iter(declared))
    raise _error(entry.loc, f"operator '{op_def.name}': no {kind} matches '{yaml_name}'; its "
                            f"{kind}s are: {', '.join(declared) or '(none)'} (map it with "
                            f"clara-rt: {{ports: {{{yaml_name}: <port>}}}})")


def _check_declared_type(op_def: OperatorDef, kind: str, entry: PortDef, spec: PortSpec) -> None:
    typed = _yaml_spec(entry)
    if typed is None:
        return
    problem = (connection_problem(typed, spec) if kind == "input"
               else connection_problem(spec, typed))
    if problem:
        raise _error(entry.loc, f"operator '{op_def.name}' {kind} '{spec.name}': the definition "
                                f"says {typed.describe()} but the operator declares "
                                f"{spec.describe()}: {problem}")


# --- wiring ---------------------------------------------------------------------------------


def _connect(pipeline: Pipeline, ports: dict[str, _OpPorts],
             op_def: OperatorDef, entry: PortDef) -> None:
    assert entry.from_ is not None
    src_ports, dst_ports = ports[entry.from_], ports[op_def.name]
    src_port = src_ports.outputs.get(entry.name or "")
    if src_port is None:  # `from` without name on an operator whose only output is named
        src_port = next(iter(src_ports.outputs.values()))
    dst_port = dst_ports.inputs[id(entry)]
    # What both ends of the YAML declare was compared when the definition was parsed.
    src_spec = src_ports.operator.spec.outputs[src_port]
    dst_spec = dst_ports.operator.spec.inputs[dst_port]
    src_op, src_port = _adapt(pipeline, src_ports.operator, src_port, src_spec, dst_spec, entry)
    try:
        pipeline.connect(src_op, src_port, dst_ports.operator, dst_port)
    except PipelineError as exc:
        raise _error(entry.loc, str(exc)) from exc


def _adapt(pipeline: Pipeline, src: Operator, port: str, src_spec: PortSpec, dst_spec: PortSpec,
           entry: PortDef) -> tuple[Operator, str]:
    """Insert a folder loader/saver when a folder port meets an array port."""
    folder = {"path", "stream"}
    adapter: type[Operator]
    if src_spec.kind in folder and dst_spec.kind == "array":
        fmt, adapter = dst_spec.format or entry.format or src_spec.format, LoadFolderOp
    elif src_spec.kind == "array" and dst_spec.kind in folder:
        fmt, adapter = dst_spec.format or entry.format or src_spec.format or "npy", SaveFolderOp
    else:
        return src, port
    if fmt is None:
        raise _error(entry.loc, f"a folder feeds the array input '{dst_spec.name}': declare its "
                                f"format (format: in the definition or on the port); formats: "
                                f"{', '.join(folder_formats(adapter))}")
    if fmt not in folder_formats(adapter):
        raise _error(entry.loc, f"a {src_spec.kind} port feeds an {dst_spec.kind} port, but no "
                                f"folder {'loader' if adapter is LoadFolderOp else 'writer'} "
                                f"exists for format {fmt!r}; formats: "
                                f"{', '.join(folder_formats(adapter))}")
    name = f"{src.name}-{port}-{fmt}"
    if any(existing.name == name for existing in pipeline.operators):  # fan-out: share it
        return pipeline.operator(name), "out"
    op = pipeline.add(adapter(name, format=fmt))
    pipeline.connect(src, port, op, "in")
    return op, "out"


def _payload(pipeline: Pipeline, ports: dict[str, _OpPorts],
             definition: PipelineDefinition) -> dict[str, PortDef | None]:
    """Inputs the job's input folder feeds: the YAML inputs without ``from``, and nothing else.

    An optional Python input the definition does not mention stays empty (``None``); a required
    one is an error, so that the input folder never lands on a port that did not ask for it.
    """
    payload: dict[str, PortDef | None] = {}
    for key, spec in pipeline.open_inputs().items():
        entry = _entry(ports, key)
        if entry is not None:
            payload[key] = entry
        elif not spec.optional:
            op_name, _, port = key.partition(".")
            loc = definition.operator(op_name).loc
            raise _error(loc, f"operator '{op_name}' input '{port}' is not fed: add an input "
                              "entry for it (with 'from:' for another operator's output, or a "
                              "'path:' for the job's input folder)")
    return payload


def _results(pipeline: Pipeline, ports: dict[str, _OpPorts]) -> dict[str, PortDef | None]:
    return {key: _entry(ports, key) for key in pipeline.open_outputs()}


def _entry(ports: dict[str, _OpPorts], key: str) -> PortDef | None:
    """The YAML entry behind runtime port ``op.port`` (None for adapters and unlisted ports)."""
    op, _, port = key.partition(".")
    return ports[op].entries.get(port) if op in ports else None


# --- helpers --------------------------------------------------------------------------------


def _connections(op_def: OperatorDef, services: Mapping[str, str],
                 required: bool) -> dict[str, str]:
    env: dict[str, str] = {}
    for service in op_def.services:
        if service.name not in services:
            if not required:
                continue
            raise _error(service.loc, f"service '{service.name}' of operator '{op_def.name}' "
                                      "needs a running server: pass --service "
                                      f"{service.name}=http://HOST:PORT")
        url = services[service.name]
        for conn_name, _port in service.http:
            env[conn_name] = url
    if op_def.models:
        triton = services.get(TRITON_SERVICE)
        if triton is None:
            if required:
                raise _error(op_def.models_loc or op_def.loc,
                             f"models of operator '{op_def.name}' ({', '.join(op_def.models)}) "
                             "need a running Triton server: pass --service "
                             f"{TRITON_SERVICE}=http://HOST:PORT (or grpc://HOST:PORT)")
        else:
            env[_triton_connection(triton)] = triton
    return env


def _triton_connection(url: str) -> str:
    """``NVIDIA_TRITON_GRPCURI`` for a ``grpc://`` URL, else ``NVIDIA_TRITON_HTTPURI``."""
    return TRITON_GRPC_ENV if url.lower().startswith("grpc://") else TRITON_HTTP_ENV


def _yaml_spec(entry: PortDef | None) -> PortSpec | None:
    if entry is None or entry.type is None:
        return None
    return PortSpec("typed", kind="array" if entry.type == "array" else "stream",
                    dtype=entry.element_type, shape=entry.shape, format=entry.format)


def _unique(op_def: OperatorDef, kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _error(op_def.loc, f"operator '{op_def.name}' has two {kind}s named '{name}' "
                                     "(give them different paths or names)")
        seen.add(name)


def _unresolved_message(missing: list[OperatorDef]) -> str:
    lines = [f"{len(missing)} operator(s) cannot run in clara-rt:"]
    for op in missing:
        image = (f"{op.container.image}:{op.container.tag}" if op.container and op.container.tag
                 else (op.container.image if op.container else None))
        lines.append(f"  {op.name} ({op.loc}): image {image or '(none)'}, no command")
    lines.append("map each with a 'clara-rt: {operator: \"module:Class\"}' key, an entry point "
                 f"in group '{ENTRY_POINT_GROUP}' named after the image, or a container.command")
    return "\n".join(lines)


def _error(loc: Location, message: str) -> DefinitionError:
    return DefinitionError(message, path=loc.path, line=loc.line, column=loc.column)

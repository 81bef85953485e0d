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

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clara_rt.arrays import resolve_device
from clara_rt.definition._resolve import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from clara_rt.definition._resolve import OpPorts, add_operator, error_at, resolution
from clara_rt.definition._resolve import port_name as port_name
from clara_rt.definition.folders import LoadFolderOp, SaveFolderOp, folder_formats
from clara_rt.definition.schema import OperatorDef, PipelineDefinition, PortDef
from clara_rt.errors import DefinitionError, PipelineError
from clara_rt.operator import Operator
from clara_rt.pipeline import Pipeline
from clara_rt.ports import PortSpec

__all__ = ["ENTRY_POINT_GROUP", "TRITON_GRPC_ENV", "TRITON_HTTP_ENV", "TRITON_SERVICE",
           "BuiltPipeline", "build_pipeline", "port_name", "unresolved"]

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


def unresolved(definition: PipelineDefinition) -> list[OperatorDef]:
    """Return the operators that have no clara-rt key, image mapping or command."""
    return [op for op in definition.operators if resolution(op) is None]


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
    ports: dict[str, OpPorts] = {}
    resolved_by: dict[str, str] = {}
    for op_def in definition.operators:
        how = resolution(op_def)
        assert how is not None
        resolved_by[op_def.name] = how
        connections = _connections(op_def, services, require_services)
        ports[op_def.name] = add_operator(pipeline, op_def, how, connections,
                                          resolved if requested is not None else None)
    for op_def in definition.operators:
        for entry in op_def.inputs:
            if entry.from_ is not None:
                _connect(pipeline, ports, op_def, entry)
    return BuiltPipeline(definition=definition, pipeline=pipeline,
                         payload=_payload(pipeline, ports, definition),
                         results=_results(pipeline, ports),
                         resolved_by=resolved_by, device=resolved)


# --- wiring ---------------------------------------------------------------------------------


def _connect(pipeline: Pipeline, ports: dict[str, OpPorts],
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
        raise error_at(entry.loc, str(exc)) from exc


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
        raise error_at(entry.loc, f"a folder feeds the array input '{dst_spec.name}': declare its "
                                f"format (format: in the definition or on the port); formats: "
                                f"{', '.join(folder_formats(adapter))}")
    if fmt not in folder_formats(adapter):
        raise error_at(entry.loc, f"a {src_spec.kind} port feeds an {dst_spec.kind} port, but no "
                                f"folder {'loader' if adapter is LoadFolderOp else 'writer'} "
                                f"exists for format {fmt!r}; formats: "
                                f"{', '.join(folder_formats(adapter))}")
    name = f"{src.name}-{port}-{fmt}"
    if any(existing.name == name for existing in pipeline.operators):  # fan-out: share it
        return pipeline.operator(name), "out"
    op = pipeline.add(adapter(name, format=fmt))
    pipeline.connect(src, port, op, "in")
    return op, "out"


def _payload(pipeline: Pipeline, ports: dict[str, OpPorts],
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
            raise error_at(loc, f"operator '{op_name}' input '{port}' is not fed: add an input "
                              "entry for it (with 'from:' for another operator's output, or a "
                              "'path:' for the job's input folder)")
    return payload


def _results(pipeline: Pipeline, ports: dict[str, OpPorts]) -> dict[str, PortDef | None]:
    return {key: _entry(ports, key) for key in pipeline.open_outputs()}


def _entry(ports: dict[str, OpPorts], key: str) -> PortDef | None:
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
            raise error_at(service.loc, f"service '{service.name}' of operator '{op_def.name}' "
                                      "needs a running server: pass --service "
                                      f"{service.name}=http://HOST:PORT")
        url = services[service.name]
        for conn_name, _port in service.http:
            env[conn_name] = url
    if op_def.models:
        triton = services.get(TRITON_SERVICE)
        if triton is None:
            if required:
                raise error_at(op_def.models_loc or op_def.loc,
                             f"models of operator '{op_def.name}' ({', '.join(op_def.models)}) "
                             "need a running Triton server: pass --service "
                             f"{TRITON_SERVICE}=http://HOST:PORT (or grpc://HOST:PORT)")
        else:
            env[_triton_connection(triton)] = triton
    return env


def _triton_connection(url: str) -> str:
    """``NVIDIA_TRITON_GRPCURI`` for a ``grpc://`` URL, else ``NVIDIA_TRITON_HTTPURI``."""
    return TRITON_GRPC_ENV if url.lower().startswith("grpc://") else TRITON_HTTP_ENV


def _unresolved_message(missing: list[OperatorDef]) -> str:
    lines = [f"{len(missing)} operator(s) cannot run in clara-rt:"]
    for op in missing:
        image = (f"{op.container.image}:{op.container.tag}" if op.container and op.container.tag
                 else (op.container.image if op.container else None))
        lines.append(f"  {op.name} ({op.loc}): image {image or '(none)'}, no command")
    lines.append("map each with a 'clara-rt: {operator: \"module:Class\"}' key, an entry point "
                 f"in group '{ENTRY_POINT_GROUP}' named after the image, or a container.command")
    return "\n".join(lines)



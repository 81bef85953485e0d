"""Clara Deploy pipeline definitions (api-version 0.3.0 to 0.5.0) read into frozen records.

:func:`parse_definition` reads a definition file, checks it and returns a
:class:`PipelineDefinition`. Every record keeps the :class:`Location` it was written at, and every
error is a :class:`~clara_rt.errors.DefinitionError` starting with ``path:line:column:`` that says
what was expected. The checks, in the order they run:

* YAML syntax and duplicate keys (``_yaml.py``); the top level is a mapping.
* Keys: unknown ones are warnings (``PipelineDefinition.warnings``), errors with ``strict=True``;
  ``orchestrator`` and ``timeout`` (found in real Clara files) are ignored silently.
* Fields: ``api-version`` is supported, names are present and operator names unique, values have
  the expected kind (``container.command`` is a list of strings, ``input``/``output`` are lists of
  mappings...), 0.5.0 typed port fields are valid (``type`` array|stream, ``shape`` dims,
  ``element-type`` a NumPy dtype) and are warnings in 0.3.0/0.4.0 files.
* ``${{NAME}}`` is replaced in every string as it is read (see ``variables.py``).
* The graph: one unnamed output at most per operator and unique output names, every ``from``
  (and ``from`` + ``name``) names an existing operator output, connected typed ports agree, and
  the operators form no cycle.

Mapping operators to something runnable is not done here (see ``build.py``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clara_rt.definition._yaml import Location, load_yaml
from clara_rt.errors import DefinitionError

__all__ = [
    "PORT_TYPES",
    "SUPPORTED_API_VERSIONS",
    "ClaraRTKey",
    "ContainerDef",
    "Location",
    "OperatorDef",
    "PipelineDefinition",
    "PortDef",
    "ServiceDef",
    "find_source",
    "parse_definition",
]

SUPPORTED_API_VERSIONS: tuple[str, ...] = ("0.3.0", "0.4.0", "0.5.0")
TYPED_PORTS_VERSION = "0.5.0"
PORT_TYPES: tuple[str, ...] = ("array", "stream")
PULL_SECRETS_NOTE = "pull-secrets are ignored: clara-rt runs no containers"


@dataclass(frozen=True)
class PortDef:
    """One entry of an operator's ``input:`` or ``output:`` list.

    An input with ``from_`` takes the output of that operator named ``name`` (or its unnamed
    output when ``name`` is ``None``); an input without ``from_`` comes from the job's payload.
    The typed fields (``type``, ``shape``, ``element_type``, ``format``) are api-version 0.5.0;
    ``element_type`` is normalised to NumPy's dtype name.
    """

    name: str | None
    path: str | None
    from_: str | None
    type: str | None
    shape: tuple[int | str, ...] | None
    element_type: str | None
    format: str | None
    loc: Location


@dataclass(frozen=True)
class ContainerDef:
    """An operator's (or service's) ``container``: image, tag and command, all optional."""

    image: str | None
    tag: str | None
    command: tuple[str, ...] | None
    loc: Location
    values: tuple[tuple[str, str], ...] = ()
    """``(NAME, value)`` of job values left as ``${{NAME}}`` in ``command`` (data, see
    ``definition/_argv.py``)."""


@dataclass(frozen=True)
class ServiceDef:
    """A service an operator uses (e.g. Triton, ``trtis``).

    ``http`` holds ``(connection env name, port)`` pairs such as
    ``("NVIDIA_CLARA_TRTISURI", 8000)``: the variable the operator reads the service URL from.
    """

    name: str
    container: ContainerDef | None
    http: tuple[tuple[str, int], ...]
    loc: Location


@dataclass(frozen=True)
class ClaraRTKey:
    """The ``clara-rt:`` key of an operator: the Python class that runs it in-process.

    ``operator`` is ``"package.module:ClassName"``; ``args`` are its keyword arguments; ``ports``
    maps a YAML input/output (by name or path) to the Python port name.
    """

    operator: str | None
    args: dict[str, Any]
    ports: dict[str, str]
    loc: Location


@dataclass(frozen=True)
class OperatorDef:
    """One entry of ``operators:``. ``requests`` is ``{"gpu": int, "memory": int | str,
    "gpu-memory": int | str}`` (``gpu-memory`` is clara-rt's: device memory one job needs)."""

    name: str
    description: str
    container: ContainerDef | None
    variables: dict[str, str]
    requests: dict[str, Any]
    inputs: tuple[PortDef, ...]
    outputs: tuple[PortDef, ...]
    services: tuple[ServiceDef, ...]
    clara_rt: ClaraRTKey | None
    loc: Location
    models: tuple[str, ...] = ()
    """Clara 0.6 ``models:`` (names of the Triton models it uses); clara-rt starts none of
    them: ``--service triton=URL`` gives the operator ``NVIDIA_TRITON_HTTPURI`` (an
    ``http://`` URL) or ``NVIDIA_TRITON_GRPCURI`` (a ``grpc://`` one)."""
    models_loc: Location | None = None
    """Where ``models:`` is written (``None`` without one)."""


@dataclass(frozen=True)
class PipelineDefinition:
    """A checked pipeline definition; ``warnings`` are ``path:line:column: message`` strings."""

    api_version: str
    name: str
    operators: tuple[OperatorDef, ...]
    pull_secrets: tuple[str, ...]
    path: str
    warnings: tuple[str, ...]
    device: str | None = None  # the pipeline's ``clara-rt: {device: cpu|cuda|auto}``, if any

    def operator(self, name: str) -> OperatorDef:
        """Return the operator called ``name``.

        Raises:
            DefinitionError: There is none; the message lists the operators.
        """
        for op in self.operators:
            if op.name == name:
                return op
        names = ", ".join(op.name for op in self.operators)
        raise DefinitionError(f"pipeline '{self.name}' has no operator '{name}'; operators are: "
                              f"{names}", path=self.path)

    def edges(self) -> list[tuple[str, str]]:
        """Return ``(from_operator, to_operator)`` pairs in file order, without duplicates."""
        pairs = ((port.from_, op.name) for op in self.operators for port in op.inputs)
        return list(dict.fromkeys((src, dst) for src, dst in pairs if src is not None))

    def source_of(self, port: PortDef) -> PortDef:
        """Return the output that input ``port`` (one with ``from_``) takes.

        Raises:
            DefinitionError: ``port`` has no ``from_`` or names no existing output.
        """
        found, _key, problem = find_source({op.name: op for op in self.operators}, port)
        if found is None:
            raise port.loc.error(problem)
        return found


def parse_definition(source: str | os.PathLike[str], *, text: str | None = None,
                     variables: Mapping[str, str] | None = None,
                     environ: Mapping[str, str] | None = None,
                     strict: bool = False,
                     allow_undefined: bool = False) -> PipelineDefinition:
    """Read and check a Clara pipeline definition.

    Args:
        source: The file's path; read unless ``text`` is given (then only used in messages).
        text: The definition's YAML text, if already in memory.
        variables: ``${{NAME}}`` values given by the user (``--var``); they win over the rest.
        environ: Environment consulted next (default ``os.environ``), then the operator's and the
            top-level ``variables:``.
        strict: Make unknown keys and out-of-version fields errors instead of warnings.
        allow_undefined: Leave undefined ``${{NAME}}`` references in place, with one warning
            per name, instead of failing (``clara-rt validate`` / ``graph`` of a template).

    Returns:
        The checked definition.

    Raises:
        DefinitionError: The file cannot be read or is invalid; the message starts with
            ``path:line:column:`` and says what was expected.
    """
    path = os.fspath(source)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DefinitionError(f"cannot read the pipeline definition: {exc}",
                                  path=path) from exc
    from clara_rt.definition._parser import Parser  # it builds this module's records

    env = os.environ if environ is None else environ
    parser = Parser(path, strict, dict(variables or {}), env, allow_undefined)
    definition = parser.pipeline(load_yaml(text, path))
    if not parser.unset:
        return definition
    notes = tuple(f"{loc}: variable '{name}' is not set; 'run' needs --var {name}=VALUE"
                  for name, loc in sorted(parser.unset.items()))
    return dataclasses.replace(definition, warnings=definition.warnings + notes)


def find_source(ops: Mapping[str, OperatorDef], port: PortDef) -> tuple[PortDef | None, str, str]:
    """Find the output that input ``port`` takes (the rules of ``from`` and ``name``).

    Args:
        ops: The pipeline's operators by name.
        port: An input entry.

    Returns:
        ``(output, "", "")`` when found, else ``(None, key, why)``: the YAML key at fault
        (``"from"`` or ``"name"``) and a message listing the choices.
    """
    if port.from_ is None:
        return None, "name", "this input has no 'from'; it comes from the job's payload"
    src = ops.get(port.from_)
    if src is None:
        return None, "from", (f"'from: {port.from_}' names no operator; operators are: "
                              f"{', '.join(ops)}")
    named = [out.name for out in src.outputs if out.name is not None]
    unnamed = [out for out in src.outputs if out.name is None]
    if not src.outputs:
        return None, "from", f"operator '{src.name}' declares no output to take input from"
    if port.name is not None:
        found = next((out for out in src.outputs if out.name == port.name), None)
        if found is None:
            extra = " and one unnamed output (refer to it without 'name')" if unnamed else ""
            return None, "name", (f"operator '{src.name}' has no output named '{port.name}'; its "
                                  f"outputs are: {', '.join(named) or '(none named)'}{extra}")
        return found, "", ""
    if unnamed:
        return unnamed[0], "", ""
    if len(src.outputs) == 1:
        return src.outputs[0], "", ""
    return None, "from", (f"operator '{src.name}' has no unnamed output, so this input needs a "
                          f"'name' choosing one of: {', '.join(named)}")

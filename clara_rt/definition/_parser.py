"""The parser behind :func:`~clara_rt.definition.schema.parse_definition`.

:class:`Parser` walks one loaded document (see ``_yaml.py``) top-down, builds the records of
``schema.py`` and runs the graph checks once every operator is read. Variable scopes follow the
document: while an operator is read its own ``variables:`` are searched after ``--var`` and the
environment and before the top-level ``variables:``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from clara_rt.definition._graph_checks import (
    check_cycles,
    check_outputs,
    check_source,
    check_types,
)
from clara_rt.definition._port_reader import PortReader, mappings
from clara_rt.definition._yaml import Location, YList, YMap, describe
from clara_rt.definition.schema import (
    PULL_SECRETS_NOTE,
    SUPPORTED_API_VERSIONS,
    ClaraRTKey,
    ContainerDef,
    OperatorDef,
    PipelineDefinition,
    PortDef,
    ServiceDef,
)
from clara_rt.definition.variables import substitute

__all__ = ["Parser"]

_TOP_KEYS = ("api-version", "name", "operators", "pull-secrets", "variables", "clara-rt")
_TOP_CLARA_RT_KEYS = ("device",)
_DEVICES = ("cpu", "cuda", "auto")
_OPERATOR_KEYS = ("name", "description", "container", "variables", "requests", "input", "output",
                  "services", "clara-rt")
_SILENT_KEYS = frozenset({"orchestrator", "timeout"})
# Read, but left out of the "expected one of" list of an unknown operator key, which predates it.
_OPERATOR_EXTRA_KEYS = frozenset({"models"})
_CONTAINER_KEYS = ("image", "tag", "command")
_REQUEST_KEYS = ("gpu", "memory", "gpu-memory")
_SERVICE_KEYS = ("name", "container", "connections")
_MODEL_KEYS = ("name",)
_HTTP_KEYS = ("name", "port")
_CLARA_RT_KEYS = ("operator", "args", "ports")
_OPERATOR_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class Parser(PortReader):
    """Reads one document into records; the graph checks run once all operators are read."""

    def __init__(self, path: str, strict: bool, cli: Mapping[str, str],
                 environ: Mapping[str, str], keep_undefined: bool = False) -> None:
        self._base: list[Mapping[str, str]] = [cli, environ]
        super().__init__(path, strict, self._base, keep_undefined)
        self._top: dict[str, str] = {}
        self.version = ""
        self._entries: dict[int, tuple[YMap, str]] = {}  # id(PortDef) -> (its mapping, label)

    # --- The document -------------------------------------------------------------------------

    def pipeline(self, doc: Any) -> PipelineDefinition:
        if not isinstance(doc, YMap):
            loc = doc.loc if isinstance(doc, YList) else Location(self.path, 1, 1)
            raise loc.error("expected a mapping at the top level (api-version, name, operators), "
                            f"got {describe(doc)}")
        self.check_keys(doc, _TOP_KEYS, "the pipeline", silent=_SILENT_KEYS)
        self._top = self.variables(doc, "the pipeline")
        self.scopes = [*self._base, self._top]
        self.version = self.api_version(doc)
        name = self.name(doc, "the pipeline", "missing 'name': the pipeline needs a name")
        secrets = self.pull_secrets(doc)
        operators = self.operators(doc)
        for op in operators:
            check_outputs(op)
        by_name = {op.name: op for op in operators}
        for op in operators:
            for port in op.inputs:
                check_source(by_name, port, self._entries)
                check_types(by_name, port, self._entries)
        check_cycles(operators, self._entries)
        device = self.pipeline_device(doc)
        return PipelineDefinition(self.version, name, operators, secrets, self.path,
                                  tuple(self.warnings), device)

    def pipeline_device(self, doc: YMap) -> str | None:
        """Read the pipeline-level ``clara-rt: {device: cpu|cuda|auto}``."""
        box = self.mapping(doc, "clara-rt", "the pipeline")
        if box is None:
            return None
        what = "the clara-rt key of the pipeline"
        self.check_keys(box, _TOP_CLARA_RT_KEYS, what)
        device = self.text(box, "device", what)
        if device is not None and device not in _DEVICES:
            raise box.value_locs["device"].error(
                f"expected one of {', '.join(_DEVICES)} for 'device' in {what}, got '{device}'")
        return device

    def api_version(self, doc: YMap) -> str:
        choices = ", ".join(SUPPORTED_API_VERSIONS)
        version = self.text(doc, "api-version", "the pipeline")
        if version is None:
            raise doc.loc.error(f"missing 'api-version'; expected one of {choices}")
        if version not in SUPPORTED_API_VERSIONS:
            number = isinstance(doc["api-version"], int | float)
            hint = " (versions have three parts; write 0.4.0, not 0.4)" if number else ""
            raise doc.value_locs["api-version"].error(
                f"unsupported api-version '{version}'; expected one of {choices}{hint}")
        return version

    def pull_secrets(self, doc: YMap) -> tuple[str, ...]:
        items = self.sequence(doc, "pull-secrets", "the pipeline")
        if items is None:
            return ()
        self.warnings.append(f"{doc.key_locs['pull-secrets']}: {PULL_SECRETS_NOTE}")
        return tuple(self.item_text(items, i, "pull-secrets") for i in range(len(items)))

    def operators(self, doc: YMap) -> tuple[OperatorDef, ...]:
        items = self.sequence(doc, "operators", "the pipeline")
        if items is None:
            raise doc.loc.error("missing 'operators'; expected a list of operators")
        if not items:
            raise doc.value_locs["operators"].error("'operators' is empty; a pipeline needs at "
                                                    "least one operator")
        seen: dict[str, Location] = {}
        result: list[OperatorDef] = []
        for index, item in mappings(items, lambda i: f"for operator #{i} (with name, "
                                                     "container, input, output...)"):
            op = self.operator(item, index)
            if op.name in seen:
                raise item.value_locs["name"].error(
                    f"duplicate operator name '{op.name}' (lines {seen[op.name].line} and "
                    f"{item.value_locs['name'].line}); operator names must be unique")
            seen[op.name] = item.value_locs["name"]
            result.append(op)
        return tuple(result)

    def operator(self, item: YMap, index: int) -> OperatorDef:
        raw_name = item.raw.get("name")
        what = f"operator '{raw_name}'" if raw_name else f"operator #{index}"
        self.check_keys(item, _OPERATOR_KEYS, what, silent=_SILENT_KEYS | _OPERATOR_EXTRA_KEYS)
        own = self.variables(item, what)
        self.scopes = [*self._base, own, self._top]
        try:  # read in the usual file order, so that the first mistake is reported first
            name = self.name(item, what, f"missing 'name' in operator #{index}; every operator "
                                         "needs a unique name")
            description = self.text(item, "description", what) or ""
            container = self.container(item, what)
            requests = self.requests(item, what)
            inputs = self.ports(item, "input", what)
            outputs = self.ports(item, "output", what)
            return OperatorDef(name=name, description=description, container=container,
                               variables=own, requests=requests, inputs=inputs, outputs=outputs,
                               services=self.services(item, what),
                               clara_rt=self.clara_rt(item, what, inputs + outputs), loc=item.loc,
                               models=self.models(item, what),
                               models_loc=item.key_locs.get("models"))
        finally:
            self.scopes = [*self._base, self._top]

    # --- Operator parts -----------------------------------------------------------------------

    def container(self, parent: YMap, owner: str) -> ContainerDef | None:
        box = self.mapping(parent, "container", owner)
        if box is None:
            return None
        what = f"the container of {owner}"
        self.check_keys(box, _CONTAINER_KEYS, what)
        image, tag = self.text(box, "image", what), self.text(box, "tag", what)
        command: tuple[str, ...] | None = None
        items = box.get("command")
        if items is not None:
            if not isinstance(items, YList):
                raise box.value_locs["command"].error(
                    f"expected a list of strings for 'command' in {what} (e.g. [\"sh\", \"-c\", "
                    f"\"...\"]), got {describe(items)}")
            command, values = self.command(items, f"'command' in {what}")
            return ContainerDef(image, tag, command, box.loc, values)
        return ContainerDef(image, tag, command, box.loc)

    def command(self, items: YList, what: str) -> tuple[tuple[str, ...], tuple[tuple[str, str],
                                                                            ...]]:
        """Read a command; values given for the job stay ``${{NAME}}`` tokens (see _argv.py).

        Returns:
            The command and the ``(NAME, value)`` pairs its tokens stand for.
        """
        values: dict[str, str] = {}

        def lookup(name: str, loc: Location) -> str | None:
            given = next((scope[name] for scope in self._base if name in scope), None)
            if given is None:  # the definition's own variables: the author's text
                return self.lookup(name, loc)
            values[name] = given
            return "${{" + name + "}}"

        command: list[str] = []
        for i, (value, raw) in enumerate(zip(items, items.raw, strict=True)):
            loc = items.item_locs[i]
            if value is None or raw is None:
                raise loc.error(f"expected text for item {i + 1} of {what}, got "
                                f"{describe(value)}")
            command.append(substitute(raw, functools.partial(lookup, loc=loc), loc))
        return tuple(command), tuple(sorted(values.items()))

    def requests(self, parent: YMap, owner: str) -> dict[str, Any]:
        box = self.mapping(parent, "requests", owner)
        if box is None:
            return {}
        self.check_keys(box, _REQUEST_KEYS, f"the requests of {owner}")
        result: dict[str, Any] = {}
        gpu = box.get("gpu")
        if gpu is not None:
            if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
                raise box.value_locs["gpu"].error(f"expected a whole number >= 0 for 'gpu' in the "
                                                  f"requests of {owner}, got {describe(gpu)}")
            result["gpu"] = gpu
        for key in ("memory", "gpu-memory"):  # gpu-memory: clara-rt's own, not Clara's
            memory = box.get(key)
            if memory is None:  # an int (MB, as Clara counts) or a string such as "8Gi"
                continue
            if isinstance(memory, bool) or not isinstance(memory, int | str) or memory == "":
                raise box.value_locs[key].error(
                    f"expected a number or a size such as '8Gi' for '{key}' in the requests of "
                    f"{owner}, got {describe(memory)}")
            result[key] = self.text(box, key, owner) if isinstance(memory, str) else memory
        return result

    def services(self, parent: YMap, owner: str) -> tuple[ServiceDef, ...]:
        items = self.sequence(parent, "services", owner)
        if items is None:
            return ()
        result: list[ServiceDef] = []
        for index, item in mappings(items, lambda i: "(name, container, connections) for "
                                                     f"service #{i} of {owner}"):
            name = self.name(item, f"service #{index} of {owner}",
                             f"missing 'name' in service #{index} of {owner}")
            what = f"service '{name}' of {owner}"
            self.check_keys(item, _SERVICE_KEYS, what)
            result.append(ServiceDef(name, self.container(item, what), self.http(item, what),
                                     item.loc))
        return tuple(result)

    def models(self, parent: YMap, owner: str) -> tuple[str, ...]:
        """Clara 0.6 ``models: [{name: NAME}, ...]``: the names, in order, without repeats."""
        items = self.sequence(parent, "models", owner)
        if items is None:
            return ()
        names: list[str] = []
        for index, item in mappings(items, lambda i: f"(name) for model #{i} of {owner}, e.g. "
                                                     "{name: segmentation_liver_v1}"):
            what = f"model #{index} of {owner}"
            self.check_keys(item, _MODEL_KEYS, what)
            name = self.name(item, what, f"missing 'name' (the Triton model's name) in {what}")
            if name not in names:
                names.append(name)
        return tuple(names)

    def http(self, service: YMap, what: str) -> tuple[tuple[str, int], ...]:
        connections = self.mapping(service, "connections", what)
        if connections is None:
            return ()
        self.check_keys(connections, ("http",), f"the connections of {what}")
        items = self.sequence(connections, "http", f"the connections of {what}")
        if items is None:
            return ()
        result: list[tuple[str, int]] = []
        for index, item in mappings(items, lambda i: f"(name, port) for http connection #{i} "
                                                     f"of {what}"):
            conn = f"http connection #{index} of {what}"
            self.check_keys(item, _HTTP_KEYS, conn)
            name = self.name(item, conn, f"missing 'name' (the variable that receives the URL, "
                                         f"e.g. NVIDIA_CLARA_TRTISURI) in {conn}")
            port = item.get("port")
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                where = item.value_locs.get("port", item.loc)
                raise where.error(f"expected a port number (1-65535) for 'port' in {conn}, got "
                                  f"{describe(port)}")
            result.append((name, port))
        return tuple(result)

    def clara_rt(self, parent: YMap, owner: str, ports: tuple[PortDef, ...]) -> ClaraRTKey | None:
        box = self.mapping(parent, "clara-rt", owner)
        if box is None:
            return None
        what = f"the clara-rt key of {owner}"
        self.check_keys(box, _CLARA_RT_KEYS, what)
        target = self.text(box, "operator", what)
        if target is not None and not _OPERATOR_REF.fullmatch(target):
            raise box.value_locs["operator"].error(
                f"expected 'package.module:ClassName' for 'operator' in {what}, got '{target}'")
        args = self.mapping(box, "args", what)
        mapped = self.mapping(box, "ports", what) or YMap(box.loc)
        known = list(dict.fromkeys(key for p in ports for key in (p.name, p.path) if key))
        ports_map: dict[str, str] = {}
        for key in mapped:
            if key not in known:
                raise mapped.key_locs[key].error(
                    f"'{key}' in the ports of {what} is no input or output name or path of it; "
                    f"expected one of: {', '.join(known) or '(it declares no ports)'}")
            port_name = self.text(mapped, key, what)
            if not port_name:
                raise mapped.value_locs[key].error(f"expected the Python port name for '{key}' "
                                                   f"in the ports of {what}")
            ports_map[key] = port_name
        return ClaraRTKey(target, self.plain(args, box.loc) if args is not None else {},
                          ports_map, box.loc)

    def name(self, box: YMap, what: str, missing: str) -> str:
        name = self.text(box, "name", what)
        if name is None:
            raise box.loc.error(missing)
        if not name.strip():
            raise box.value_locs["name"].error(f"'name' in {what} is empty")
        self.check_name(box, name, f"'name' in {what}")
        return name

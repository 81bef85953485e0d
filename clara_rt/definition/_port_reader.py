"""Reading the ``input:`` and ``output:`` entries of an operator (:class:`PortReader`).

:class:`~clara_rt.definition._parser.Parser` inherits these steps. A port's typed fields
(``type``, ``shape``, ``element-type``, ``format``) belong to api-version 0.5.0; in an older
document they are read but warned about. Each port read is recorded in ``_entries`` with its
mapping and label, so that the graph checks (``_graph_checks.py``) can point at it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from clara_rt.definition._yaml import Reader, YList, YMap, describe
from clara_rt.definition.schema import PORT_TYPES, TYPED_PORTS_VERSION, PortDef
from clara_rt.names import name_problem

__all__ = ["PortReader", "mappings"]

_TYPED_KEYS = ("type", "shape", "element-type", "format")
_INPUT_KEYS = ("from", "name", "path", *_TYPED_KEYS)
_OUTPUT_KEYS = ("name", "path", *_TYPED_KEYS)
_DIM_NAME = re.compile(r"[A-Za-z_]\w*")


def mappings(items: YList, expected: Callable[[int], str]) -> Iterator[tuple[int, YMap]]:
    """Yield ``(index from 1, item)`` of a list of mappings.

    Raises:
        DefinitionError: At the first item that is no mapping: ``expected a mapping`` followed
            by ``expected(index)`` (what the mapping holds, for which entry).
    """
    for index, item in enumerate(items, 1):
        if not isinstance(item, YMap):
            raise items.item_locs[index - 1].error(
                f"expected a mapping {expected(index)}, got {describe(item)}")
        yield index, item


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


class PortReader(Reader):
    """Reads port entries; the document's ``version`` decides whether typed fields are warned."""

    version: str
    _entries: dict[int, tuple[YMap, str]]  # id(PortDef) -> (its mapping, label)

    def ports(self, parent: YMap, key: str, owner: str) -> tuple[PortDef, ...]:
        items = self.sequence(parent, key, owner)
        if items is None:
            return ()
        fields = f"(path, name{', from' if key == 'input' else ''}...)"
        return tuple(self.port(item, f"{key} #{index} of {owner}", is_input=key == "input")
                     for index, item in mappings(items, lambda i: f"{fields} for {key} #{i} of "
                                                                 f"{owner}"))

    def port(self, item: YMap, what: str, *, is_input: bool) -> PortDef:
        self.check_keys(item, _INPUT_KEYS if is_input else _OUTPUT_KEYS, what)
        name, path = self.text(item, "name", what), self.text(item, "path", what)
        if name is not None:
            self.check_name(item, name, f"port name in {what}")
        from_ = self.text(item, "from", what) if is_input else None
        if name is None and path is None and from_ is None:
            raise item.loc.error(f"{what} needs a 'path' or a 'name'")
        if _version(self.version) < _version(TYPED_PORTS_VERSION):  # 0.5.0 and later have them
            for key in _TYPED_KEYS:
                if key in item:
                    self.warn(item.key_locs[key], f"'{key}' in {what} is a typed-port field of "
                              f"api-version {TYPED_PORTS_VERSION}, not of {self.version}")
        port_type = self.text(item, "type", what)
        if port_type is not None and port_type not in PORT_TYPES:
            raise item.value_locs["type"].error(f"unknown port type '{port_type}' in {what}; "
                                                f"expected one of {', '.join(PORT_TYPES)}")
        port = PortDef(name=name, path=path, from_=from_, type=port_type,
                       shape=self.shape(item, what), element_type=self.element_type(item, what),
                       format=self.text(item, "format", what), loc=item.loc)
        self._entries[id(port)] = (item, what)
        return port

    def shape(self, item: YMap, what: str) -> tuple[int | str, ...] | None:
        dims = item.get("shape")
        if dims is None:
            return None
        hint = "expected a list of sizes, -1 or '*' (any size), or names such as 'H'"
        if not isinstance(dims, YList):
            raise item.value_locs["shape"].error(f"{hint} for 'shape' in {what}, got "
                                                 f"{describe(dims)}")
        result: list[int | str] = []
        for dim, loc in zip(dims, dims.item_locs, strict=True):
            if isinstance(dim, str):
                dim = self.expand(dim, loc)
            ok_int = isinstance(dim, int) and not isinstance(dim, bool) and dim >= -1
            ok_str = isinstance(dim, str) and (dim == "*" or _DIM_NAME.fullmatch(dim))
            if not ok_int and not ok_str:
                raise loc.error(f"{hint} in 'shape' of {what}, got {describe(dim)}")
            result.append(dim)
        return tuple(result)

    def element_type(self, item: YMap, what: str) -> str | None:
        given = self.text(item, "element-type", what)
        if given is None:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NumPy deprecates some aliases; still an answer
                dtype = np.dtype(given)
        except (TypeError, ValueError, SyntaxError):
            dtype = None
        if dtype is None or dtype.kind not in "biufc":
            raise item.value_locs["element-type"].error(
                f"unknown element-type '{given}' in {what}; expected a NumPy numeric dtype name "
                "such as float32, int16, uint8 or bool")
        return dtype.name

    def check_name(self, box: YMap, name: str, what: str) -> None:
        """Refuse a name that is not one safe path component (it names files and folders)."""
        problem = name_problem(name)
        if problem is not None:
            raise box.value_locs["name"].error(
                f"{what}: {name!r} {problem}; names become file and folder names, so each must "
                f"be one plain component such as 'liver-seg'")

"""Load YAML keeping the position of every mapping key, mapping value and list item.

PyYAML's ``yaml.compose`` (with the safe loader) gives a node tree whose nodes carry
``start_mark``; :func:`load_yaml` turns it into plain values (``dict``/``list``/scalars) where
every mapping is a :class:`YMap` and every list a :class:`YList`, both remembering where each
entry was written. Scalars keep their YAML types (``8000`` stays an int) and their source text
(``YMap.raw``), so a string field written as ``tag: 1.10`` can still be read as ``"1.10"``.

YAML syntax errors and duplicate keys become :class:`~clara_rt.errors.DefinitionError` with
``path:line:column`` and a plain-words explanation. :class:`Reader` reads typed values out of the
result (text with ``${{NAME}}`` replaced, mappings, lists) and records or raises unknown-key
warnings; the Clara schema itself lives in ``_parser.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from clara_rt.definition.variables import substitute
from clara_rt.errors import DefinitionError

__all__ = ["Location", "Reader", "YList", "YMap", "describe", "load_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 1_000_000  # alias expansion ("billion laughs") stops here
_MAX_DEPTH = 100  # nesting of lists and mappings; PyYAML's composer recurses per level

# PyYAML's wording of common mistakes -> what the user most likely did.
_HINTS = (
    ("expected <block end>", "bad indentation: this line does not line up with the block it "
                             "belongs to"),
    ("mapping values are not allowed here", "unexpected ':' here: the line is indented deeper "
                                            "than the key before it, or a value containing ': ' "
                                            "needs quotes"),
    ("could not find expected ':'", "expected 'key: value' here: a ':' is missing or the "
                                    "indentation is wrong"),
    ("found character '\\t'", "tab character: YAML indentation must use spaces"),
    ("found unexpected end of stream", "the text ends inside an unclosed quote or bracket"),
    ("expected a single document", "the file holds more than one YAML document ('---'); a "
                                   "pipeline definition is one document"),
)


@dataclass(frozen=True)
class Location:
    """A position in a definition file: 1-based ``line`` and ``column``.

    ``str(loc)`` is ``path:line:column``, the prefix of every error and warning.
    """

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"

    def error(self, message: str) -> DefinitionError:
        """Return a :class:`DefinitionError` located here (the caller raises it)."""
        return DefinitionError(message, path=self.path, line=self.line, column=self.column)


class YMap(dict[str, Any]):
    """A YAML mapping: a ``dict`` that also knows where each key and value was written.

    Keys are the keys' source text (``on:`` is the key ``"on"``, not ``True``).
    """

    def __init__(self, loc: Location) -> None:
        super().__init__()
        self.loc = loc
        self.key_locs: dict[str, Location] = {}
        self.value_locs: dict[str, Location] = {}
        self.raw: dict[str, str | None] = {}  # source text of scalar values, None for others


class YList(list[Any]):
    """A YAML sequence: a ``list`` that also knows where each item was written."""

    def __init__(self, loc: Location) -> None:
        super().__init__()
        self.loc = loc
        self.item_locs: list[Location] = []
        self.raw: list[str | None] = []


def load_yaml(text: str, path: str) -> Any:
    """Parse one YAML document, keeping positions.

    Args:
        text: The YAML source.
        path: File name used in locations and messages.

    Returns:
        A :class:`YMap`, :class:`YList`, a scalar, or ``None`` for an empty document.

    Raises:
        DefinitionError: On a YAML syntax error, a duplicate key or a recursive alias.
    """
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # checked up front for the whole text
        before = text[: exc.position]
        raise DefinitionError(
            f"invalid YAML: character {_codepoint(exc.character)} is not allowed (YAML text "
            "may hold tabs, newlines and printable characters only)", path=path,
            line=before.count("\n") + 1, column=exc.position - before.rfind("\n")) from exc
    try:
        node = loader.get_single_node()
        return None if node is None else _Converter(loader, path).convert(node)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, path) from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(f"invalid YAML: {exc}", path=path) from exc
    except RecursionError:
        raise DefinitionError(f"invalid YAML: lists and mappings are nested too deeply (a "
                              f"definition needs far fewer than {_MAX_DEPTH} levels)",
                              path=path) from None
    finally:
        loader.dispose()


class Reader:
    """Typed access to loaded YAML: strings get ``${{NAME}}`` replaced, mistakes get located.

    Args:
        path: File name for messages.
        strict: Turn :meth:`warn` into errors.
        scopes: Variable sources, searched in order; callers may replace ``self.scopes``.
        keep_undefined: Leave an undefined ``${{NAME}}`` as it is (recorded in ``unset``)
            instead of failing: for checking and drawing a template without its values.
    """

    def __init__(self, path: str, strict: bool, scopes: list[Mapping[str, str]],
                 keep_undefined: bool = False) -> None:
        self.path = path
        self.strict = strict
        self.scopes = scopes
        self.keep_undefined = keep_undefined
        self.unset: dict[str, Location] = {}  # undefined name -> where it is first used
        self.warnings: list[str] = []

    def lookup(self, name: str, loc: Location | None = None) -> str | None:
        """Return the value of variable ``name`` (used at ``loc``) from the first scope with it."""
        value = next((scope[name] for scope in self.scopes if name in scope), None)
        if value is None and self.keep_undefined:
            self.unset.setdefault(name, loc or Location(self.path, 1, 1))
            return "${{" + name + "}}"
        return value

    def expand(self, text: str, loc: Location) -> str:
        """Replace every ``${{NAME}}`` in ``text``, written at ``loc``."""
        return substitute(text, lambda name: self.lookup(name, loc), loc)

    def warn(self, loc: Location, message: str) -> None:
        """Record a warning at ``loc``, or raise it as an error when strict."""
        if self.strict:
            raise loc.error(message)
        self.warnings.append(f"{loc}: {message}")

    def check_keys(self, box: YMap, known: Collection[str], what: str,
                   silent: Collection[str] = ()) -> None:
        """Warn about every key of ``box`` that is neither ``known`` nor ``silent``."""
        for key in box:
            if key not in known and key not in silent:
                self.warn(box.key_locs[key], f"unknown key '{key}' in {what} (expected one of "
                                             f"{', '.join(known)})")

    def text(self, box: YMap, key: str, what: str) -> str | None:
        """Return ``box[key]`` as text (scalars as written), ``None`` when absent or empty."""
        value = box.get(key)
        if value is None:
            return None
        if isinstance(value, dict | list):
            raise box.value_locs[key].error(f"expected text for '{key}' in {what}, got "
                                            f"{describe(value)}")
        return self.expand(str(box.raw[key]), box.value_locs[key])

    def item_text(self, items: YList, index: int, what: str) -> str:
        """Return item ``index`` of ``items`` as text (scalars as written)."""
        value, raw = items[index], items.raw[index]
        if value is None or raw is None:
            raise items.item_locs[index].error(f"expected text for item {index + 1} of {what}, "
                                               f"got {describe(value)}")
        return self.expand(raw, items.item_locs[index])

    def mapping(self, box: YMap, key: str, what: str) -> YMap | None:
        """Return ``box[key]`` if it is a mapping, ``None`` when absent or empty."""
        return self._kind(box, key, what, YMap, "a mapping")  # type: ignore[no-any-return]

    def sequence(self, box: YMap, key: str, what: str) -> YList | None:
        """Return ``box[key]`` if it is a list, ``None`` when absent or empty."""
        return self._kind(box, key, what, YList, "a list")  # type: ignore[no-any-return]

    def variables(self, box: YMap, what: str) -> dict[str, str]:
        """Read ``box["variables"]``: names to text values (Clara environment variables)."""
        found = self.mapping(box, "variables", what)
        if found is None:
            return {}
        result: dict[str, str] = {}
        for name, value in found.items():
            if isinstance(value, dict | list):
                raise found.value_locs[name].error(
                    f"expected a plain value for variable '{name}' in {what}, got "
                    f"{describe(value)}")
            raw = "" if value is None else str(found.raw[name])
            result[name] = self.expand(raw, found.value_locs[name])
        return result

    def plain(self, value: Any, loc: Location) -> Any:
        """Return ``value`` as plain dicts/lists/scalars, with variables replaced in strings."""
        if isinstance(value, YMap):
            return {key: self.plain(item, value.value_locs[key]) for key, item in value.items()}
        if isinstance(value, YList):
            return [self.plain(item, at) for item, at in zip(value, value.item_locs, strict=True)]
        if isinstance(value, str):
            return self.expand(value, loc)
        return value

    def _kind(self, box: YMap, key: str, what: str, kind: type, name: str) -> Any:
        value = box.get(key)
        if value is not None and not isinstance(value, kind):
            raise box.value_locs[key].error(f"expected {name} for '{key}' in {what}, got "
                                            f"{describe(value)}")
        return value


def describe(value: Any) -> str:
    """Name a YAML value's kind for messages: ``a list``, ``the number 3``, ``nothing``..."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _codepoint(character: object) -> str:
    code = character if isinstance(character, int) else ord(str(character)[:1] or "\0")
    return f"U+{code:04X}"


def _syntax_error(exc: yaml.MarkedYAMLError, path: str) -> DefinitionError:
    """Convert PyYAML's error into a located DefinitionError that says what to fix."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "syntax error"
    own = problem
    if exc.context:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            context += f" at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        own = f"{context}: {problem}"
    plain = next((hint for key, hint in _HINTS if key in own), None)
    message = f"invalid YAML: {plain} (YAML says: {own})" if plain else f"invalid YAML: {own}"
    if mark is None:
        return DefinitionError(message, path=path)
    return DefinitionError(message, path=path, line=mark.line + 1, column=mark.column + 1)


class _Converter:
    """Turn a composed node tree into YMap/YList/scalars."""

    def __init__(self, loader: yaml.SafeLoader, path: str) -> None:
        self._loader = loader
        self._path = path
        self._active: set[int] = set()  # ids of collection nodes being converted (alias loops)
        self._count = 0

    def loc(self, node: yaml.Node) -> Location:
        return Location(self._path, node.start_mark.line + 1, node.start_mark.column + 1)

    def convert(self, node: yaml.Node) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise self.loc(node).error(f"document too large (over {_MAX_NODES} values once "
                                       "aliases are expanded)")
        if isinstance(node, yaml.ScalarNode):
            return self._loader.construct_object(node, deep=True)
        if id(node) in self._active:
            raise self.loc(node).error("an alias refers to the collection that contains it")
        if len(self._active) >= _MAX_DEPTH:
            raise self.loc(node).error(f"lists and mappings are nested too deeply (more than "
                                       f"{_MAX_DEPTH} levels)")
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node)
            assert isinstance(node, yaml.MappingNode)  # the only other kind compose() makes
            return self._mapping(node)
        finally:
            self._active.discard(id(node))

    def _sequence(self, node: yaml.SequenceNode) -> YList:
        out = YList(self.loc(node))
        for item in node.value:
            out.append(self.convert(item))
            out.item_locs.append(self.loc(item))
            out.raw.append(item.value if isinstance(item, yaml.ScalarNode) else None)
        return out

    def _mapping(self, node: yaml.MappingNode) -> YMap:
        out = YMap(self.loc(node))
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.loc(key_node).error("a mapping key must be plain text, not a list or "
                                               "a mapping")
            key = str(key_node.value)
            if key in out:
                first = out.key_locs[key]
                raise self.loc(key_node).error(
                    f"duplicate key '{key}' (lines {first.line} and {key_node.start_mark.line + 1}"
                    "); each key may appear once in a mapping")
            self._put(out, key, self.loc(key_node), value_node)
        for merged in merges:
            self._merge(out, merged)
        return out

    def _put(self, out: YMap, key: str, key_loc: Location, value_node: yaml.Node) -> None:
        out[key] = self.convert(value_node)
        out.key_locs[key] = key_loc
        out.value_locs[key] = self.loc(value_node)
        out.raw[key] = value_node.value if isinstance(value_node, yaml.ScalarNode) else None

    def _merge(self, out: YMap, node: yaml.Node) -> None:
        """Apply a ``<<: *anchor`` merge: keys written explicitly win."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise self.loc(source).error("'<<' (merge) expects a mapping or a list of "
                                             "mappings")
            merged = self.convert(source)
            for key in merged:
                if key not in out:
                    out[key] = merged[key]
                    out.key_locs[key] = merged.key_locs[key]
                    out.value_locs[key] = merged.value_locs[key]
                    out.raw[key] = merged.raw[key]

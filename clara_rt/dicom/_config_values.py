"""Typed values of the DICOM adapter's configuration (:mod:`clara_rt.dicom.config`): text,
lists of names, numbers, ports, AE titles, variables, each read from a located YAML mapping and
refused with :class:`AdapterConfigError` at ``path:line:column``.
"""

from __future__ import annotations

import re
from typing import Any

from clara_rt.definition._yaml import Location, YList, YMap, describe
from clara_rt.errors import DefinitionError

__all__ = ["AdapterConfigError", "ae_title", "at", "check_ae", "item_loc", "items", "known",
           "located", "mapping_item", "number", "port", "section", "strings", "text", "unique",
           "variables"]

# DICOM AE titles: 1-16 characters of the default repertoire, no backslash, no control codes.
# Called AE titles also name folders, so they are held to a file-name-safe subset.
_AE_CHARS = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_FOLDER_SAFE_AE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-. ]{0,15}$")


class AdapterConfigError(DefinitionError):
    """The DICOM adapter's configuration file is invalid.

    Carries ``path``, ``line`` and ``column`` like :class:`~clara_rt.errors.DefinitionError`;
    the message names the key and what it expects. Fix the file and start the adapter again.
    """



def section(box: YMap, key: str, kind: type, name: str) -> Any:
    if key not in box:
        raise located(box.loc, f"missing '{key}' section")
    value = box[key]
    if not isinstance(value, kind):
        raise at(box, key, f"expected {name} for '{key}', got {describe(value)}")
    return value


def items(box: YMap, key: str, *, required: bool) -> list[tuple[Any, Location]]:
    value = box.get(key)
    if value is None or (isinstance(value, YList) and not value):
        if required:
            where = box.value_locs.get(key, box.loc)
            raise located(where, f"'{key}' must list at least one entry")
        return []
    if not isinstance(value, YList):
        raise at(box, key, f"expected a list for '{key}', got {describe(value)}")
    return list(zip(value, value.item_locs, strict=True))


def mapping_item(value: Any, loc: Location, what: str) -> YMap:
    if not isinstance(value, YMap):
        raise located(loc, f"expected a mapping for {what}, got {describe(value)}")
    return value


def text(box: YMap, key: str, what: str, *, required: bool) -> str:
    value = box.get(key)
    if value is None:
        if required:
            raise located(box.loc, f"{what} has no '{key}'")
        return ""
    if isinstance(value, dict | list):
        raise at(box, key, f"expected text for '{key}' in {what}, got {describe(value)}")
    text = str(box.raw[key]).strip()
    if not text:
        raise at(box, key, f"'{key}' in {what} is empty")
    return text


def strings(box: YMap, key: str, what: str, *, required: bool) -> tuple[str, ...]:
    value = box.get(key)
    if value is None or (isinstance(value, YList) and not value):
        if required:
            raise located(
                box.value_locs.get(key, box.loc),
                f"{what} needs '{key}': a list of at least one name")
        return ()
    if not isinstance(value, YList):
        raise at(box, key, f"expected a list for '{key}' in {what}, got {describe(value)}")
    out = []
    for index, (item, raw) in enumerate(zip(value, value.raw, strict=True)):
        if raw is None or item is None or not str(raw).strip():
            raise located(
                value.item_locs[index],
                f"item {index + 1} of '{key}' in {what} must be text, got {describe(item)}")
        out.append(str(raw).strip())
    return tuple(out)


def number(box: YMap, key: str, what: str, default: float, *, integer: bool = False,
            positive: bool = False) -> float:
    value = box.get(key)
    if value is None:
        return default
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind):
        raise at(box, key, f"'{key}' in {what} must be a{'n integer' if integer else ' number'}"
                            f", got {describe(value)}")
    if value < 0 or (positive and value == 0):
        raise at(box, key, f"'{key}' in {what} must be {'> 0' if positive else '>= 0'}, got "
                            f"{value}")
    return float(value) if not integer else value


def port(box: YMap, what: str) -> int:
    if "port" not in box or box["port"] is None:
        raise located(box.loc, f"{what} has no 'port'")
    value = box["port"]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise at(box, "port", f"'port' in {what} must be an integer from 1 to 65535, got "
                               f"{describe(value)}")
    return value


def ae_title(box: YMap, key: str, what: str, *, folder_safe: bool = False) -> str:
    title = text(box, key, what, required=True)
    check_ae(title, box.value_locs[key], f"'{key}' in {what}", folder_safe=folder_safe)
    return title


def check_ae(title: str, loc: Location, what: str, *, folder_safe: bool = False) -> None:
    if not _AE_CHARS.match(title):
        raise located(loc, f"{what}: {title!r} is not a valid AE title (1 to 16 characters, no "
                        "backslash or control characters)")
    if folder_safe and not _FOLDER_SAFE_AE.match(title):
        raise located(loc, f"{what}: called AE title {title!r} names a storage folder: use "
                        "letters, digits, '_', '-', '.' and spaces, not starting with '.' or a "
                        "space")


def variables(box: YMap, what: str) -> dict[str, str]:
    found = box.get("variables")
    if found is None:
        return {}
    if not isinstance(found, YMap):
        raise at(box, "variables", f"expected a mapping for 'variables' in {what}, got "
                                    f"{describe(found)}")
    out: dict[str, str] = {}
    for name, value in found.items():
        if isinstance(value, dict | list):
            raise located(
                found.value_locs[name],
                f"variable '{name}' of {what} must be a plain value, got {describe(value)}")
        out[name] = "" if value is None else str(found.raw[name])
    return out


def known(box: YMap, keys: tuple[str, ...], what: str) -> None:
    for key in box:
        if key not in keys:
            raise located(box.key_locs[key], f"unknown key '{key}' in {what} (expected one "
                                              f"of {', '.join(keys)})")


def unique(names: list[str], box: YMap, key: str, what: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise located(
                item_loc(box, key, index),
                f"{what} '{name}' is defined twice in '{key}'")
        seen.add(name)


def at(box: YMap, key: str, message: str) -> AdapterConfigError:
    return located(box.value_locs.get(key, box.loc), message)


def item_loc(box: YMap, key: str, index: int) -> Location:
    items = box[key]
    return items.item_locs[index] if isinstance(items, YList) else box.value_locs[key]


def located(loc: Location, message: str) -> AdapterConfigError:
    return AdapterConfigError(message, path=loc.path, line=loc.line, column=loc.column)

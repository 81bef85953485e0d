"""Load and check the DICOM adapter's YAML configuration.

The file has three sections::

    dicom:                        # this adapter as a DICOM node
      ae-title: CLARA             # its own AE title (also the calling AE of exports)
      host: 127.0.0.1             # bind address (default 127.0.0.1)
      port: 11112
      storage: /var/lib/clara-rt/dicom   # received instances (default ./dicom-adapter)
      quiet-time: 5               # seconds without a new instance before a series is complete
      group-by: series            # series | study
      max-pdu: 0                  # 0: no limit
      max-associations: 32        # at a time; more are rejected (transient, local limit)
      acse-timeout: 10            # s to wait for a connection's A-ASSOCIATE-RQ (and releases)
      dimse-timeout: 60           # s to wait for the next DIMSE message
      network-timeout: 60         # s an established association may stay idle
    ae-titles:                    # called AE title -> pipelines
      - name: LUNGSEG
        pipelines: [ct-lung-seg]
        priority: normal          # immediate | high | normal | low
        allowed-calling-aes: [SCANNER1]     # absent or empty: any
        ignored-sop-classes: ["1.2.840.10008.5.1.4.1.1.7"]
        variables: {}
        destinations: [PACS]
    destinations:
      - {name: PACS, ae-title: ORTHANC, host: 127.0.0.1, port: 4242, retries: 3, retry-delay: 2}

Every mistake (unknown key, bad AE title, port out of range, unknown destination, bad priority,
no ``ae-titles``) raises :class:`AdapterConfigError` with ``path:line:column``. A relative
``storage`` is taken relative to the configuration file's folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clara_rt.definition._yaml import Location, YList, YMap, describe, load_yaml
from clara_rt.errors import DefinitionError
from clara_rt.job import PRIORITY_NAMES

__all__ = ["PRIORITIES", "AdapterConfig", "AdapterConfigError", "CalledAe", "Destination",
           "Listener", "config_problems", "load_config", "parse_config"]

PRIORITIES = PRIORITY_NAMES  # the one list, from clara_rt.job (kept under this name for importers)
GROUP_BY = ("series", "study")
_TIMEOUTS = {"acse-timeout": 10.0, "dimse-timeout": 60.0, "network-timeout": 60.0}
DEFAULT_STORAGE = "dicom-adapter"

# DICOM AE titles: 1-16 characters of the default repertoire, no backslash, no control codes.
# Called AE titles also name folders, so they are held to a file-name-safe subset.
_AE_CHARS = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_FOLDER_SAFE_AE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-. ]{0,15}$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class AdapterConfigError(DefinitionError):
    """The DICOM adapter's configuration file is invalid.

    Carries ``path``, ``line`` and ``column`` like :class:`~clara_rt.errors.DefinitionError`;
    the message names the key and what it expects. Fix the file and start the adapter again.
    """


@dataclass(frozen=True)
class Listener:
    """The ``dicom:`` section: this adapter as a DICOM node (its SCP)."""

    ae_title: str
    port: int
    host: str = "127.0.0.1"
    storage: Path = field(default_factory=lambda: Path(DEFAULT_STORAGE).resolve())
    quiet_time: float = 5.0
    group_by: str = "series"
    max_pdu: int = 0
    max_associations: int = 32
    acse_timeout: float = 10.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0


@dataclass(frozen=True)
class CalledAe:
    """One ``ae-titles`` entry: what happens to instances sent to this called AE title."""

    name: str
    pipelines: tuple[str, ...]
    priority: str = "normal"
    allowed_calling_aes: frozenset[str] = frozenset()
    ignored_sop_classes: frozenset[str] = frozenset()
    variables: Mapping[str, str] = field(default_factory=dict, hash=False)
    destinations: tuple[str, ...] = ()

    def allows(self, calling_ae: str) -> bool:
        """Return whether ``calling_ae`` may send to this AE title (empty list: anyone)."""
        return not self.allowed_calling_aes or calling_ae.strip() in self.allowed_calling_aes


@dataclass(frozen=True)
class Destination:
    """One ``destinations`` entry: a DICOM node results are sent to with C-STORE."""

    name: str
    ae_title: str
    host: str
    port: int
    retries: int = 3
    retry_delay: float = 2.0

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title} at {self.host}:{self.port})"


@dataclass(frozen=True)
class AdapterConfig:
    """The whole adapter configuration, checked."""

    dicom: Listener
    ae_titles: tuple[CalledAe, ...]
    destinations: tuple[Destination, ...] = ()
    path: str = "<config>"

    def called_ae(self, name: str) -> CalledAe | None:
        """Return the ``ae-titles`` entry for called AE title ``name`` (spaces ignored)."""
        name = name.strip()
        return next((ae for ae in self.ae_titles if ae.name == name), None)

    def destination(self, name: str) -> Destination | None:
        """Return the destination called ``name``, or ``None``."""
        return next((d for d in self.destinations if d.name == name), None)


def load_config(path: str | Path) -> AdapterConfig:
    """Read and check the adapter configuration file at ``path``.

    Raises:
        AdapterConfigError: The file cannot be read, is not YAML, or breaks a rule; the message
            starts with ``path:line:column``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdapterConfigError(f"cannot read the DICOM adapter configuration: {exc}",
                                 path=str(path)) from exc
    return parse_config(text, str(path), base=path.resolve().parent)


def parse_config(text: str, path: str = "<config>", *, base: Path | None = None) -> AdapterConfig:
    """Check the configuration ``text``; ``path`` names it in messages.

    Args:
        text: The YAML source.
        path: File name used in messages.
        base: Folder a relative ``storage`` is relative to (default: the current folder).

    Raises:
        AdapterConfigError: On the first mistake, located (:func:`config_problems` finds all).
    """
    root = _root(text, path)
    _known(root, ("dicom", "ae-titles", "destinations"), "the configuration")
    listener = _listener(_section(root, "dicom", YMap, "a mapping"), base or Path.cwd())
    destinations = tuple(_destination(item, loc) for item, loc in
                         _items(root, "destinations", required=False))
    _unique([d.name for d in destinations], root, "destinations", "destination")
    called = tuple(_called_ae(item, loc, {d.name for d in destinations})
                   for item, loc in _items(root, "ae-titles", required=True))
    _unique([ae.name for ae in called], root, "ae-titles", "AE title")
    return AdapterConfig(listener, called, destinations, path)


def config_problems(path: str | Path) -> list[AdapterConfigError]:
    """Check the configuration file at ``path`` and return every mistake (empty: it is valid).

    Each section, each destination and each AE title is checked on its own, so a mistake in one
    does not hide those in the others (``clara-rt dicom --check``); within one entry the first
    mistake is reported. The list is in file order.
    """
    path = Path(path)
    try:
        root = _root(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return [AdapterConfigError(f"cannot read the DICOM adapter configuration: {exc}",
                                   path=str(path))]
    except AdapterConfigError as exc:
        return [exc]
    problems: list[AdapterConfigError] = []

    def attempt(check: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except AdapterConfigError as exc:
            problems.append(exc)
            return None

    attempt(_known, root, ("dicom", "ae-titles", "destinations"), "the configuration")
    section = attempt(_section, root, "dicom", YMap, "a mapping")
    if section is not None:
        attempt(_listener, section, path.resolve().parent)
    items = attempt(_items, root, "destinations", required=False) or []
    found = [attempt(_destination, item, loc) for item, loc in items]
    attempt(_unique, [d.name for d in found if d is not None], root, "destinations",
            "destination")
    # An entry that failed still defines its name: AE titles naming it are not wrong too.
    named = {str(item["name"]) for item, _ in items if isinstance(item, YMap) and item.get("name")}
    called = [attempt(_called_ae, item, loc, named)
              for item, loc in attempt(_items, root, "ae-titles", required=True) or []]
    attempt(_unique, [ae.name for ae in called if ae is not None], root, "ae-titles", "AE title")
    return sorted(problems, key=lambda e: (e.line or 0, e.column or 0))


# --- sections ---------------------------------------------------------------------------------


def _root(text: str, path: str) -> YMap:
    try:
        root = load_yaml(text, path)
    except DefinitionError as exc:
        message = str(exc)
        prefix = str(DefinitionError("", path=exc.path, line=exc.line, column=exc.column))
        raise AdapterConfigError(message.removeprefix(prefix), path=exc.path, line=exc.line,
                                 column=exc.column) from exc
    if not isinstance(root, YMap):
        raise AdapterConfigError(f"expected a mapping with 'dicom', 'ae-titles' and "
                                 f"'destinations', got {describe(root)}", path=path, line=1,
                                 column=1)
    return root


def _listener(box: YMap, base: Path) -> Listener:
    _known(box, ("ae-title", "host", "port", "storage", "quiet-time", "group-by", "max-pdu",
                 *_TIMEOUTS, "max-associations"), "'dicom'")
    storage = _text(box, "storage", "'dicom'", required=False)
    group_by = _text(box, "group-by", "'dicom'", required=False) or "series"
    if group_by not in GROUP_BY:
        raise _at(box, "group-by", f"'group-by' must be one of {', '.join(GROUP_BY)}, got "
                                   f"{group_by!r}")
    return Listener(
        ae_title=_ae_title(box, "ae-title", "'dicom'"),
        port=_port(box, "'dicom'"),
        host=_text(box, "host", "'dicom'", required=False) or "127.0.0.1",
        storage=(base / storage).resolve() if storage else Path(DEFAULT_STORAGE).resolve(),
        quiet_time=_number(box, "quiet-time", "'dicom'", 5.0, positive=True),
        group_by=group_by,
        max_pdu=int(_number(box, "max-pdu", "'dicom'", 0, integer=True)),
        max_associations=int(_number(box, "max-associations", "'dicom'", 32, integer=True,
                                     positive=True)),
        **{key.replace("-", "_"): _number(box, key, "'dicom'", default, positive=True)
           for key, default in _TIMEOUTS.items()},
    )


def _called_ae(box: Any, loc: Location, destinations: set[str]) -> CalledAe:
    what = "an 'ae-titles' entry"
    box = _mapping_item(box, loc, what)
    _known(box, ("name", "pipelines", "priority", "allowed-calling-aes", "ignored-sop-classes",
                 "variables", "destinations"), what)
    name = _ae_title(box, "name", what, folder_safe=True)
    what = f"AE title '{name}'"
    pipelines = _strings(box, "pipelines", what, required=True)
    priority = _text(box, "priority", what, required=False) or "normal"
    if priority not in PRIORITIES:
        raise _at(box, "priority", f"priority of {what} must be one of {', '.join(PRIORITIES)}, "
                                   f"got {priority!r}")
    callers = _strings(box, "allowed-calling-aes", what, required=False)
    for index, caller in enumerate(callers):
        _check_ae(caller, _item_loc(box, "allowed-calling-aes", index), "'allowed-calling-aes'")
    ignored = _strings(box, "ignored-sop-classes", what, required=False)
    for index, uid in enumerate(ignored):
        if not _UID.match(uid) or len(uid) > 64:
            raise _located(
                _item_loc(box, "ignored-sop-classes", index),
                f"'ignored-sop-classes' of {what}: {uid!r} is not a UID (digits and dots, "
                "at most 64 characters)")
    targets = _strings(box, "destinations", what, required=False)
    for index, target in enumerate(targets):
        if target not in destinations:
            known = ", ".join(sorted(destinations)) or "none are defined"
            raise _located(
                _item_loc(box, "destinations", index),
                f"{what} names destination '{target}', which is not in 'destinations' "
                f"(defined: {known})")
    return CalledAe(name=name, pipelines=pipelines, priority=priority,
                    allowed_calling_aes=frozenset(c.strip() for c in callers),
                    ignored_sop_classes=frozenset(ignored),
                    variables=_variables(box, what), destinations=targets)


def _destination(box: Any, loc: Location) -> Destination:
    what = "a 'destinations' entry"
    box = _mapping_item(box, loc, what)
    _known(box, ("name", "ae-title", "host", "port", "retries", "retry-delay"), what)
    name = _text(box, "name", what, required=True)
    what = f"destination '{name}'"
    return Destination(
        name=name, ae_title=_ae_title(box, "ae-title", what),
        host=_text(box, "host", what, required=True), port=_port(box, what),
        retries=int(_number(box, "retries", what, 3, integer=True)),
        retry_delay=_number(box, "retry-delay", what, 2.0))


# --- typed values -----------------------------------------------------------------------------


def _section(box: YMap, key: str, kind: type, name: str) -> Any:
    if key not in box:
        raise _located(box.loc, f"missing '{key}' section")
    value = box[key]
    if not isinstance(value, kind):
        raise _at(box, key, f"expected {name} for '{key}', got {describe(value)}")
    return value


def _items(box: YMap, key: str, *, required: bool) -> list[tuple[Any, Location]]:
    value = box.get(key)
    if value is None or (isinstance(value, YList) and not value):
        if required:
            where = box.value_locs.get(key, box.loc)
            raise _located(where, f"'{key}' must list at least one entry")
        return []
    if not isinstance(value, YList):
        raise _at(box, key, f"expected a list for '{key}', got {describe(value)}")
    return list(zip(value, value.item_locs, strict=True))


def _mapping_item(value: Any, loc: Location, what: str) -> YMap:
    if not isinstance(value, YMap):
        raise _located(loc, f"expected a mapping for {what}, got {describe(value)}")
    return value


def _text(box: YMap, key: str, what: str, *, required: bool) -> str:
    value = box.get(key)
    if value is None:
        if required:
            raise _located(box.loc, f"{what} has no '{key}'")
        return ""
    if isinstance(value, dict | list):
        raise _at(box, key, f"expected text for '{key}' in {what}, got {describe(value)}")
    text = str(box.raw[key]).strip()
    if not text:
        raise _at(box, key, f"'{key}' in {what} is empty")
    return text


def _strings(box: YMap, key: str, what: str, *, required: bool) -> tuple[str, ...]:
    value = box.get(key)
    if value is None or (isinstance(value, YList) and not value):
        if required:
            raise _located(
                box.value_locs.get(key, box.loc),
                f"{what} needs '{key}': a list of at least one name")
        return ()
    if not isinstance(value, YList):
        raise _at(box, key, f"expected a list for '{key}' in {what}, got {describe(value)}")
    out = []
    for index, (item, raw) in enumerate(zip(value, value.raw, strict=True)):
        if raw is None or item is None or not str(raw).strip():
            raise _located(
                value.item_locs[index],
                f"item {index + 1} of '{key}' in {what} must be text, got {describe(item)}")
        out.append(str(raw).strip())
    return tuple(out)


def _number(box: YMap, key: str, what: str, default: float, *, integer: bool = False,
            positive: bool = False) -> float:
    value = box.get(key)
    if value is None:
        return default
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _at(box, key, f"'{key}' in {what} must be a{'n integer' if integer else ' number'}"
                            f", got {describe(value)}")
    if value < 0 or (positive and value == 0):
        raise _at(box, key, f"'{key}' in {what} must be {'> 0' if positive else '>= 0'}, got "
                            f"{value}")
    return float(value) if not integer else value


def _port(box: YMap, what: str) -> int:
    if "port" not in box or box["port"] is None:
        raise _located(box.loc, f"{what} has no 'port'")
    value = box["port"]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _at(box, "port", f"'port' in {what} must be an integer from 1 to 65535, got "
                               f"{describe(value)}")
    return value


def _ae_title(box: YMap, key: str, what: str, *, folder_safe: bool = False) -> str:
    title = _text(box, key, what, required=True)
    _check_ae(title, box.value_locs[key], f"'{key}' in {what}", folder_safe=folder_safe)
    return title


def _check_ae(title: str, loc: Location, what: str, *, folder_safe: bool = False) -> None:
    if not _AE_CHARS.match(title):
        raise _located(loc, f"{what}: {title!r} is not a valid AE title (1 to 16 characters, no "
                        "backslash or control characters)")
    if folder_safe and not _FOLDER_SAFE_AE.match(title):
        raise _located(loc, f"{what}: called AE title {title!r} names a storage folder: use "
                        "letters, digits, '_', '-', '.' and spaces, not starting with '.' or a "
                        "space")


def _variables(box: YMap, what: str) -> dict[str, str]:
    found = box.get("variables")
    if found is None:
        return {}
    if not isinstance(found, YMap):
        raise _at(box, "variables", f"expected a mapping for 'variables' in {what}, got "
                                    f"{describe(found)}")
    out: dict[str, str] = {}
    for name, value in found.items():
        if isinstance(value, dict | list):
            raise _located(
                found.value_locs[name],
                f"variable '{name}' of {what} must be a plain value, got {describe(value)}")
        out[name] = "" if value is None else str(found.raw[name])
    return out


def _known(box: YMap, keys: tuple[str, ...], what: str) -> None:
    for key in box:
        if key not in keys:
            raise _located(box.key_locs[key], f"unknown key '{key}' in {what} (expected one "
                                              f"of {', '.join(keys)})")


def _unique(names: list[str], box: YMap, key: str, what: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise _located(
                _item_loc(box, key, index),
                f"{what} '{name}' is defined twice in '{key}'")
        seen.add(name)


def _at(box: YMap, key: str, message: str) -> AdapterConfigError:
    return _located(box.value_locs.get(key, box.loc), message)


def _item_loc(box: YMap, key: str, index: int) -> Location:
    items = box[key]
    return items.item_locs[index] if isinstance(items, YList) else box.value_locs[key]


def _located(loc: Location, message: str) -> AdapterConfigError:
    return AdapterConfigError(message, path=loc.path, line=loc.line, column=loc.column)

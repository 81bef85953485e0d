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

from clara_rt.definition._yaml import Location, YMap, describe, load_yaml
from clara_rt.dicom import _config_values as v
from clara_rt.dicom._config_values import AdapterConfigError
from clara_rt.errors import DefinitionError
from clara_rt.job import PRIORITY_NAMES

__all__ = ["PRIORITIES", "AdapterConfig", "AdapterConfigError", "CalledAe", "Destination",
           "Listener", "config_problems", "load_config", "parse_config"]

PRIORITIES = PRIORITY_NAMES  # the one list, from clara_rt.job (kept under this name for importers)
GROUP_BY = ("series", "study")
_TIMEOUTS = {"acse-timeout": 10.0, "dimse-timeout": 60.0, "network-timeout": 60.0}
DEFAULT_STORAGE = "dicom-adapter"

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


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
    v.known(root, ("dicom", "ae-titles", "destinations"), "the configuration")
    listener = _listener(v.section(root, "dicom", YMap, "a mapping"), base or Path.cwd())
    destinations = tuple(_destination(item, loc) for item, loc in
                         v.items(root, "destinations", required=False))
    v.unique([d.name for d in destinations], root, "destinations", "destination")
    called = tuple(_called_ae(item, loc, {d.name for d in destinations})
                   for item, loc in v.items(root, "ae-titles", required=True))
    v.unique([ae.name for ae in called], root, "ae-titles", "AE title")
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

    attempt(v.known, root, ("dicom", "ae-titles", "destinations"), "the configuration")
    section = attempt(v.section, root, "dicom", YMap, "a mapping")
    if section is not None:
        attempt(_listener, section, path.resolve().parent)
    items = attempt(v.items, root, "destinations", required=False) or []
    found = [attempt(_destination, item, loc) for item, loc in items]
    attempt(v.unique, [d.name for d in found if d is not None], root, "destinations",
            "destination")
    # An entry that failed still defines its name: AE titles naming it are not wrong too.
    named = {str(item["name"]) for item, _ in items if isinstance(item, YMap) and item.get("name")}
    called = [attempt(_called_ae, item, loc, named)
              for item, loc in attempt(v.items, root, "ae-titles", required=True) or []]
    attempt(v.unique, [ae.name for ae in called if ae is not None], root, "ae-titles", "AE title")
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
    v.known(box, ("ae-title", "host", "port", "storage", "quiet-time", "group-by", "max-pdu",
                   *_TIMEOUTS, "max-associations"), "'dicom'")
    storage = v.text(box, "storage", "'dicom'", required=False)
    group_by = v.text(box, "group-by", "'dicom'", required=False) or "series"
    if group_by not in GROUP_BY:
        raise v.at(box, "group-by", f"'group-by' must be one of {', '.join(GROUP_BY)}, got "
                                     f"{group_by!r}")
    return Listener(
        ae_title=v.ae_title(box, "ae-title", "'dicom'"),
        port=v.port(box, "'dicom'"),
        host=v.text(box, "host", "'dicom'", required=False) or "127.0.0.1",
        storage=(base / storage).resolve() if storage else Path(DEFAULT_STORAGE).resolve(),
        quiet_time=v.number(box, "quiet-time", "'dicom'", 5.0, positive=True),
        group_by=group_by,
        max_pdu=int(v.number(box, "max-pdu", "'dicom'", 0, integer=True)),
        max_associations=int(v.number(box, "max-associations", "'dicom'", 32, integer=True,
                                       positive=True)),
        **{key.replace("-", "_"): v.number(box, key, "'dicom'", default, positive=True)
           for key, default in _TIMEOUTS.items()},
    )


def _called_ae(box: Any, loc: Location, destinations: set[str]) -> CalledAe:
    what = "an 'ae-titles' entry"
    box = v.mapping_item(box, loc, what)
    v.known(box, ("name", "pipelines", "priority", "allowed-calling-aes", "ignored-sop-classes",
                   "variables", "destinations"), what)
    name = v.ae_title(box, "name", what, folder_safe=True)
    what = f"AE title '{name}'"
    pipelines = v.strings(box, "pipelines", what, required=True)
    priority = v.text(box, "priority", what, required=False) or "normal"
    if priority not in PRIORITIES:
        raise v.at(box, "priority", f"priority of {what} must be one of {', '.join(PRIORITIES)}, "
                                     f"got {priority!r}")
    callers = v.strings(box, "allowed-calling-aes", what, required=False)
    for index, caller in enumerate(callers):
        v.check_ae(caller, v.item_loc(box, "allowed-calling-aes", index), "'allowed-calling-aes'")
    ignored = v.strings(box, "ignored-sop-classes", what, required=False)
    for index, uid in enumerate(ignored):
        if not _UID.match(uid) or len(uid) > 64:
            raise v.located(
                v.item_loc(box, "ignored-sop-classes", index),
                f"'ignored-sop-classes' of {what}: {uid!r} is not a UID (digits and dots, "
                "at most 64 characters)")
    targets = v.strings(box, "destinations", what, required=False)
    for index, target in enumerate(targets):
        if target not in destinations:
            known = ", ".join(sorted(destinations)) or "none are defined"
            raise v.located(
                v.item_loc(box, "destinations", index),
                f"{what} names destination '{target}', which is not in 'destinations' "
                f"(defined: {known})")
    return CalledAe(name=name, pipelines=pipelines, priority=priority,
                    allowed_calling_aes=frozenset(c.strip() for c in callers),
                    ignored_sop_classes=frozenset(ignored),
                    variables=v.variables(box, what), destinations=targets)


def _destination(box: Any, loc: Location) -> Destination:
    what = "a 'destinations' entry"
    box = v.mapping_item(box, loc, what)
    v.known(box, ("name", "ae-title", "host", "port", "retries", "retry-delay"), what)
    name = v.text(box, "name", what, required=True)
    what = f"destination '{name}'"
    return Destination(
        name=name, ae_title=v.ae_title(box, "ae-title", what),
        host=v.text(box, "host", what, required=True), port=v.port(box, what),
        retries=int(v.number(box, "retries", what, 3, integer=True)),
        retry_delay=v.number(box, "retry-delay", what, 2.0))

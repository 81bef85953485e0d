"""Names that become file and folder names: operators, pipelines, ports, services, models.

A job's operator writes ``<job>/logs/<operator>.log`` and works in ``<workspace>/<operator>/``;
a port's folder is ``<operator>/<port>``. So every such name must be exactly one harmless path
component, checked where the name is given (the YAML reader, ``Pipeline.add``), never trusted
later::

    >>> name_problem("liver-seg")
    >>> name_problem("../etc")
    "contains '/'"
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_NAME_LENGTH", "check_name", "name_problem"]

MAX_NAME_LENGTH = 128
"""Longest name accepted, in characters (file names have 255 bytes; a suffix is added)."""


def name_problem(name: object) -> str | None:
    """Say why ``name`` is not one safe path component, or return ``None`` when it is.

    Refused: non-strings, empty or blank names, ``.`` and ``..``, ``/`` and ``\\`` (so never an
    absolute path), control characters (NUL, newlines, escapes), more than
    :data:`MAX_NAME_LENGTH` characters.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name.strip():
        return "is empty"
    if name in (".", ".."):
        return "is a relative folder reference"
    for bad in ("/", "\\"):
        if bad in name:
            return f"contains {bad!r}"
    control = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")),
                   None)
    if control is not None:
        return f"contains the control character {control!r}"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    return None


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is one safe path component, else raise ``ValueError``.

    Args:
        name: The name to check.
        what: What it names, for the message (``"operator"``, ``"port"``...).

    Raises:
        ValueError: ``"operator name '../x' contains '/'; ..."``.
    """
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{what} name {name!r} {problem}; names become file and folder names, "
                         f"so use one plain component such as 'liver-seg' (letters, digits, "
                         f"'-', '_', '.')")
    return name  # type: ignore[return-value]

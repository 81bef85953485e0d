"""``${{NAME}}`` substitution in Clara pipeline definitions.

Clara Deploy definitions refer to variables as ``${{NAME}}`` inside any string (image names,
command arguments, paths). The parser replaces them while it reads each string, so an undefined
variable is reported at the position of the string that uses it. The lookup order is decided by
the caller (:func:`~clara_rt.definition.schema.parse_definition` uses: ``--var`` values, the
environment, the operator's ``variables:``, the top-level ``variables:``).

``${{JOB_ID}}`` is special: it differs per job, so it is left in place and the runtime fills it
with :func:`fill_job_id` when a job starts::

    >>> substitute("/out/${{JOB_ID}}/${{N}}", {"N": "3"})
    '/out/${{JOB_ID}}/3'
    >>> fill_job_id("/out/${{JOB_ID}}/3", 42)
    '/out/42/3'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from clara_rt.errors import DefinitionError

if TYPE_CHECKING:  # _yaml imports this module
    from clara_rt.definition._yaml import Location

__all__ = ["JOB_ID", "JOB_ID_TOKEN", "Lookup", "fill_job_id", "substitute"]

JOB_ID = "JOB_ID"
JOB_ID_TOKEN = "${{JOB_ID}}"
_OPEN, _CLOSE = "${{", "}}"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Lookup = Mapping[str, str] | Callable[[str], str | None]
"""Where variable values come from: a mapping, or a function returning ``None`` when unset."""


def substitute(text: str, lookup: Lookup, loc: Location | None = None) -> str:
    """Replace every ``${{NAME}}`` in ``text`` with its value; keep ``${{JOB_ID}}``.

    Values are inserted as they are (not scanned again for ``${{``). ``${{ NAME }}`` (with
    spaces) is accepted; a JOB_ID reference is always written back as :data:`JOB_ID_TOKEN`.

    Args:
        text: The string to expand.
        lookup: Variable values, a mapping or a ``name -> value | None`` function.
        loc: Where ``text`` was written, for error messages.

    Returns:
        ``text`` with its variables replaced (``text`` itself when it has none).

    Raises:
        DefinitionError: A variable is undefined, a ``${{`` is never closed, or what is between
            the braces is not a variable name.
    """
    if _OPEN not in text:
        return text
    parts: list[str] = []
    pos = 0
    while (start := text.find(_OPEN, pos)) >= 0:
        end = text.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            raise _error(f"'{_OPEN}' is never closed in {text!r}; expected '{_OPEN}NAME{_CLOSE}'",
                         loc)
        name = text[start + len(_OPEN):end].strip()
        if not _NAME.fullmatch(name):
            raise _error(f"'{text[start:end + len(_CLOSE)]}' is not a variable reference; "
                         f"expected '{_OPEN}NAME{_CLOSE}' with NAME made of letters, digits and "
                         "'_'", loc)
        parts.append(text[pos:start])
        parts.append(JOB_ID_TOKEN if name == JOB_ID else _value(name, lookup, loc))
        pos = end + len(_CLOSE)
    parts.append(text[pos:])
    return "".join(parts)


def fill_job_id(text: str, job_id: str | int) -> str:
    """Replace every ``${{JOB_ID}}`` left in ``text`` by ``job_id``.

    Args:
        text: A string produced by :func:`substitute` (a command argument, a path...).
        job_id: The job's id.

    Returns:
        The string with the job id filled in.
    """
    return text.replace(JOB_ID_TOKEN, str(job_id))


def _value(name: str, lookup: Lookup, loc: Location | None) -> str:
    value = lookup.get(name) if isinstance(lookup, Mapping) else lookup(name)
    if value is None:
        raise _error(f"undefined variable '{name}'; set it with --var {name}=VALUE, the "
                     "environment, or a variables: entry", loc)
    return value


def _error(message: str, loc: Location | None) -> DefinitionError:
    return loc.error(message) if loc is not None else DefinitionError(message)

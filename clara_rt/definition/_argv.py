"""Job values in a command: always data, never shell text.

A value given when a job is made (``--var``, the job's ``variables``, the environment of
``clara-rt run``) may come from anyone who can create a job. In a command it stays a
``${{NAME}}`` token until the command starts, and then:

* in an ordinary argument, the token is replaced by the value: the argument reaches the program
  as it is, with no shell in between (``["sleep", "${{SECS}}"]``);
* in the script of a shell (``["sh", "-c", "sleep ${{SECS}}"]``), the token becomes a quoted
  reference to the environment variable ``CLARA_VAR_<NAME>`` that holds the value
  (``sleep "${CLARA_VAR_SECS}"``): the shell expands it as one word and never parses it as code.

A job value inside the code of another interpreter (``python -c``, ``perl -e``, ``node -e``,
``ruby -e``) cannot be quoted safely, so :func:`code_problem` refuses it: pass it as an argument
(``sys.argv``) or read ``CLARA_VAR_<NAME>`` from the environment instead.

Values written in the definition itself (its ``variables:``) are the pipeline author's text and
are pasted where they are used, as Clara Deploy did.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["VAR_PREFIX", "code_problem", "fill_argument", "fill_script", "script_index"]

VAR_PREFIX = "CLARA_VAR_"
_TOKEN = re.compile(r"\$\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh"})
_INTERPRETERS = re.compile(r"(python[\d.]*|perl[\d.]*|ruby[\d.]*|node|nodejs|Rscript|php[\d.]*)")
_CODE_FLAGS = frozenset({"-c", "-e", "-E", "--eval", "-r"})


def script_index(command: Sequence[str]) -> int | None:
    """Index of the shell script in ``command`` (``sh -c SCRIPT ...``), or ``None``."""
    if not command or Path(command[0]).name not in _SHELLS:
        return None
    for i, arg in enumerate(command[1:-1], 1):
        if arg.startswith("-") and not arg.startswith("--") and "c" in arg:
            return i + 1
    return None


def code_problem(command: Sequence[str], values: Mapping[str, str]) -> str | None:
    """Say why ``command`` pastes a job value into interpreter code, or ``None`` if it does not.
    """
    if not command or not _INTERPRETERS.fullmatch(Path(command[0]).name):
        return None
    for flag, code in itertools.pairwise(command[1:]):
        if flag not in _CODE_FLAGS:
            continue
        used = sorted({m[1] for m in _TOKEN.finditer(code) if m[1] in values})
        if used:
            return (f"the job value(s) {', '.join(used)} would be pasted into the code of "
                    f"`{Path(command[0]).name} {flag}`, where no quoting is safe; pass "
                    f"{'them' if len(used) > 1 else 'it'} as an argument after the code, or read "
                    f"{', '.join(VAR_PREFIX + n for n in used)} from the environment")
    return None


def fill_argument(arg: str, values: Mapping[str, str]) -> str:
    """Replace each ``${{NAME}}`` of a job value in one argument by the value itself."""
    return _TOKEN.sub(lambda m: values[m[1]] if m[1] in values else m[0], arg)


def fill_script(script: str, values: Mapping[str, str]) -> str:
    """Replace each ``${{NAME}}`` of a job value in a shell script by a quoted variable reference.

    The reference is ``"${CLARA_VAR_NAME}"`` outside quotes, ``${CLARA_VAR_NAME}`` inside
    double quotes and ``'"${CLARA_VAR_NAME}"'`` inside single quotes, so the value is one word
    wherever the token stands. (Even where this reading of the quotes were wrong, a shell never
    runs the text of an expanded variable.)
    """
    out: list[str] = []
    quote = ""  # "", "'" or '"'
    i = 0
    while i < len(script):
        found = _TOKEN.match(script, i)
        if found is not None and found[1] in values:
            ref = "${" + VAR_PREFIX + found[1] + "}"
            out.append({"": f'"{ref}"', '"': ref, "'": f"'\"{ref}\"'"}[quote])
            i = found.end()
            continue
        char = script[i]
        if char == "\\" and quote != "'" and i + 1 < len(script):
            out.append(script[i:i + 2])
            i += 2
            continue
        if char in "'\"" and quote in ("", char):
            quote = "" if quote == char else char
        out.append(char)
        i += 1
    return "".join(out)

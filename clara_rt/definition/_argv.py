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
_CODE_FLAGS = frozenset({"-c", "-e", "-E", "--eval", "-r", "--command"})
_RUNNERS = frozenset({"su", "runuser", "flock"})  # `-c TEXT`: TEXT runs in a shell
# Code a shell script hands to another parser: a nested shell or interpreter with its code
# flag, eval, su/runuser/flock -c, ssh (its command is shell text on the far side).
_NESTED = re.compile(
    r"(?:^|[\s;&|(`'\"])(?:eval|ssh|(?:[\w./-]*/)?(?:sh|bash|dash|ash|zsh|ksh|su|runuser|flock|"
    r"python[\d.]*|perl[\d.]*|ruby[\d.]*|node|nodejs|Rscript|php[\d.]*)\s[^;&|\n]*?"
    r"(?<!\S)-[A-Za-z]*[ceE]\b)(?=\s|$)")


def script_index(command: Sequence[str]) -> int | None:
    """Index of the shell script in ``command`` (``sh -c SCRIPT ...``), or ``None``.

    The shell may stand behind wrappers (``env sh -c``, ``nice bash -c``, ``timeout 9 sh -ec``):
    the first argument that names a shell is the program whose ``-c`` script is looked for.
    """
    start = next((i for i, arg in enumerate(command) if Path(arg).name in _SHELLS), None)
    if start is None:
        return None
    for i, arg in enumerate(command[start + 1:-1], start + 1):
        if arg.startswith("-") and not arg.startswith("--") and "c" in arg:
            return i + 1
    return None


def code_problem(command: Sequence[str], values: Mapping[str, str]) -> str | None:
    """Say why ``command`` pastes a job value into code that something parses again, or
    ``None`` if it does not: the code of an interpreter (``python -c``, also behind a wrapper
    such as ``env``), or a shell script that runs a nested shell or ``eval`` (the outer shell
    expands the value and the inner one would read it as code).
    """
    for i, program in enumerate(command):
        name = Path(program).name
        if name == "ssh" and (used := _used(" ".join(command[i + 1:]), values)):
            return _refusal(used, "the command of `ssh` (shell text on the far side)")
        if not (_INTERPRETERS.fullmatch(name) or name in _RUNNERS):
            continue
        for flag, code in itertools.pairwise(command[i + 1:]):
            if flag in _CODE_FLAGS and (used := _used(code, values)):
                return _refusal(used, f"the code of `{name} {flag}`")
        break
    index = script_index(command)
    if index is not None and (used := _used(command[index], values)):
        nested = _NESTED.search(command[index])
        if nested is not None:
            return _refusal(used, f"a shell script that runs `{nested[0].strip()}`, whose "
                                  "nested code would read the value as code")
    return None


def _used(code: str, values: Mapping[str, str]) -> list[str]:
    return sorted({m[1] for m in _TOKEN.finditer(code) if m[1] in values})


def _refusal(used: list[str], where: str) -> str:
    return (f"the job value(s) {', '.join(used)} would be pasted into {where}, where no quoting "
            f"is safe; pass {'them' if len(used) > 1 else 'it'} as an argument after the code, "
            f"or read {', '.join(VAR_PREFIX + n for n in used)} from the environment")


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

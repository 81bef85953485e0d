"""Forget a secret that came in through this process's environment or command line.

``clara-rt serve`` reads its token from ``CLARA_RT_TOKEN`` (or a file). Commands never get it in
their environment (see ``definition/command.py``), but they run as the server's user, and the
kernel shows every process's *initial* environment and command line to that user in
``/proc/<pid>/environ`` and ``/proc/<pid>/cmdline``: removing the variable from ``os.environ``
does not change what is shown there. :func:`forget_secret` removes the variable and overwrites
each copy of the secret in those two memory areas, so ``/proc/<server pid>/environ`` no longer
holds it (issue 16.2).

What this cannot close: a command runs as the server's user, so it can read the token file
itself, or (as root, or where ptrace is allowed) the server's memory. Run commands that are not
trusted as another user, or keep the token file readable by the server only and run the server
as its own user.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

__all__ = ["forget_secret", "read_token_file"]

log = logging.getLogger("clara_rt.server")

# Fields of /proc/self/stat (proc(5)), counted from 1: arg_start 48 ... env_end 51.
_AREAS = ((48, 49), (50, 51))  # the command line, then the environment
_PREFIX = "CLARA_RT_TOKEN"


def forget_secret(secret: str | None) -> int:
    """Remove ``secret`` from ``os.environ`` and from this process's ``/proc`` views.

    Only where it is the token: the value of a ``CLARA_RT_TOKEN*`` variable, a whole argument or
    an ``--opt=secret`` argument (never another variable that happens to hold the same text, and
    never a substring: a short token such as ``0`` must not garble ``CUDA_VISIBLE_DEVICES=0``).

    Returns:
        How many copies were overwritten in the initial environment and command line.
    """
    if not secret:
        return 0
    for key in [k for k, v in os.environ.items() if v == secret and k.startswith(_PREFIX)]:
        del os.environ[key]
    try:
        return _overwrite(secret.encode())
    except (OSError, ValueError) as exc:  # no /proc (not Linux): nothing shows it there
        log.debug("token not scrubbed from /proc/self: %s", exc)
        return 0


def _overwrite(secret: bytes) -> int:
    fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
    count = 0
    for (first, last), environment in zip(_AREAS, (False, True), strict=True):
        start, end = int(fields[first - 3]), int(fields[last - 3])
        if not 0 < start < end:
            continue
        offset = 0
        for entry in ctypes.string_at(start, end - start).split(b"\x00"):
            name, eq, value = entry.partition(b"=")
            if environment:
                hit = eq and value == secret and name.startswith(_PREFIX.encode())
            else:
                hit = entry == secret or (eq and value == secret and name.startswith(b"-"))
            if hit:
                ctypes.memset(start + offset + len(entry) - len(secret), ord("*"), len(secret))
                count += 1
            offset += len(entry) + 1
    return count


def read_token_file(path: Path) -> str:
    """The token in ``path`` (stripped); warns on stderr when other users may read the file.

    Raises:
        ValueError: The file cannot be read or is empty.
    """
    import sys

    try:
        token = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ValueError(f"cannot read --token-file {path}: {exc}") from exc
    if not token:
        raise ValueError(f"--token-file {path} is empty")
    if mode & 0o077:
        print(f"clara-rt: warning: --token-file {path} may be read by other users (mode "
              f"{mode & 0o777:o}); chmod 600 {path}", file=sys.stderr)
    return token

"""Log files that keep their tail: bounded on disk, written and read in chunks.

A server runs for months and an operator may print without end, so no log grows past a limit:
once a file passes ``limit`` bytes, its beginning is dropped (the end of a log says why a job
failed) and a first line says how much was cut. Nothing here reads a whole file into memory.

The limit defaults to :data:`DEFAULT_LOG_LIMIT` and is set for a whole process with the
``CLARA_RT_LOG_LIMIT`` environment variable (bytes; ``K``, ``M``, ``G`` suffixes), e.g.
``CLARA_RT_LOG_LIMIT=64M clara-rt serve ...``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["DEFAULT_LOG_LIMIT", "TailLog", "append_capped", "log_limit", "open_snapshot",
           "parse_log_limit", "trim_to_tail"]

DEFAULT_LOG_LIMIT = 4 * 1024 * 1024
"""Bytes kept per log file unless ``CLARA_RT_LOG_LIMIT`` says otherwise."""

_CHUNK = 1 << 16
_SIZE = re.compile(r"\s*(\d+)\s*([KMG]?)i?B?\s*", re.IGNORECASE)
_FACTOR = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def log_limit() -> int:
    """The byte limit per log file: ``CLARA_RT_LOG_LIMIT`` or :data:`DEFAULT_LOG_LIMIT`.

    A value that is not a size is reported once (a warning) and the default is used: logging
    must never stop an operator.
    """
    try:
        return parse_log_limit(os.environ.get("CLARA_RT_LOG_LIMIT", ""))
    except ValueError as exc:
        _warn_once(str(exc))
        return DEFAULT_LOG_LIMIT


def parse_log_limit(text: str) -> int:
    """Bytes in ``text`` (``65536``, ``512K``, ``8M``, ``1G``); ``""`` is the default.

    Raises:
        ValueError: ``text`` is not a size of at least 1 KiB.
    """
    if not text:
        return DEFAULT_LOG_LIMIT
    found = _SIZE.fullmatch(text)
    if found is None or int(found[1]) * _FACTOR[found[2].upper()] < 1024:
        raise ValueError(f"CLARA_RT_LOG_LIMIT={text!r} is not a size of at least 1K "
                         f"(bytes, or with a K, M or G suffix such as 8M); using "
                         f"{DEFAULT_LOG_LIMIT} bytes")
    return int(found[1]) * _FACTOR[found[2].upper()]


class TailLog:
    """A log file written in pieces that never holds much more than ``limit`` bytes.

    Writes go straight to the file; when it reaches twice the limit, its last ``limit`` bytes
    are moved to the front (so the cost stays linear in what is written). :meth:`close` trims
    it to the limit and, if anything was dropped, puts a line saying so first.
    """

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.cut = 0
        self._file: IO[bytes] = open(path, "w+b")  # noqa: SIM115 - closed by close()
        self._size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._size += len(data)
        if self._size >= 2 * self.limit:
            self._file.flush()
            self.cut += _keep_tail(self._file, self._size, self.limit)
            self._size = self.limit

    def close(self) -> None:
        """Trim to the limit, with the line saying what was cut first (from this file's own
        handle: a command that swapped the path for a link gets its link replaced)."""
        if self._file.closed:
            return
        with self._file as f:
            f.flush()
            dropped = max(self._size - self.limit, 0)
            if not dropped and not self.cut:
                return
            tmp = self.path.with_name(f".{self.path.name}.trim")
            tmp.unlink(missing_ok=True)
            with open(tmp, "xb") as dst:
                dst.write(_cut_line(dropped + self.cut, self.limit))
                f.seek(dropped)
                while chunk := f.read(_CHUNK):
                    dst.write(chunk)
            os.replace(tmp, self.path)


def trim_to_tail(path: Path, limit: int, already_cut: int = 0) -> int:
    """Keep only the last ``limit`` bytes of ``path``, after a line saying what was cut.

    Returns:
        The bytes dropped now (0 when the file was within the limit and nothing was cut before).
    """
    size = path.stat().st_size
    dropped = max(size - limit, 0)
    if not dropped and not already_cut:
        return 0
    tmp = path.with_name(f".{path.name}.trim")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        src.seek(dropped)
        dst.write(_cut_line(dropped + already_cut, limit))
        while chunk := src.read(_CHUNK):
            dst.write(chunk)
    os.replace(tmp, path)
    return dropped


def open_snapshot(path: Path) -> tuple[int, Iterator[bytes]]:
    """Open a log for reading as it is now: ``(size, chunks)``, never through a link.

    The chunks stop at the size seen when it was opened, so a log that grows meanwhile (a job
    still running) is served consistently with that length; the file stays open until the
    iterator is exhausted or closed.

    Raises:
        OSError: ``path`` is missing or is a link.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    size = os.fstat(fd).st_size

    def chunks() -> Iterator[bytes]:
        with os.fdopen(fd, "rb") as f:
            left = size
            while left > 0 and (chunk := f.read(min(_CHUNK, left))):
                left -= len(chunk)
                yield chunk

    return size, chunks()


def append_capped(path: Path, data: bytes | IO[bytes], limit: int) -> None:
    """Append ``data`` (bytes or a binary file read in chunks) to ``path``, keeping its tail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:
            while chunk := data.read(_CHUNK):
                out.write(chunk)
    if path.stat().st_size > limit + 4096:  # a little slack: trimming rewrites the file
        trim_to_tail(path, limit)


@functools.lru_cache(maxsize=8)
def _warn_once(message: str) -> None:
    logging.getLogger("clara_rt").warning("%s", message)


def _cut_line(dropped: int, limit: int) -> bytes:
    return (f"[clara-rt: {dropped} earlier bytes of this log were cut; it keeps its last "
            f"{limit} bytes (CLARA_RT_LOG_LIMIT)]\n").encode()


def _keep_tail(f: IO[bytes], size: int, keep: int) -> int:
    """Move the last ``keep`` bytes of open file ``f`` to its start; return the bytes dropped."""
    start = size - keep
    moved = 0
    while moved < keep:
        f.seek(start + moved)
        chunk = f.read(min(_CHUNK, keep - moved))
        f.seek(moved)
        f.write(chunk)
        moved += len(chunk)
    f.truncate(keep)
    f.seek(keep)
    return start

"""A job's results on disk: only regular files inside its output folder ever leave the server.

A command operator may leave anything in its output folder, including a symbolic link to
``/etc/passwd`` or to ``/``. So results are guarded twice (issue 16.1):

* when a job's results are collected, :func:`drop_links` removes every link and special file
  (fifo, socket, device) from the output folder; the job's history names what was dropped; a
  hard link (a file with more than one name, possibly outside the folder) is replaced by a copy
  of what it holds, so a result never shows a file outside as it changes later;
* on every read (listing, one file, the archive, the console), :func:`result_files` lists
  regular files only, :func:`result_file` resolves the asked path and checks that it is a
  regular file with one name that stays inside the folder, and :func:`tar_stream` opens each
  file with ``O_NOFOLLOW`` (a hard link planted later is neither listed nor served). A path
  that leads anywhere else is "not found".
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clara_rt.errors import NotFound
from clara_rt.server.payloads import PayloadError, safe_relative

__all__ = ["drop_links", "open_result", "result_file", "result_files", "tar_stream"]


def drop_links(folder: Path) -> list[str]:
    """Remove every link and non-regular file under ``folder``; return their relative paths.

    Links to folders are removed, never followed.
    """
    dropped: list[str] = []
    if not folder.is_dir() or folder.is_symlink():
        return dropped
    for root, dirs, names in os.walk(folder):
        for name in [*dirs, *names]:
            path = Path(root, name)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                _own_copy(path)  # a hard link to a file outside: keep what it held, not the link
            if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                continue
            path.unlink()
            dropped.append(path.relative_to(folder).as_posix())
        dirs[:] = [d for d in dirs if Path(root, d).is_dir() and not Path(root, d).is_symlink()]
    return sorted(dropped)


def result_files(folder: Path) -> list[tuple[str, int]]:
    """(relative POSIX path, size) of every regular file under ``folder``, sorted.

    Links are neither listed nor followed; names that are not valid UTF-8 are skipped.
    """
    found: list[tuple[str, int]] = []
    if not folder.is_dir() or folder.is_symlink():
        return found
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not Path(root, d).is_symlink()]
        for name in names:
            path = Path(root, name)
            try:
                info = path.lstat()
                rel = path.relative_to(folder).as_posix()
                rel.encode()
            except (OSError, UnicodeEncodeError):
                continue
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                found.append((rel, info.st_size))
    return sorted(found)


def result_file(folder: Path, path: str) -> Path:
    """The regular file ``path`` inside ``folder``.

    Raises:
        NotFound: ``path`` is not relative, passes through or is a link, leaves ``folder``,
            or is not a regular file.
    """
    try:
        rel = safe_relative(path)
    except PayloadError:
        raise NotFound(f"no file '{path}'") from None
    target = folder
    if folder.is_symlink():
        raise NotFound(f"no file '{path}' (links are never served)")
    try:
        for part in rel.parts:
            target = target / part
            if target.is_symlink():
                raise NotFound(f"no file '{path}' (links are never served)")
        real = target.resolve(strict=True)
        inside = real.is_relative_to(folder.resolve(strict=True))
        info = target.lstat()
        regular = stat.S_ISREG(info.st_mode) and info.st_nlink == 1  # no hard link either
    except (OSError, RuntimeError, ValueError):  # missing, a link loop, a NUL
        raise NotFound(f"no file '{path}'") from None
    if not inside or not regular:
        raise NotFound(f"no file '{path}' (only files inside the job's output are served)")
    return real


def open_result(folder: Path, path: str) -> tuple[int, os.stat_result]:
    """Open the regular file ``path`` inside ``folder`` without following any link on the way.

    :func:`result_file` checks a path, but whatever opens it later could meet a link swapped in
    meanwhile (by a process still writing there). Here each folder on the way is opened with
    ``O_NOFOLLOW`` relative to the one before, and the file is checked on the open descriptor,
    so what is read is what was checked.

    Returns:
        The open descriptor (the caller closes it) and its ``fstat``.

    Raises:
        NotFound: as :func:`result_file`.
    """
    result_file(folder, path)  # the path's own checks (relative, inside, not a link)
    parts = safe_relative(path).parts
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = -1
    try:
        fd = os.open(folder, flags | os.O_DIRECTORY)
        for part in parts[:-1]:
            parent, fd = fd, -1
            try:
                fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=parent)
            finally:
                os.close(parent)
        parent, fd = fd, -1
        try:
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=parent)
        finally:
            os.close(parent)
        info = os.fstat(fd)
    except OSError:
        if fd >= 0:
            os.close(fd)
        raise NotFound(f"no file '{path}' (links are never served)") from None
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise NotFound(f"no file '{path}' (only files inside the job's output are served)")
    return fd, info


def tar_stream(folder: Path, compress: bool) -> Iterator[bytes]:
    """Tar the regular files of ``folder`` on the fly (no temporary archive on disk).

    Each file is opened with :func:`open_result` and described from the opened file, so a file
    or a folder replaced by a link after the listing is skipped, not followed.
    """
    sink = _Chunks()
    with tarfile.open(fileobj=sink, mode="w|gz" if compress else "w|") as tar:
        for rel, _ in result_files(folder):
            try:
                fd, info = open_result(folder, rel)  # no link followed at any level
            except NotFound:
                continue
            with os.fdopen(fd, "rb") as f:
                member = tarfile.TarInfo(rel)
                member.size, member.mtime, member.mode = info.st_size, int(info.st_mtime), 0o644
                tar.addfile(member, f)
            yield from sink.drain()
    yield from sink.drain()


def _own_copy(path: Path) -> None:
    """Replace the hard link ``path`` by a copy of what it holds now (a file of its own)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    tmp = path.with_name(f".{path.name}.own-copy")
    try:
        with os.fdopen(fd, "rb") as source, open(tmp, "xb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Chunks(io.RawIOBase):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def drain(self) -> Iterator[bytes]:
        chunks, self.chunks = self.chunks, []
        yield from chunks

"""Payload folders on disk: uploads land complete or not at all.

An upload (a tar stream, optionally gzip-compressed, or multipart files) is first written under
``<data>/tmp/``; only when every byte is there and the size limit held is the folder renamed to
``<data>/payloads/<id>/``. A size limit crossed mid-stream raises :class:`PayloadTooLarge`, a full
disk :class:`InsufficientStorage`; either way the partial folder is removed. Archive members that
would land outside the folder (absolute paths, ``..``), links and device files are refused.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = [
    "InsufficientStorage",
    "PayloadError",
    "PayloadTooLarge",
    "StagedPayload",
    "folder_stats",
    "iter_files",
    "safe_relative",
]

_CHUNK = 1 << 20


class PayloadError(ValueError):
    """The upload is not a usable payload (bad archive, bad file name, empty)."""


class PayloadTooLarge(PayloadError):
    """The upload crossed the server's payload size limit."""


class InsufficientStorage(OSError):
    """The disk holding the data directory is full (or below the configured reserve)."""


def safe_relative(name: str) -> PurePosixPath:
    """``name`` as a relative path that stays inside its folder, or :class:`PayloadError`."""
    path = PurePosixPath(name.replace("\\", "/"))
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or path.is_absolute() or ".." in parts or any("\x00" in p for p in parts):
        raise PayloadError(f"file name {name!r} is not a relative path inside the payload")
    return PurePosixPath(*parts)


def folder_stats(folder: Path) -> tuple[int, int]:
    """(number of files, total bytes) under ``folder``."""
    files = size = 0
    for root, _, names in os.walk(folder):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(root, name)).st_size
    return files, size


class StagedPayload:
    """A payload being received in ``<data>/tmp``; :meth:`commit` moves it into place."""

    def __init__(self, tmp_root: Path, payload_id: str, *, max_bytes: int | None,
                 min_free_bytes: int = 0) -> None:
        self.folder = tmp_root / f"payload-{payload_id}"
        self.folder.mkdir(parents=True)
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self.received = 0
        self._check_free_space()

    # --- receiving ----------------------------------------------------------------------

    async def write_stream(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        """Write one file from an async byte stream."""
        target = self._target(name)
        with self._open(target) as out:
            async for chunk in chunks:
                self._write(out, chunk)
            _flush(out)

    def write_file(self, name: str, source: IO[bytes]) -> None:
        """Write one file from a binary file object."""
        target = self._target(name)
        with self._open(target) as out:
            while chunk := source.read(_CHUNK):
                self._write(out, chunk)
            _flush(out)

    def extract_tar(self, archive: Path) -> None:
        """Unpack a tar (plain, gzip, bz2 or xz) written by :meth:`write_stream` into the folder.

        The archive itself is removed afterwards; the unpacked size counts against the limit
        (an archive bomb stops at the limit, not at the end of the disk).
        """
        self.received = 0
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    if member.isdir():
                        continue
                    if not member.isfile():
                        raise PayloadError(f"archive member {member.name!r} is a link or "
                                           "special file; payloads hold regular files only")
                    source = tar.extractfile(member)
                    assert source is not None
                    self.write_file(member.name, source)
        except tarfile.TarError as exc:
            raise PayloadError(f"the upload is not a readable tar archive: {exc}") from exc
        except EOFError as exc:
            raise PayloadError("the tar archive ends early (truncated upload?)") from exc
        finally:
            archive.unlink(missing_ok=True)

    def commit(self, final: Path) -> tuple[int, int]:
        """Move the complete folder to ``final``; return (files, bytes)."""
        files, size = folder_stats(self.folder)
        if files == 0:
            raise PayloadError("the upload holds no files")
        _fsync_dir(self.folder)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.folder, final)
        _fsync_dir(final.parent)
        return files, size

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------

    def _target(self, name: str) -> Path:
        target = self.folder / safe_relative(name)
        if target.exists():
            raise PayloadError(f"file {name!r} appears twice in the upload")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _open(self, target: Path) -> IO[bytes]:
        try:
            return open(target, "xb")
        except OSError as exc:
            raise _storage_error(exc) from exc

    def _write(self, out: IO[bytes], chunk: bytes) -> None:
        self.received += len(chunk)
        if self.max_bytes is not None and self.received > self.max_bytes:
            raise PayloadTooLarge(f"the upload is larger than the server's payload limit of "
                                  f"{self.max_bytes} bytes")
        try:
            out.write(chunk)
        except OSError as exc:
            raise _storage_error(exc) from exc

    def _check_free_space(self) -> None:
        if self.min_free_bytes <= 0:
            return
        free = shutil.disk_usage(self.folder).free
        if free < self.min_free_bytes:
            raise InsufficientStorage(
                errno.ENOSPC, f"only {free} bytes free on the data disk; the server keeps "
                f"{self.min_free_bytes} free (--min-free)")


def _flush(out: IO[bytes]) -> None:
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise _storage_error(exc) from exc


def _storage_error(exc: OSError) -> OSError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(exc.errno, f"the data disk is full: {exc.strerror}")
    return exc


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_files(folder: Path) -> Iterable[tuple[str, int]]:
    """(relative POSIX path, size) of every file under ``folder``, sorted."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            found.append((path.relative_to(folder).as_posix(), path.stat().st_size))
    return sorted(found)

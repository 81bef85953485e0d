"""Payload folders on disk: uploads land complete or not at all.

An upload (a tar stream, optionally gzip-compressed, or multipart files) is first written under
``<data>/tmp/``; only when every byte is there and the size limit held is the folder renamed to
``<data>/payloads/<id>/``. A size limit crossed mid-stream raises :class:`PayloadTooLarge`, a full
disk :class:`InsufficientStorage`; either way the partial folder is removed. Archive members that
would land outside the folder (absolute paths, ``..``), links and device files are refused, and
so are names that are not UTF-8, components over 255 bytes, paths the file system cannot hold
(``PATH_MAX``), a file where a folder must be (``a`` then ``a/b``), and more than ``max_files``
entries (each answers 400 or 413 with the reason, while the upload is still being received).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from clara_rt.server.archive_reader import open_archive, unpack_cap

__all__ = [
    "InsufficientStorage",
    "PayloadError",
    "PayloadTooLarge",
    "StagedPayload",
    "folder_stats",
    "iter_files",
    "safe_relative",
    "storage_error",
]

_CHUNK = 1 << 20
_NAME_MAX = 255  # bytes in one path component (Linux, most file systems)
_PATH_MAX = 4096  # bytes in a whole path, the terminating NUL included


class PayloadError(ValueError):
    """The upload is not a usable payload (bad archive, bad file name, empty)."""


class PayloadTooLarge(PayloadError):
    """The upload crossed the server's payload size limit."""


class InsufficientStorage(OSError):
    """The disk holding the data directory is full (or below the configured reserve)."""


def safe_relative(name: str) -> PurePosixPath:
    """``name`` as a relative path that stays inside its folder, or :class:`PayloadError`.

    The name must be UTF-8 text (a tar member name that is not arrives with surrogates), each
    component at most 255 bytes and the whole under ``PATH_MAX``.
    """
    path = PurePosixPath(name.replace("\\", "/"))
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or path.is_absolute() or ".." in parts or any("\x00" in p for p in parts):
        raise PayloadError(f"file name {name!r} is not a relative path inside the payload")
    try:
        encoded = [p.encode("utf-8") for p in parts]
    except UnicodeEncodeError:
        raise PayloadError(f"file name {name!r} is not UTF-8 text") from None
    if any(len(p) > _NAME_MAX for p in encoded):
        raise PayloadError(f"file name {name[:80]!r}... has a component longer than "
                           f"{_NAME_MAX} bytes")
    if sum(len(p) + 1 for p in encoded) >= _PATH_MAX:
        raise PayloadError(f"file name {name[:80]!r}... is longer than {_PATH_MAX} bytes")
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
                 min_free_bytes: int = 0, max_files: int | None = None) -> None:
        self.folder = tmp_root / f"payload-{payload_id}"
        try:
            self.folder.mkdir(parents=True)
        except OSError as exc:
            raise _storage_error(exc) from exc
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.min_free_bytes = min_free_bytes
        self.received = 0
        self.entries = 0
        self._check_free_space()

    # --- receiving ----------------------------------------------------------------------

    def write_file(self, name: str, source: IO[bytes]) -> None:
        """Write one file from a binary file object."""
        with self.open_file(name) as out:
            while chunk := source.read(_CHUNK):
                self.write(out, chunk)
            _flush(out)

    def open_file(self, name: str) -> IO[bytes]:
        """Create the file ``name`` (counted against ``max_files``) for :meth:`write`."""
        return self._open(self._target(name))

    def write(self, out: IO[bytes], chunk: bytes) -> None:
        """Append ``chunk`` to a file of this payload (counted against ``max_bytes``)."""
        self._write(out, chunk)

    def close_file(self, out: IO[bytes]) -> None:
        """Flush, fsync and close a file opened with :meth:`open_file`."""
        try:
            _flush(out)
        finally:
            out.close()

    def count_entry(self, name: str) -> None:
        """Count one file or folder against ``max_files`` (:class:`PayloadTooLarge` past it)."""
        self.entries += 1
        if self.max_files is not None and self.entries > self.max_files:
            raise PayloadTooLarge(f"the upload holds more than {self.max_files} files and "
                                  f"folders (the server's --max-files limit; {name!r} is one "
                                  "too many)")

    def extract_tar(self, archive: Path) -> None:
        """Unpack a received tar (plain, gzip, bz2 or xz) into the folder.

        The archive itself is removed afterwards; the unpacked size and the number of members
        count against the limits (an archive bomb stops at the limit, not at the end of the
        disk or of the inodes).
        """
        self.received = 0
        try:
            cap = unpack_cap(self.max_bytes, self.max_files)  # headers count too (16.15)
            with open_archive(archive, cap, PayloadTooLarge) as tar:
                for member in tar:
                    if member.isdir():
                        safe_relative(member.name)
                        self.count_entry(member.name)
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
        rel = safe_relative(name)
        self.count_entry(name)
        target = self.folder / rel
        if len(os.fsencode(target)) >= _PATH_MAX:
            raise PayloadError(f"file name {name[:80]!r}... makes a path longer than the file "
                               f"system allows ({_PATH_MAX} bytes)")
        if target.is_dir():
            raise PayloadError(f"{name!r} is both a folder and a file in the upload")
        if target.exists():
            raise PayloadError(f"file {name!r} appears twice in the upload")
        for parent in reversed(rel.parents[:-1]):
            if (self.folder / parent).is_file():
                raise PayloadError(f"{name!r} lies under {parent.as_posix()!r}, which the upload "
                                   "already holds as a file")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _storage_error(exc) from exc
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


def _storage_error(exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(exc.errno, f"the data disk is full: {exc.strerror}")
    if exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
                     errno.EILSEQ):
        return PayloadError(f"the data disk cannot hold this file name "
                            f"({exc.strerror}: {str(exc.filename)[-80:]!r})")
    return exc


def storage_error(exc: OSError) -> Exception:
    """The error to answer for ``exc`` met while storing an upload (507, 400 or ``exc``)."""
    return _storage_error(exc)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_files(folder: Path) -> Iterable[tuple[str, int]]:
    """(relative POSIX path, size) of every regular file under ``folder``, sorted.

    Links (broken or not) and special files are left out: they are never listed, archived or
    counted, and a link that points nowhere cannot make a listing fail.
    """
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            try:
                info = path.lstat()
            except OSError:  # removed while we walked
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((path.relative_to(folder).as_posix(), info.st_size))
    return sorted(found)

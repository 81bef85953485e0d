"""Open an uploaded tar archive so that reading it costs no more than the payload limit allows.

``tarfile`` decompresses on its own and reads each header whole before anyone can look at it:
a gzip tar of 400 KB whose first header is a 400 MB pax header took the server 420 MB of memory
and 8 s of CPU before it failed, although the file data it holds is counted byte by byte (issue
16.15). :func:`open_archive` decompresses the upload itself (gzip, bz2, xz or none, told by its
first bytes) and hands ``tarfile`` a stream that counts every decompressed byte: past
``cap`` it raises :class:`~clara_rt.server.payloads.PayloadTooLarge`. Damaged compressed data
reads as :class:`tarfile.ReadError`, and so does a pax or long-name record over 1 MiB, more than
8 of them in a row, or a GNU sparse member, whatever the limits (the default --max-payload is
20 GiB, far more memory than one header may take).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["open_archive", "unpack_cap"]

_PER_ENTRY = 8 << 10  # header, pax or long-name record and padding of one member
_SLACK = 1 << 20  # end-of-archive blocks and record padding
_META_MAX = 1 << 20  # bytes of one pax or GNU long-name record
_META_RUN = 8  # such records before one member
_META_TYPES = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


def unpack_cap(max_bytes: int | None, max_files: int | None) -> int | None:
    """Most decompressed bytes an archive within ``max_bytes`` and ``max_files`` can need."""
    if max_bytes is None:
        return None
    return max_bytes + _PER_ENTRY * (max_files if max_files is not None else 10_000) + _SLACK


@contextlib.contextmanager
def open_archive(archive: Path, cap: int | None, too_large: type[Exception]
                 ) -> Iterator[tarfile.TarFile]:
    """A streaming :class:`tarfile.TarFile` over ``archive``, decompressed here and capped.

    Args:
        archive: The received upload.
        cap: Most decompressed bytes to read (``None``: no limit).
        too_large: The exception raised past ``cap`` (given a message).
    """
    with open(archive, "rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        stream: Any
        if magic[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        elif magic[:3] == b"BZh":
            stream = bz2.BZ2File(raw)
        elif magic == b"\xfd7zXZ\x00":
            stream = lzma.LZMAFile(raw)  # noqa: SIM115 (closed by the with below)
        else:
            stream = raw
        counted = _Counted(stream, cap, too_large)
        with stream, tarfile.open(fileobj=counted, mode="r|",
                                  tarinfo=_BoundedInfo) as tar:
            yield tar


class _BoundedInfo(tarfile.TarInfo):
    """A member header whose extension records (pax, GNU long names) are read only when they
    are small, and only a few in a row; GNU sparse members (whose maps grow without bound) are
    refused. Whatever ``--max-payload`` is, one header never costs more than 1 MiB."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise tarfile.ReadError(f"member {self.name[:80]!r} is a GNU sparse file; "
                                    "payloads hold plain regular files (tar without --sparse)")
        if self.type in _META_TYPES:
            run = getattr(tar, "_clara_meta_run", 0) + 1
            tar._clara_meta_run = run  # type: ignore[attr-defined]
            if self.size > _META_MAX or run > _META_RUN:
                raise tarfile.ReadError(f"a header record of {self.size} bytes ({run} in a row) "
                                        f"is larger than the {_META_MAX} bytes a member may have")
        else:
            tar._clara_meta_run = 0  # type: ignore[attr-defined]
        return super()._proc_member(tar)  # type: ignore[misc,no-any-return]


class _Counted(io.RawIOBase):
    """Reads from ``stream``, counting bytes; past ``cap`` raises ``too_large``."""

    def __init__(self, stream: IO[bytes], cap: int | None, too_large: type[Exception]) -> None:
        self._stream = stream
        self._cap = cap
        self._too_large = too_large
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        try:
            data = self._stream.read(size)
        except (zlib.error, lzma.LZMAError, EOFError, gzip.BadGzipFile) as exc:
            raise tarfile.ReadError(f"the compressed stream is damaged: {exc}") from exc
        except OSError as exc:
            if exc.errno is not None:
                raise
            raise tarfile.ReadError(f"the compressed stream is damaged: {exc}") from exc
        self.count += len(data)
        if self._cap is not None and self.count > self._cap:
            raise self._too_large(f"the archive unpacks to more than the server's limit of "
                                  f"{self._cap} bytes of files and headers (from --max-payload "
                                  "and --max-files)")
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

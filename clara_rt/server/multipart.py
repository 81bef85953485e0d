"""Multipart uploads parsed as they arrive, each file part written straight into the payload.

Starlette's ``request.form()`` receives the whole body (spooling every part) before anyone can
check it; here each chunk of the request goes through python-multipart's push parser on a worker
thread and each file part is written to its :class:`StagedPayload` file as its bytes arrive, so
the payload's size (``--max-payload``) and file count (``--max-files``) stop an upload at the
first byte past them. Form fields that are not files are counted and dropped (at most
``_MAX_FIELDS``); part headers are capped at ``_MAX_HEADER`` bytes.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from clara_rt.server.payloads import PayloadError, StagedPayload

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["receive_multipart"]

_MAX_FIELDS = 100
_MAX_HEADER = 16 << 10


async def receive_multipart(request: Request, staged: StagedPayload) -> None:
    """Receive a ``multipart/form-data`` upload into ``staged``.

    Raises:
        PayloadError: Not multipart, no boundary, a file part without a name, no files.
        PayloadTooLarge: Past the payload's size or file-count limit.
    """
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise PayloadError("the multipart upload has no boundary in its Content-Type")
    intake = _Intake(staged)
    parser = MultipartParser(boundary, intake.callbacks())
    try:
        async for chunk in request.stream():
            if chunk:
                await anyio.to_thread.run_sync(parser.write, chunk)
        await anyio.to_thread.run_sync(parser.finalize)
    except MultipartParseError as exc:
        raise PayloadError(f"the multipart upload is malformed: {exc}") from exc
    finally:
        intake.close()
    if not intake.ended:
        raise PayloadError("the multipart upload ends early (no closing boundary)")
    if intake.files == 0:
        raise PayloadError("the multipart upload holds no files (send them as 'files')")


class _Intake:
    """The parser's callbacks: one part at a time, file data to its payload file."""

    def __init__(self, staged: StagedPayload) -> None:
        self.staged = staged
        self.files = 0
        self.fields = 0
        self.ended = False
        self._field = bytearray()
        self._value = bytearray()
        self._disposition = b""
        self._out: IO[bytes] | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {"on_part_begin": self._part_begin, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_end": self._end}

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def _part_begin(self) -> None:
        self._disposition = b""
        self._field.clear()
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]
        self._check_header()

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        self._check_header()

    def _header_end(self) -> None:
        if bytes(self._field).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        filename = options.get(b"filename")
        if filename is None:
            self.fields += 1
            if self.fields > _MAX_FIELDS:
                raise PayloadError(f"the multipart upload has more than {_MAX_FIELDS} fields "
                                   "that are not files")
            return
        try:
            name = filename.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError(f"multipart file name {filename[:80]!r} is not UTF-8") from None
        if not name:
            raise PayloadError("a multipart file has no file name")
        self._out = self.staged.open_file(name)
        self.files += 1

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self.staged.write(self._out, data[start:end])

    def _part_end(self) -> None:
        out, self._out = self._out, None
        if out is not None:
            self.staged.close_file(out)

    def _end(self) -> None:
        self.ended = True

    def _check_header(self) -> None:
        if len(self._field) + len(self._value) > _MAX_HEADER:
            raise PayloadError(f"a multipart part header is longer than {_MAX_HEADER} bytes")

"""Routes of payloads: upload (a tar stream or multipart files, checked while they arrive),
list, describe, download one file or all as tar, delete; and the download helpers the results
routes share.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from clara_rt.errors import Conflict, NotFound
from clara_rt.server.deps import WRITE, ServerDep
from clara_rt.server.http_errors import ERRORS
from clara_rt.server.models import PayloadOut
from clara_rt.server.multipart import receive_multipart
from clara_rt.server.payloads import (
    PayloadError,
    PayloadTooLarge,
    StagedPayload,
    iter_files,
    storage_error,
)
from clara_rt.server.platform import Server
from clara_rt.server.results import open_result, tar_stream
from clara_rt.server.store import new_id

__all__ = ["archive_response", "content_type", "file_response", "router"]

# A payload's name is a label of one line (no NUL, newline or other control character).
_Name = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$",
                                    description="a label (default: the payload id)")]
_TAR_TYPES = {"application/x-tar", "application/tar", "application/gzip", "application/x-gzip",
              "application/x-compressed-tar", "application/octet-stream"}


def _upload_body() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
        "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array",
                                     "items": {"type": "string", "format": "binary"}}}}},
    }}}


router = APIRouter(tags=["payloads"])


@router.post("/v1/payloads", status_code=201, response_model=PayloadOut, dependencies=WRITE,
             responses=ERRORS, openapi_extra=_upload_body())
async def create_payload(request: Request, s: ServerDep, name: _Name = None) -> dict[str, Any]:
    """Upload a payload: a tar stream (plain or gzip) or multipart ``files``."""
    limit = s.config.max_payload_bytes
    length = request.headers.get("content-length")
    if limit is not None and length and length.isdigit() and int(length) > limit + (1 << 20):
        raise PayloadTooLarge(f"the upload ({length} bytes) is larger than the server's "
                              f"payload limit of {limit} bytes")
    payload_id = new_id()
    staged = await anyio.to_thread.run_sync(
        lambda: StagedPayload(s.config.tmp_dir, payload_id, max_bytes=limit,
                              min_free_bytes=s.config.min_free_bytes,
                              max_files=s.config.max_files))
    final = s.config.payloads_dir / payload_id
    try:
        await _receive(request, staged, s.config.tmp_dir / f"upload-{payload_id}.tar", limit)
        files, size = await anyio.to_thread.run_sync(staged.commit, final)
    except BaseException:
        staged.discard()
        raise
    record = {"id": payload_id, "name": name or payload_id, "files": files, "size": size,
              "created": time.time()}
    try:
        s.store.add_payload(record)
    except BaseException:  # e.g. the database on a full disk: no folder without a record
        _remove_tree(final, s.config.tmp_dir)
        raise
    return record


@router.get("/v1/payloads", response_model=list[PayloadOut])
def list_payloads(s: ServerDep) -> list[dict[str, Any]]:
    return s.store.payloads()


@router.get("/v1/payloads/{payload_id}", response_model=PayloadOut, responses=ERRORS)
def describe_payload(payload_id: str, s: ServerDep) -> dict[str, Any]:
    record = _payload(s, payload_id)
    folder = s.config.payloads_dir / payload_id
    return {**record, "file_list": [{"path": p, "size": n} for p, n in iter_files(folder)]}


@router.get("/v1/payloads/{payload_id}/files/{path:path}", response_class=FileResponse,
            responses=ERRORS)
def payload_file(payload_id: str, path: str, s: ServerDep) -> StreamingResponse:
    _payload(s, payload_id)
    return file_response(s.config.payloads_dir / payload_id, path)


@router.get("/v1/payloads/{payload_id}/archive", responses=ERRORS,
            response_class=StreamingResponse)
def payload_archive(payload_id: str, s: ServerDep, compress: bool = False) -> StreamingResponse:
    _payload(s, payload_id)
    return archive_response(s.config.payloads_dir / payload_id, f"payload-{payload_id}",
                            compress)


@router.delete("/v1/payloads/{payload_id}", status_code=204, dependencies=WRITE,
               responses=ERRORS)
def delete_payload(payload_id: str, s: ServerDep) -> Response:
    _payload(s, payload_id)
    users = s.store.payload_in_use(payload_id)
    if users:
        raise Conflict(f"payload {payload_id} is the input of unfinished jobs "
                       f"({', '.join(users[:5])}); cancel them first")
    s.store.mark_payload_deleted(payload_id)
    _remove_tree(s.config.payloads_dir / payload_id, s.config.tmp_dir)
    return Response(status_code=204)


def content_type(request: Request) -> str:
    """The request's media type, lowercase, without parameters (``""`` when none)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def file_response(folder: Path, path: str) -> StreamingResponse:
    """One regular file under ``folder`` (404 for anything else, links included).

    The file is opened once, without following a link at any level, and sent from that
    descriptor (its size as opened), so a link swapped in after the checks is never followed.
    """
    fd, info = open_result(folder, path)
    name = PurePosixPath(path).name
    quoted = quote(name)
    disposition = (f'attachment; filename="{name}"' if quoted == name
                   else f"attachment; filename*=utf-8''{quoted}")
    return StreamingResponse(
        _read_fd(fd, info.st_size),
        media_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
        headers={"Content-Length": str(info.st_size), "Content-Disposition": disposition,
                 "X-Content-Type-Options": "nosniff"})


def _read_fd(fd: int, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of the open file ``fd`` (closed at the end)."""
    try:
        left = size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)


def archive_response(folder: Path, name: str, compress: bool) -> StreamingResponse:
    """``folder``'s regular files as a tar stream (gzip with ``compress``), made on the fly."""
    suffix = ".tar.gz" if compress else ".tar"
    return StreamingResponse(
        tar_stream(folder, compress), media_type="application/gzip" if compress
        else "application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}{suffix}"'})


async def _receive(request: Request, staged: StagedPayload, archive: Path,
                   limit: int | None) -> None:
    """Unpack the upload into ``staged``: multipart files, or a tar stream saved to ``archive``
    first (removed after)."""
    ctype = content_type(request)
    if ctype == "multipart/form-data":
        await receive_multipart(request, staged)
    elif ctype in _TAR_TYPES or not ctype:
        try:
            await _receive_stream(request, archive, limit)
            await anyio.to_thread.run_sync(staged.extract_tar, archive)
        finally:
            archive.unlink(missing_ok=True)
    else:
        raise PayloadError(f"send a tar archive (Content-Type: application/x-tar or "
                           f"application/gzip) or multipart/form-data files, not {ctype}")


async def _receive_stream(request: Request, target: Path, limit: int | None) -> None:
    """Write the request body to ``target`` (a compressed archive may be 100x smaller than
    what it unpacks to; its unpacked size is checked while extracting)."""
    received = 0
    try:
        out = await anyio.to_thread.run_sync(lambda: open(target, "xb"))  # noqa: SIM115
    except OSError as exc:
        raise storage_error(exc) from exc
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if limit is not None and received > limit:
                raise PayloadTooLarge(f"the upload is larger than the server's payload limit "
                                      f"of {limit} bytes")
            try:
                await anyio.to_thread.run_sync(out.write, chunk)
            except OSError as exc:
                raise storage_error(exc) from exc
    finally:
        await anyio.to_thread.run_sync(out.close)


def _payload(server: Server, payload_id: str) -> dict[str, Any]:
    record = server.store.payload(payload_id)
    if record is None:
        raise NotFound(f"no payload with id '{payload_id}'")
    return record


def _remove_tree(folder: Path, tmp: Path) -> None:
    """Rename then delete, so a crash never leaves a half-deleted payload under its id."""
    if not folder.exists():
        return
    doomed = tmp / f"deleting-{folder.name}-{new_id()[:8]}"
    folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)

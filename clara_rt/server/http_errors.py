"""How the server's exceptions become HTTP answers (``{"detail": "..."}``), and the error
responses every route documents in the OpenAPI schema.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from clara_rt.errors import ClaraRTError, Conflict, DefinitionError, NotFound
from clara_rt.server.payloads import InsufficientStorage, PayloadError, PayloadTooLarge

__all__ = ["ERRORS", "add_error_handlers"]

_ERROR_BODY = {"application/json": {"schema": {
    "type": "object", "required": ["detail"],
    "properties": {"detail": {"anyOf": [{"type": "string"}, {"type": "array"}],
                              "description": "what went wrong (a list for malformed requests)"}},
}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": what, "content": _ERROR_BODY} for code, what in (
        (400, "bad upload"), (401, "missing or wrong bearer token"), (404, "unknown id"),
        (409, "conflicts with the current state"), (413, "upload too large"),
        (422, "invalid definition or request"), (507, "data disk full"))}


def add_error_handlers(app: FastAPI) -> None:
    """404 unknown, 409 conflict, 413 too large, 400 bad upload, 507 disk full (also SQLite's
    "database or disk is full"), 422 invalid definition or request."""
    def handler(code: int) -> Any:
        async def handle(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=code)
        return handle

    app.add_exception_handler(NotFound, handler(404))
    app.add_exception_handler(Conflict, handler(409))
    app.add_exception_handler(PayloadTooLarge, handler(413))
    app.add_exception_handler(PayloadError, handler(400))
    app.add_exception_handler(InsufficientStorage, handler(507))
    app.add_exception_handler(DefinitionError, handler(422))
    app.add_exception_handler(ClaraRTError, handler(422))
    app.add_exception_handler(ValueError, handler(422))
    app.add_exception_handler(sqlite3.Error, _database_error)
    app.add_exception_handler(OSError, _os_error)


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    """SQLite's "database or disk is full" is the data disk: 507, like a full upload."""
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return JSONResponse({"detail": f"the data disk is full: the database cannot grow "
                                       f"({exc}); free space under the data directory"},
                            status_code=507)
    return JSONResponse({"detail": f"the server's database failed: {exc}"}, status_code=503)


async def _os_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OSError)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return JSONResponse({"detail": f"the data disk is full: {exc.strerror}"},
                            status_code=507)
    raise exc

"""The server's front door: the token is checked and every body capped before a route runs.

:class:`RequestGuard` is plain ASGI middleware wrapped around the whole application, so nothing
below it (FastAPI's body parsing, JSON decoding, multipart) sees a request that fails here:

* a write (any method but GET, HEAD, OPTIONS) without the server's bearer token is answered 401
  at once, before a byte of its body is read (a 200 MB body costs the server nothing);
* a body whose ``Content-Length`` is over the route's limit is answered 413 unread, and one that
  grows past it while streaming (chunked) stops there: reading raises a 413 ``HTTPException``
  that the route's handlers turn into the answer. The limit is the payload limit (plus room for
  multipart framing) on ``POST /v1/payloads`` and :data:`BODY_LIMIT` everywhere else.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["BODY_LIMIT", "TOKEN_HINT", "RequestGuard"]

BODY_LIMIT = 4 << 20  # JSON requests and pipeline definitions (at most 1 MiB of YAML)
_FRAMING = 1 << 20  # multipart boundaries and part headers around a payload's bytes
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_HINT = ("this server needs 'Authorization: Bearer <token>' on every write (the token of "
              "clara-rt serve's --token-file or CLARA_RT_TOKEN)")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestGuard:
    """ASGI middleware: bearer token on writes, then a cap on the request body.

    Args:
        app: The application behind the guard.
        token: The bearer token every write needs (``None``: writes are open).
        max_payload: The payload limit in bytes (``None``: none) for ``POST /v1/payloads``.
    """

    def __init__(self, app: App, *, token: str | None, max_payload: int | None) -> None:
        self.app = app
        self._token = None if token is None else token.encode()
        self._max_payload = max_payload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headers = dict(scope.get("headers") or ())
        if method not in _READS and not self._authorised(headers):
            await _reply(send, 401, TOKEN_HINT, [(b"www-authenticate", b"Bearer")])
            return
        limit = self._limit(method, scope["path"])
        length = headers.get(b"content-length", b"")
        if limit is not None and length.isdigit() and int(length) > limit:
            await _reply(send, 413, _too_large(method, scope["path"], limit,
                                               f"{int(length)} bytes"))
            return
        if limit is None:
            await self.app(scope, receive, send)
            return
        await self.app(scope, _capped(receive, limit, method, scope["path"]), send)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        if self._token is None:
            return True
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(credentials.strip(),
                                                                      self._token)

    def _limit(self, method: str, path: str) -> int | None:
        if method == "POST" and path.rstrip("/") == "/v1/payloads":
            return None if self._max_payload is None else self._max_payload + _FRAMING
        return BODY_LIMIT


def _capped(receive: Receive, limit: int, method: str, path: str) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, _too_large(method, path, limit, "the body"))
        return message

    return counted


def _too_large(method: str, path: str, limit: int, what: str) -> str:
    hint = " (clara-rt serve --max-payload)" if path.startswith("/v1/payloads") else ""
    return f"{what} of {method} {path} is larger than the server's limit of {limit} bytes{hint}"


async def _reply(send: Send, status: int, detail: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})

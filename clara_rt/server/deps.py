"""FastAPI dependencies every router shares: the running server and the write token.

The application holds its parts on ``app.state``: ``config`` (set by
:func:`~clara_rt.server.app.create_app`) and ``server`` (the :class:`Server`, set while the
lifespan runs). Routes reach them through these dependencies, never through closures::

    @router.get("/v1/pipelines")
    def list_pipelines(s: ServerDep) -> list[dict[str, Any]]:
        return s.pipelines.all()
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clara_rt.server.config import ServerConfig
from clara_rt.server.guard import TOKEN_HINT
from clara_rt.server.platform import Server

__all__ = ["WRITE", "ConfigDep", "ServerDep", "authorised", "config_of", "server_of"]

_BEARER = HTTPBearer(auto_error=False)


async def server_of(request: Request) -> Server:
    """The running :class:`Server` of the application that took ``request``."""
    server: Server = request.app.state.server
    return server


async def config_of(request: Request) -> ServerConfig:
    """The :class:`ServerConfig` the application was created with."""
    config: ServerConfig = request.app.state.config
    return config


ServerDep = Annotated[Server, Depends(server_of)]
ConfigDep = Annotated[ServerConfig, Depends(config_of)]


def authorised(
    config: ConfigDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> None:
    """Refuse a write (401) unless it carries the server's bearer token (when one is set)."""
    if config.token is None:
        return
    if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), config.token.encode()):
        raise HTTPException(401, TOKEN_HINT, headers={"WWW-Authenticate": "Bearer"})


#: The dependencies of a route that changes something (``dependencies=WRITE``).
WRITE = [Depends(authorised)]

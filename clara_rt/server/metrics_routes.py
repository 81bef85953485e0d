"""Routes of monitoring (being written)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from clara_rt.server.config import ServerConfig

__all__ = ["add"]


def add(app: FastAPI, server: Callable[[], Any], config: ServerConfig) -> None:
    """Register the routes on ``app``; ``server()`` returns the running :class:`Server`."""

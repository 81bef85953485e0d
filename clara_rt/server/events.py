"""Job status changes fanned out to Server-Sent Events subscribers.

Worker and dispatcher threads call :meth:`EventHub.publish`; each subscriber is an asyncio queue
on the server's event loop, fed with ``call_soon_threadsafe``. A subscriber that does not keep up
loses its oldest events rather than growing without bound (it still gets the latest state of
every job it follows, which is what a status stream needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["EventHub"]

log = logging.getLogger("clara_rt.server")

_QUEUE_LIMIT = 1000


@dataclass(frozen=True, eq=False)
class _Subscriber:
    """One SSE stream: its event loop and the queue it reads (hashed by identity)."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]]


class EventHub:
    """Publish/subscribe of job records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def listen(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Call ``fn(event)`` on the publishing thread for every event (keep it quick; its
        exceptions are logged and ignored)."""
        with self._lock:
            self._listeners.append(fn)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every listener and subscriber (from any thread)."""
        with self._lock:
            subscribers = list(self._subscribers)
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn(event)
            except Exception:
                log.exception("event listener %r failed", fn)
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                sub.loop.call_soon_threadsafe(_put, sub.queue, event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """An asyncio queue receiving every event published while the context is open."""
        entry = _Subscriber(asyncio.get_running_loop(),
                            asyncio.Queue[dict[str, Any]](_QUEUE_LIMIT))
        with self._lock:
            self._subscribers.add(entry)
        try:
            yield entry.queue
        finally:
            with self._lock:
                self._subscribers.discard(entry)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _put(queue: asyncio.Queue[dict[str, Any]], event: dict[str, Any]) -> None:
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(event)

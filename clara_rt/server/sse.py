"""Server-Sent Events of job records (``/v1/jobs/{id}/events``, ``/v1/events``).

Each event is ``event: job``, ``id: <job id>`` and ``data: <the job's record as JSON>``; a float
JSON cannot hold (infinity, NaN) is sent as ``null``, so every ``data`` line parses as JSON. A
comment line keeps idle streams open every 15 s; a job's stream ends once the job has stopped.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from clara_rt.server.events import EventHub

__all__ = ["sse_response"]


def sse_response(request: Request, first: dict[str, Any] | None, job_id: str | None
         ) -> StreamingResponse:
    hub: EventHub = request.app.state.server.events

    async def stream() -> AsyncIterator[bytes]:
        async with hub.subscribe() as queue:
            if first is not None:
                yield _event(first)
                if first["state"] == "stopped":
                    return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15.0)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                job = event["job"]
                if job_id is not None and job["id"] != job_id:
                    continue
                yield _event(job)
                if job_id is not None and job["state"] == "stopped":
                    return

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(job: dict[str, Any]) -> bytes:
    data = json.dumps(_finite(job), allow_nan=False)
    return f"event: job\nid: {job['id']}\ndata: {data}\n\n".encode()


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as ``None`` (JSON has no Infinity or NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value

"""The server's :class:`~clara_rt.monitor.Monitor`: the sampling thread, and every job that
stops counted once (job latency, operator durations, hops) for ``/metrics`` and ``/v1/monitor``.
"""

from __future__ import annotations

import os
from typing import Any

from clara_rt.monitor import Monitor
from clara_rt.server.config import ServerConfig

__all__ = ["start_monitor"]


def start_monitor(server: Any) -> Monitor:
    """Create and start ``server``'s monitor; count every job that stops from now on."""
    config: ServerConfig = server.config
    monitor = Monitor(interval=config.monitor_interval, disk_path=config.data,
                      workers=config.workers or os.cpu_count() or 1)

    def on_event(event: dict[str, Any]) -> None:
        record = event.get("job")
        if (event.get("type") != "job" or not isinstance(record, dict)
                or record.get("state") != "stopped" or monitor.runtime.seen(record["id"])):
            return
        monitor.runtime.job_stopped(record, _upstream(server, record.get("pipeline_id")))

    server.events.listen(on_event)
    monitor.start()
    return monitor


def _upstream(server: Any, pipeline_id: str | None) -> dict[str, list[str]]:
    """Operator -> its upstream operators, from the pipeline's record ({} once deleted)."""
    if pipeline_id is None:
        return {}
    try:
        record = server.pipelines.get(pipeline_id)
    except LookupError:
        return {}
    return {op["name"]: list(op.get("inputs") or ()) for op in record["operators"]}

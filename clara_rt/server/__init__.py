"""``clara-rt serve``: Clara Deploy's platform server (pipelines, payloads, jobs, results) in one
process around the runtime.

Needs the ``server`` extra (FastAPI, uvicorn, python-multipart)::

    from clara_rt.server import ServerConfig, serve
    serve(ServerConfig(data=Path("/var/lib/clara-rt"), port=8000))
"""

from __future__ import annotations

from clara_rt.server.config import ServerConfig

__all__ = ["ServerConfig", "serve"]


def serve(config: ServerConfig, *, log_level: str = "info") -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (then stop it cleanly)."""
    import signal
    import sys

    import uvicorn

    from clara_rt.server.app import create_app

    # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal with the handler that was
    # in place before it started: make that one exit with status 0 (a clean stop).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=log_level,
                timeout_graceful_shutdown=int(config.shutdown_grace) + 5,
                access_log=log_level == "debug")

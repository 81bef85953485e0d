"""``clara-rt dicom``: run the DICOM adapter in the foreground.

* ``clara-rt dicom --config ADAPTER.yaml --server URL [--token-file PATH]`` listens for DICOM
  (C-ECHO, C-STORE), turns each complete series into a payload and jobs on the server, and sends
  the jobs' DICOM results to the configured destinations, until SIGINT or SIGTERM (then it stops
  cleanly: series not yet complete stay on disk and are picked up by the next start). The token
  may also come from ``$CLARA_RT_TOKEN``.
* ``clara-rt dicom --check --config ADAPTER.yaml`` only checks the configuration and reports
  every mistake it finds (each section, destination and AE title on its own), not only the first.

Logs go to stderr: one line per association, completed series, job created and export.
pynetdicom is imported only when the verb runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from clara_rt.errors import ClaraRTError

if TYPE_CHECKING:
    from clara_rt.dicom.config import AdapterConfig

__all__ = ["add"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``dicom``."""
    p = verbs.add_parser("dicom", help="run the DICOM adapter (DICOM in, jobs, results out)")
    p.add_argument("--config", type=Path, required=True, metavar="ADAPTER.yaml",
                   help="the adapter configuration (dicom, ae-titles, destinations)")
    p.add_argument("--server", metavar="URL", default=os.environ.get("CLARA_RT_HOST"),
                   help="the clara-rt server (clara-rt serve), e.g. http://127.0.0.1:8000; "
                        "default $CLARA_RT_HOST")
    p.add_argument("--token-file", type=Path, metavar="PATH",
                   help="a file holding the server's API token (default $CLARA_RT_TOKEN)")
    p.add_argument("--token", metavar="T", help="the server's API token; visible to every "
                                                "user (ps): prefer --token-file")
    p.add_argument("--check", action="store_true",
                   help="only check the configuration and exit")
    p.add_argument("--verbose", action="store_true", help="also log pynetdicom's messages")
    p.set_defaults(func=_cmd_dicom)


def _cmd_dicom(args: argparse.Namespace) -> int:
    from clara_rt.dicom.config import config_problems, load_config

    if args.check:
        problems = config_problems(args.config)
        for problem in problems:
            print(f"clara-rt: error: {problem}", file=sys.stderr)
        if len(problems) > 1:
            print(f"clara-rt: {len(problems)} errors in {args.config}", file=sys.stderr)
        if problems:
            return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ClaraRTError as exc:
        print(f"clara-rt: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        destinations = ", ".join(str(d) for d in config.destinations) or "none"
        print(f"OK: {args.config}: AE {config.dicom.ae_title} on {config.dicom.host}:"
              f"{config.dicom.port}; called AE titles: "
              f"{', '.join(ae.name for ae in config.ae_titles)}; destinations: {destinations}")
        return EXIT_OK
    if not args.server:
        print("clara-rt: error: dicom needs --server URL (or $CLARA_RT_HOST), unless --check",
              file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.verbose)
    try:
        token = _token(args)
    except ValueError as exc:
        print(f"clara-rt: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _run(config, args.server, token)


def _token(args: argparse.Namespace) -> str | None:
    """``--token-file``, else ``--token`` (warned), else ``$CLARA_RT_TOKEN``; then the token is
    removed from this process's environment and ``/proc`` views (issue 16.2, 16.7)."""
    from clara_rt.server.environ import forget_secret, read_token_file

    if args.token_file is not None:
        token: str | None = read_token_file(args.token_file)  # warns when others may read it
    elif args.token:
        print("clara-rt: warning: --token is visible to every user of this machine (ps); "
              "put the token in a file (--token-file) or in CLARA_RT_TOKEN", file=sys.stderr)
        token = str(args.token)
    else:
        token = os.environ.get("CLARA_RT_TOKEN") or None
    forget_secret(token)
    return token


def _run(config: AdapterConfig, server: str, token: str | None) -> int:
    from clara_rt.client import Client
    from clara_rt.dicom.adapter import DicomAdapter

    try:
        client = Client(server, token)
    except ValueError as exc:  # not an http(s) URL
        print(f"clara-rt: error: --server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        adapter = DicomAdapter(config, client)
        adapter.start()
    except (ImportError, OSError) as exc:  # pynetdicom missing, port taken
        print(f"clara-rt: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("clara_rt.dicom").info("%s received: stopping",
                                                 signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    host, port = adapter.address
    logging.getLogger("clara_rt.dicom").info(
        "DICOM adapter ready: %s on %s:%d -> server %s", config.dicom.ae_title, host, port,
        server)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        adapter.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logging.getLogger("clara_rt.dicom").info("DICOM adapter stopped")
    return EXIT_OK


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pynetdicom logs every association step at INFO and rejections at ERROR; the adapter logs
    # its own one line per association, so pynetdicom is quiet unless asked.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose else logging.CRITICAL)

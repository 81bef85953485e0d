"""``clara-rt serve``: the platform server (HTTP API) on a data directory."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from clara_rt.cli._common import parse_pairs, positive_int

__all__ = ["add", "parse_size"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verbs.add_parser("serve", help="run the platform server (REST API for pipelines, "
                                       "payloads, jobs and results)")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("CLARA_RT_DATA",
                                                                    "clara-rt-data")),
                   metavar="DIR", help="data directory (default: $CLARA_RT_DATA or "
                                       "./clara-rt-data)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token-file", type=Path, metavar="PATH",
                   help="file holding the bearer token required on every write (default: "
                        "$CLARA_RT_TOKEN; without either, writes are open)")
    p.add_argument("--token", help="the token itself: DEPRECATED, any user can read it with "
                                   "ps; use --token-file or CLARA_RT_TOKEN")
    p.add_argument("--workers", type=positive_int, metavar="N", help="runtime worker threads")
    p.add_argument("--max-running", type=positive_int, metavar="N",
                   help="jobs admitted to the runtime at once (default: 2 x workers)")
    p.add_argument("--on-restart", choices=("fail", "requeue"), default="fail",
                   help="what jobs left running by a crash become (default: fail)")
    p.add_argument("--default-timeout", type=float, metavar="S",
                   help="job timeout when a job names none")
    p.add_argument("--max-timeout", type=float, metavar="S",
                   help="largest job timeout allowed (at most and by default 7 days)")
    p.add_argument("--max-payload", type=parse_size, default="20G", metavar="SIZE",
                   help="largest upload, e.g. 500M, 20G (default 20G)")
    p.add_argument("--max-files", type=positive_int, default=10_000, metavar="N",
                   help="most files and folders one upload may hold (default 10000)")
    p.add_argument("--min-free", type=parse_size, default="64M", metavar="SIZE",
                   help="refuse uploads while the data disk has less free space (default 64M)")
    p.add_argument("--retention-days", type=float, metavar="D",
                   help="delete results and payloads of jobs older than D days")
    p.add_argument("--disk-threshold", type=float, default=0.95, metavar="F",
                   help="delete the oldest results while the disk is fuller (default 0.95)")
    p.add_argument("--memory-budget", type=_budget, default=-1, metavar="SIZE|none",
                   help="memory the requests of running jobs may add up to (default 80%% of "
                        "physical memory; 'none': no limit); jobs that do not fit wait")
    p.add_argument("--gpu-jobs", type=_count_or_none, default=-1, metavar="N|none",
                   help="jobs requesting a GPU that run at once (default: one per GPU)")
    p.add_argument("--shutdown-grace", type=float, default=30.0, metavar="S",
                   help="on SIGTERM, seconds running jobs get to finish before they are "
                        "stopped and handled as --on-restart says (default 30)")
    p.add_argument("--monitor-interval", type=float, default=5.0, metavar="S",
                   help="seconds between samples of GPU and host metrics (default 5)")
    p.add_argument("--service", action="append", default=[], metavar="NAME=URL",
                   help="URL of a service the pipelines use (triton=URL), repeatable")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run jobs on a Ray cluster: ray://HOST:PORT (Ray Client), HOST:PORT "
                        "(this machine is a node), auto or local (needs clara-rt[cluster] here "
                        "and on every node); --workers then sets each node runtime's threads")
    p.add_argument("--cluster-shared-path", type=Path, metavar="DIR",
                   help="a folder holding --data mounted at the same path on every node: job "
                        "files are read and written there instead of moving through Ray")
    p.add_argument("--cluster-grace", type=float, default=30.0, metavar="S",
                   help="seconds after a job's timeout before its node runtime counts as hung "
                        "and is replaced (default 30)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="info")
    p.set_defaults(func=_cmd_serve)


def parse_size(text: str) -> int:
    """``"500M"`` -> bytes (K, M, G, T are powers of 1024; a bare number is bytes)."""
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = value[-1] if value and value[-1] in _UNITS else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size like 500M or 20G, got {text!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"a size cannot be negative: {text!r}")
    return int(number * _UNITS[unit])


def _budget(text: str) -> int | None:
    return None if text.strip().lower() == "none" else parse_size(text)


def _count_or_none(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from clara_rt.server import ServerConfig, serve
    except ImportError as exc:
        print(f"clara-rt: error: the server needs FastAPI and uvicorn ({exc}); "
              "pip install 'clara-rt[server]'", file=sys.stderr)
        return 2
    try:
        services = parse_pairs(args.service, "--service")
        token = _token(args)
        config = ServerConfig(
            data=args.data.resolve(), host=args.host, port=args.port, token=token,
            workers=args.workers, max_running=args.max_running, on_restart=args.on_restart,
            default_timeout=args.default_timeout, max_timeout=args.max_timeout,
            max_payload_bytes=args.max_payload, max_files=args.max_files,
            min_free_bytes=args.min_free,
            retention_days=args.retention_days, disk_threshold=args.disk_threshold,
            services=services, shutdown_grace=args.shutdown_grace,
            memory_budget=args.memory_budget, gpu_jobs=args.gpu_jobs,
            monitor_interval=args.monitor_interval, cluster=args.cluster,
            cluster_shared_path=(None if args.cluster_shared_path is None
                                 else args.cluster_shared_path.resolve()),
            cluster_grace=args.cluster_grace)
    except (ValueError, OSError) as exc:
        print(f"clara-rt: error: {exc}", file=sys.stderr)
        return 2
    busy = _data_busy(config.data)
    if busy is not None:
        print(f"clara-rt: error: {busy}", file=sys.stderr)
        return 1
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    where = "" if config.cluster is None else f", jobs on the Ray cluster {config.cluster}"
    print(f"clara-rt: serving {config.data} on http://{config.host}:{config.port} "
          f"(API docs at /docs; writes {'need a token' if config.token else 'are open'}{where})",
          file=sys.stderr, flush=True)
    serve(config, log_level=args.log_level)
    return 0


def _token(args: argparse.Namespace) -> str | None:
    """The write token: ``--token-file``, else ``--token`` (warned), else ``$CLARA_RT_TOKEN``."""
    if args.token_file is not None:
        from clara_rt.server.environ import read_token_file

        return read_token_file(args.token_file)  # warns when others may read it
    if args.token:
        print("clara-rt: warning: --token is visible to every user of this machine (ps); "
              "put the token in a file (--token-file) or in CLARA_RT_TOKEN", file=sys.stderr)
        return str(args.token)
    return os.environ.get("CLARA_RT_TOKEN") or None


def _data_busy(data: Path) -> str | None:
    """Why ``data`` cannot be served (another server holds it), or ``None``."""
    from clara_rt.server.datalock import DataDirectoryBusy, DataLock

    try:
        data.mkdir(parents=True, exist_ok=True)
        DataLock(data).release()  # the server takes it for good once it starts
    except DataDirectoryBusy as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot use the data directory {data}: {exc}"
    return None

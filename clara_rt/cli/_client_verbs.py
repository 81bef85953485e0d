"""The client verbs' functions: each takes a :class:`~clara_rt.client.Client` and the parsed
arguments, prints a table (or, with ``--json``, the server's records) and returns the exit
status. :func:`handled` makes one an argparse ``func``: it connects and turns request failures
into exit 1. The verbs are declared in :mod:`clara_rt.cli._client`.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clara_rt.cli import _client_format as fmt
from clara_rt.cli._common import parse_pairs

if TYPE_CHECKING:
    from typing import TypeAlias

    from clara_rt.client import Client

    Verb: TypeAlias = Callable[[Client, argparse.Namespace], int]

__all__ = ["cancel_job", "create_job", "create_pipeline", "describe_job", "describe_pipeline",
           "download", "handled", "list_jobs", "list_payloads", "list_pipelines", "logs",
           "start_job", "wait_job"]

_TOKEN_HINT = ("clara-rt: hint: this server needs a token on writes: pass --token T, set "
               "CLARA_RT_TOKEN, or put 'token: T' in ~/.clara-rt/config.yaml")


def create_pipeline(client: Client, args: argparse.Namespace) -> int:
    if not args.definition.is_file():
        return fmt.usage(f"{args.definition} is not a file")
    record = client.create_pipeline(args.definition, replace=args.replace)
    if args.json:
        return fmt.dump(record)
    print(f"PIPELINE_ID: {record['id']}\nPIPELINE_NAME: {record['name']}")
    return fmt.EXIT_OK


def create_job(client: Client, args: argparse.Namespace) -> int:
    try:
        variables = parse_pairs(args.var, "--var")
    except ValueError as exc:
        return fmt.usage(str(exc))
    missing = [str(p) for p in args.files if not p.exists()]
    if missing:
        return fmt.usage(f"no such file or folder: {', '.join(missing)}")
    client.get_pipeline(args.pipeline)  # an unknown pipeline fails before a long upload
    payload: dict[str, Any] | None = None
    if args.files:
        count, size = fmt.tally(args.files)
        fmt.note(f"uploading {count} files ({fmt.size(size)}) ...")
        t0 = time.perf_counter()
        payload = client.create_payload(args.files, name=args.name)
        took = time.perf_counter() - t0
        rate = fmt.size(payload["size"] / max(took, 1e-9))
        fmt.note(f"uploaded {payload['files']} files ({fmt.size(payload['size'])}) in "
                 f"{took:.2f} s ({rate}/s)")
    job = client.create_job(args.pipeline, [payload["id"]] if payload else [], name=args.name,
                            priority=args.priority, variables=variables, start=args.start,
                            timeout=args.timeout)
    if args.json:
        return fmt.dump({"job": job, "payload": payload})
    print(f"JOB_ID: {job['id']}")
    if payload is not None:
        print(f"PAYLOAD_ID: {payload['id']}")
    if args.start:
        fmt.note(f"job {job['id']} queued ({job['priority']})")
    else:
        fmt.note(f"start it with: clara-rt start job -j {job['id']}")
    return fmt.EXIT_OK


def start_job(client: Client, args: argparse.Namespace) -> int:
    return _show_state(client.start_job(args.job), args)


def cancel_job(client: Client, args: argparse.Namespace) -> int:
    job = client.cancel_job(args.job)
    if job["state"] != "stopped" and not args.json:
        fmt.note(f"cancel requested; job {job['id']} stops at its next operator boundary")
    return _show_state(job, args)


def wait_job(client: Client, args: argparse.Namespace) -> int:
    job = client.wait_job(args.job, timeout=args.timeout)
    _show_state(job, args)
    return fmt.EXIT_OK if job["status"] == "healthy" else fmt.EXIT_FAILED


def list_jobs(client: Client, args: argparse.Namespace) -> int:
    jobs = client.list_jobs(state=args.state, status=args.status, pipeline=args.pipeline,
                            priority=args.priority, limit=args.limit)
    if args.json:
        return fmt.dump(jobs)
    now = time.time()
    fmt.table(["JOB ID", "NAME", "PIPELINE", "PRIORITY", "STATE", "STATUS", "CREATED",
               "DURATION"],
              [[j["id"], j["name"], j["pipeline"], j["priority"], j["state"], j["status"],
                fmt.when(j["created"]), fmt.duration(j, now)] for j in jobs])
    return fmt.EXIT_OK


def list_pipelines(client: Client, args: argparse.Namespace) -> int:
    pipelines = client.list_pipelines()
    if args.json:
        return fmt.dump(pipelines)
    fmt.table(["PIPELINE ID", "NAME", "API VERSION", "OPERATORS", "CREATED"],
              [[p["id"], p["name"], p["api_version"], str(len(p["operators"])),
                fmt.when(p["created"])] for p in pipelines])
    return fmt.EXIT_OK


def list_payloads(client: Client, args: argparse.Namespace) -> int:
    payloads = client.list_payloads()
    if args.json:
        return fmt.dump(payloads)
    fmt.table(["PAYLOAD ID", "NAME", "FILES", "SIZE", "CREATED"],
              [[p["id"], p["name"], str(p["files"]), fmt.size(p["size"]),
                fmt.when(p["created"])] for p in payloads])
    return fmt.EXIT_OK


def describe_job(client: Client, args: argparse.Namespace) -> int:
    job = client.get_job(args.job)
    if args.json:
        return fmt.dump(job)
    queued = " (queued)" if job["queued"] else ""
    fmt.fields([
        ("JOB_ID", job["id"]), ("NAME", job["name"]),
        ("PIPELINE", f"{job['pipeline']} ({job['pipeline_id']})"),
        ("PAYLOADS", ", ".join(job["payloads"]) or "-"), ("PRIORITY", job["priority"]),
        ("STATE", job["state"] + queued), ("STATUS", job["status"]),
        ("CREATED", fmt.when(job["created"])), ("STARTED", fmt.when(job["started"])),
        ("STOPPED", fmt.when(job["stopped"])), ("DURATION", fmt.duration(job, time.time())),
        ("TIMEOUT", "-" if job["timeout"] is None else f"{job['timeout']:g} s"),
        ("VARIABLES", " ".join(f"{k}={v}" for k, v in job["variables"].items()) or "-"),
        ("ERROR", job["error"] or "-")])
    print("\nOPERATORS")
    fmt.table(["NAME", "STATE", "START", "DURATION"],
              [[op["name"], op["state"], fmt.ms(op["start_ms"], plus=True),
                fmt.ms(op["duration_ms"])] for op in job["operators"]], indent="  ")
    print("\nHISTORY")
    fmt.table(["TIME", "STATE", "STATUS", "NOTE"],
              [[fmt.when(h["time"]), h["state"], h["status"], h["note"] or ""]
               for h in job.get("history") or []], indent="  ")
    return fmt.EXIT_OK


def describe_pipeline(client: Client, args: argparse.Namespace) -> int:
    record = client.get_pipeline(args.pipeline)
    if args.json:
        return fmt.dump(record)
    jobs = record.get("jobs") or {}
    counts = ", ".join(f"{k} {v}" for k, v in jobs.items()
                       if k in ("pending", "running", "stopped")) or "-"
    fmt.fields([("PIPELINE_ID", record["id"]), ("NAME", record["name"]),
                ("API_VERSION", record["api_version"]),
                ("CREATED", fmt.when(record["created"])),
                ("UPDATED", fmt.when(record["updated"])), ("JOBS", counts)])
    print("\nOPERATORS")
    fmt.table(["NAME", "INPUTS FROM", "DESCRIPTION"],
              [[op["name"], ", ".join(op["inputs"]) or "(payload)", op["description"]]
               for op in record["operators"]], indent="  ")
    return fmt.EXIT_OK


def download(client: Client, args: argparse.Namespace) -> int:
    dest: Path = args.dest if args.dest is not None else Path(args.job)
    t0 = time.perf_counter()
    if args.file is not None:
        target = dest / args.file
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_result_file(args.job, args.file, target)
        files = [{"path": args.file, "size": target.stat().st_size}]
    else:
        files = client.result_files(args.job)
        client.download_results(args.job, dest)
    took = time.perf_counter() - t0
    rows = [{**f, "local": str(dest / f["path"])} for f in files]
    if args.json:
        return fmt.dump(rows)
    for row in rows:
        print(row["local"])
    total = sum(int(f["size"]) for f in files)
    fmt.note(f"downloaded {len(files)} files ({fmt.size(total)}) of job {args.job} into "
             f"{dest} in {took:.2f} s")
    return fmt.EXIT_OK


def logs(client: Client, args: argparse.Namespace) -> int:
    text = client.logs(args.job, args.operator)
    if args.json:
        return fmt.dump({"job": args.job, "operator": args.operator, "log": text})
    if not text:
        fmt.note(f"operator '{args.operator}' of job {args.job} has logged nothing (yet)")
    sys.stdout.write(text)
    return fmt.EXIT_OK


# --- helpers --------------------------------------------------------------------------------


def handled(func: Verb) -> Callable[[argparse.Namespace], int]:
    """Make a verb function: connect, run ``func``, turn request failures into exit 1."""

    @functools.wraps(func)
    def verb(args: argparse.Namespace) -> int:
        from clara_rt.client import Client, ClientError

        try:
            client = Client.from_config(args.host, args.token)
        except ValueError as exc:
            return fmt.usage(str(exc))
        try:
            return func(client, args)
        except ClientError as exc:
            print(f"clara-rt: error: {exc}", file=sys.stderr)
            if exc.status == 401:
                print(_TOKEN_HINT, file=sys.stderr)
            return fmt.EXIT_FAILED
        except (TimeoutError, OSError) as exc:
            print(f"clara-rt: error: {exc}", file=sys.stderr)
            return fmt.EXIT_FAILED
        except KeyboardInterrupt:
            print("clara-rt: interrupted", file=sys.stderr)
            return 130

    return verb


def _show_state(job: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        return fmt.dump(job)
    state = job["state"] + (" (queued)" if job["queued"] else "")
    lines = [("JOB_ID", job["id"]), ("STATE", state), ("STATUS", job["status"])]
    if job["state"] == "stopped":
        lines.append(("DURATION", fmt.duration(job, time.time())))
    if job["error"]:
        lines.append(("ERROR", job["error"]))
    for key, value in lines:
        print(f"{key}: {value}")
    return fmt.EXIT_OK



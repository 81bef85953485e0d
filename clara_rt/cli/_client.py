"""Clara-CLI-style client verbs against ``clara-rt serve`` (the platform server).

* ``create pipeline -p X.yaml [--replace]`` -> ``PIPELINE_ID: <id>``
* ``create job -p PIPELINE [-n NAME] -f PATH [-f PATH ...] [--priority P] [--var K=V]
  [--timeout S] [--start]`` uploads the paths as one payload and creates the job ->
  ``JOB_ID: <id>``, ``PAYLOAD_ID: <id>``
* ``start job -j ID``, ``cancel job -j ID``, ``wait job -j ID [--timeout S]`` (exit 0 when the
  job ends healthy, 1 otherwise)
* ``list jobs [--state S] [--status S] [--pipeline P] [--priority P] [--limit N]``,
  ``list pipelines``, ``list payloads``: tables (``--json``: the records)
* ``describe job -j ID`` (state, error, operators, history), ``describe pipeline -p REF``
* ``download JOB [DEST] [--file PATH]`` (all results, or one file, into ``DEST``, default
  ``./<job id>``); ``logs JOB OPERATOR``

``create``/``start``/``cancel``/``describe``/``wait`` also accept Clara's plural spellings
(``clara-rt create pipelines``, ``create jobs``). Every verb takes ``--host URL`` and
``--token T`` (else ``$CLARA_RT_HOST``/``$CLARA_RT_TOKEN``, else ``~/.clara-rt/config.yaml``
with ``host:`` and ``token:``, else ``http://127.0.0.1:8000``) and ``--json``. Exit status: 0
success; 1 a failed request (``clara-rt: error: ...``; a 401 adds a hint about the token), or
for ``wait`` a job that did not end healthy; 2 bad arguments or a bad config file; 130
interrupted. ``clara_rt.client`` is imported only when a verb runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clara_rt.cli._common import parse_pairs, positive_int
from clara_rt.job import PRIORITY_NAMES

if TYPE_CHECKING:
    from typing import TypeAlias

    from clara_rt.client import Client

    Verb: TypeAlias = Callable[[Client, argparse.Namespace], int]
    Subs: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_TOKEN_HINT = ("clara-rt: hint: this server needs a token on writes: pass --token T, set "
               "CLARA_RT_TOKEN, or put 'token: T' in ~/.clara-rt/config.yaml")


def add(verbs: Subs) -> None:
    """Declare ``create``, ``start``, ``list``, ``cancel``, ``describe``, ``wait``,
    ``download`` and ``logs``."""
    conn = argparse.ArgumentParser(add_help=False)
    group = conn.add_argument_group("server")
    group.add_argument("--host", metavar="URL",
                       help="server address (default: $CLARA_RT_HOST, then 'host:' in "
                            "~/.clara-rt/config.yaml, then http://127.0.0.1:8000)")
    group.add_argument("--token", metavar="T",
                       help="bearer token for writes (default: $CLARA_RT_TOKEN, then 'token:' "
                            "in ~/.clara-rt/config.yaml)")
    group.add_argument("--json", action="store_true",
                       help="print the server's record(s) as JSON instead of a table")

    def sub(verb: str, help_: str) -> Subs:
        p = verbs.add_parser(verb, help=help_, description=help_)
        return p.add_subparsers(dest="what", required=True, metavar="WHAT")

    def leaf(group_: Subs, name: str, help_: str, func: Verb,
             aliases: Iterable[str] = ()) -> argparse.ArgumentParser:
        p = group_.add_parser(name, parents=[conn], help=help_, description=help_,
                              aliases=list(aliases))
        p.set_defaults(func=_handled(func))
        return p

    create = sub("create", "register a pipeline or create a job on a clara-rt server")
    p = leaf(create, "pipeline", "register a Clara pipeline definition", _create_pipeline,
             aliases=["pipelines"])
    p.add_argument("-p", "--pipeline", dest="definition", type=Path, required=True,
                   metavar="X.yaml", help="the pipeline definition")
    p.add_argument("--replace", action="store_true",
                   help="replace a pipeline of the same name")
    p = leaf(create, "job", "upload a payload and create a job of a pipeline", _create_job,
             aliases=["jobs"])
    p.add_argument("-p", "--pipeline", required=True, metavar="PIPELINE",
                   help="pipeline id or name")
    p.add_argument("-n", "--name", metavar="NAME", help="job name (default: <pipeline>-<id>)")
    p.add_argument("-f", "--file", dest="files", action="append", type=Path, default=[],
                   metavar="PATH", help="file or folder to upload as the job's input "
                                        "(repeatable; all form one payload)")
    p.add_argument("--priority", choices=PRIORITY_NAMES, default="normal")
    p.add_argument("--var", action="append", default=[], metavar="K=V",
                   help="value of ${{K}} in the definition (repeatable)")
    p.add_argument("--timeout", type=float, metavar="S", help="stop the job after S seconds")
    p.add_argument("--start", action="store_true",
                   help="queue the job at once (else: clara-rt start job -j ID)")

    start = sub("start", "start (queue) a created job")
    p = leaf(start, "job", "queue a created job", _start_job, aliases=["jobs"])
    p.add_argument("-j", "--job", required=True, metavar="ID")

    cancel = sub("cancel", "cancel a job")
    p = leaf(cancel, "job", "cancel a pending or running job", _cancel_job, aliases=["jobs"])
    p.add_argument("-j", "--job", required=True, metavar="ID")

    wait = sub("wait", "wait for a job to stop")
    p = leaf(wait, "job", "wait until the job stops; exit 0 if it ended healthy, else 1",
             _wait_job, aliases=["jobs"])
    p.add_argument("-j", "--job", required=True, metavar="ID")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="give up after S seconds (exit 1; the job goes on)")

    listing = sub("list", "list jobs, pipelines or payloads")
    p = leaf(listing, "jobs", "list jobs, newest first", _list_jobs, aliases=["job"])
    p.add_argument("--state", choices=("pending", "running", "stopped"))
    p.add_argument("--status", choices=("healthy", "faulted", "canceled", "timed-out"))
    p.add_argument("--pipeline", metavar="P", help="pipeline id or name")
    p.add_argument("--priority", choices=PRIORITY_NAMES)
    p.add_argument("--limit", type=positive_int, metavar="N", help="at most N jobs")
    leaf(listing, "pipelines", "list registered pipelines", _list_pipelines,
         aliases=["pipeline"])
    leaf(listing, "payloads", "list uploaded payloads", _list_payloads, aliases=["payload"])

    describe = sub("describe", "show one job or pipeline in detail")
    p = leaf(describe, "job", "state, status, error, operators and history of a job",
             _describe_job, aliases=["jobs"])
    p.add_argument("-j", "--job", required=True, metavar="ID")
    p = leaf(describe, "pipeline", "operators and jobs of a pipeline", _describe_pipeline,
             aliases=["pipelines"])
    p.add_argument("-p", "--pipeline", required=True, metavar="REF",
                   help="pipeline id or name")

    p = verbs.add_parser("download", parents=[conn], help="download a job's results",
                         description="Download a job's results (all, or one file with --file) "
                                     "into DEST, keeping their folders.")
    p.add_argument("job", metavar="JOB", help="job id")
    p.add_argument("dest", nargs="?", type=Path, metavar="DEST",
                   help="folder to download into (default: ./<job id>)")
    p.add_argument("--file", metavar="PATH",
                   help="one result file, e.g. seg-writer/seg.dcm (saved as DEST/PATH)")
    p.set_defaults(func=_handled(_download))

    p = verbs.add_parser("logs", parents=[conn], help="print an operator's log of a job")
    p.add_argument("job", metavar="JOB", help="job id")
    p.add_argument("operator", metavar="OPERATOR", help="operator name")
    p.set_defaults(func=_handled(_logs))


# --- verbs ----------------------------------------------------------------------------------


def _create_pipeline(client: Client, args: argparse.Namespace) -> int:
    if not args.definition.is_file():
        return _usage(f"{args.definition} is not a file")
    record = client.create_pipeline(args.definition, replace=args.replace)
    if args.json:
        return _dump(record)
    print(f"PIPELINE_ID: {record['id']}\nPIPELINE_NAME: {record['name']}")
    return EXIT_OK


def _create_job(client: Client, args: argparse.Namespace) -> int:
    try:
        variables = parse_pairs(args.var, "--var")
    except ValueError as exc:
        return _usage(str(exc))
    missing = [str(p) for p in args.files if not p.exists()]
    if missing:
        return _usage(f"no such file or folder: {', '.join(missing)}")
    client.get_pipeline(args.pipeline)  # an unknown pipeline fails before a long upload
    payload: dict[str, Any] | None = None
    if args.files:
        count, size = _tally(args.files)
        _note(f"uploading {count} files ({_size(size)}) ...")
        t0 = time.perf_counter()
        payload = client.create_payload(args.files, name=args.name)
        took = time.perf_counter() - t0
        _note(f"uploaded {payload['files']} files ({_size(payload['size'])}) in {took:.2f} s "
              f"({_size(payload['size'] / max(took, 1e-9))}/s)")
    job = client.create_job(args.pipeline, [payload["id"]] if payload else [], name=args.name,
                            priority=args.priority, variables=variables, start=args.start,
                            timeout=args.timeout)
    if args.json:
        return _dump({"job": job, "payload": payload})
    print(f"JOB_ID: {job['id']}")
    if payload is not None:
        print(f"PAYLOAD_ID: {payload['id']}")
    if args.start:
        _note(f"job {job['id']} queued ({job['priority']})")
    else:
        _note(f"start it with: clara-rt start job -j {job['id']}")
    return EXIT_OK


def _start_job(client: Client, args: argparse.Namespace) -> int:
    return _show_state(client.start_job(args.job), args)


def _cancel_job(client: Client, args: argparse.Namespace) -> int:
    job = client.cancel_job(args.job)
    if job["state"] != "stopped" and not args.json:
        _note(f"cancel requested; job {job['id']} stops at its next operator boundary")
    return _show_state(job, args)


def _wait_job(client: Client, args: argparse.Namespace) -> int:
    job = client.wait_job(args.job, timeout=args.timeout)
    _show_state(job, args)
    return EXIT_OK if job["status"] == "healthy" else EXIT_FAILED


def _list_jobs(client: Client, args: argparse.Namespace) -> int:
    jobs = client.list_jobs(state=args.state, status=args.status, pipeline=args.pipeline,
                            priority=args.priority, limit=args.limit)
    if args.json:
        return _dump(jobs)
    now = time.time()
    _table(["JOB ID", "NAME", "PIPELINE", "PRIORITY", "STATE", "STATUS", "CREATED", "DURATION"],
           [[j["id"], j["name"], j["pipeline"], j["priority"], j["state"], j["status"],
             _when(j["created"]), _duration(j, now)] for j in jobs])
    return EXIT_OK


def _list_pipelines(client: Client, args: argparse.Namespace) -> int:
    pipelines = client.list_pipelines()
    if args.json:
        return _dump(pipelines)
    _table(["PIPELINE ID", "NAME", "API VERSION", "OPERATORS", "CREATED"],
           [[p["id"], p["name"], p["api_version"], str(len(p["operators"])),
             _when(p["created"])] for p in pipelines])
    return EXIT_OK


def _list_payloads(client: Client, args: argparse.Namespace) -> int:
    payloads = client.list_payloads()
    if args.json:
        return _dump(payloads)
    _table(["PAYLOAD ID", "NAME", "FILES", "SIZE", "CREATED"],
           [[p["id"], p["name"], str(p["files"]), _size(p["size"]), _when(p["created"])]
            for p in payloads])
    return EXIT_OK


def _describe_job(client: Client, args: argparse.Namespace) -> int:
    job = client.get_job(args.job)
    if args.json:
        return _dump(job)
    queued = " (queued)" if job["queued"] else ""
    _fields([("JOB_ID", job["id"]), ("NAME", job["name"]),
             ("PIPELINE", f"{job['pipeline']} ({job['pipeline_id']})"),
             ("PAYLOADS", ", ".join(job["payloads"]) or "-"), ("PRIORITY", job["priority"]),
             ("STATE", job["state"] + queued), ("STATUS", job["status"]),
             ("CREATED", _when(job["created"])), ("STARTED", _when(job["started"])),
             ("STOPPED", _when(job["stopped"])), ("DURATION", _duration(job, time.time())),
             ("TIMEOUT", "-" if job["timeout"] is None else f"{job['timeout']:g} s"),
             ("VARIABLES", " ".join(f"{k}={v}" for k, v in job["variables"].items()) or "-"),
             ("ERROR", job["error"] or "-")])
    print("\nOPERATORS")
    _table(["NAME", "STATE", "START", "DURATION"],
           [[op["name"], op["state"], _ms(op["start_ms"], plus=True), _ms(op["duration_ms"])]
            for op in job["operators"]], indent="  ")
    print("\nHISTORY")
    _table(["TIME", "STATE", "STATUS", "NOTE"],
           [[_when(h["time"]), h["state"], h["status"], h["note"] or ""]
            for h in job.get("history") or []], indent="  ")
    return EXIT_OK


def _describe_pipeline(client: Client, args: argparse.Namespace) -> int:
    record = client.get_pipeline(args.pipeline)
    if args.json:
        return _dump(record)
    jobs = record.get("jobs") or {}
    counts = ", ".join(f"{k} {v}" for k, v in jobs.items()
                       if k in ("pending", "running", "stopped")) or "-"
    _fields([("PIPELINE_ID", record["id"]), ("NAME", record["name"]),
             ("API_VERSION", record["api_version"]), ("CREATED", _when(record["created"])),
             ("UPDATED", _when(record["updated"])), ("JOBS", counts)])
    print("\nOPERATORS")
    _table(["NAME", "INPUTS FROM", "DESCRIPTION"],
           [[op["name"], ", ".join(op["inputs"]) or "(payload)", op["description"]]
            for op in record["operators"]], indent="  ")
    return EXIT_OK


def _download(client: Client, args: argparse.Namespace) -> int:
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
        return _dump(rows)
    for row in rows:
        print(row["local"])
    total = sum(int(f["size"]) for f in files)
    _note(f"downloaded {len(files)} files ({_size(total)}) of job {args.job} into {dest} "
          f"in {took:.2f} s")
    return EXIT_OK


def _logs(client: Client, args: argparse.Namespace) -> int:
    text = client.logs(args.job, args.operator)
    if args.json:
        return _dump({"job": args.job, "operator": args.operator, "log": text})
    if not text:
        _note(f"operator '{args.operator}' of job {args.job} has logged nothing (yet)")
    sys.stdout.write(text)
    return EXIT_OK


# --- helpers --------------------------------------------------------------------------------


def _handled(func: Verb) -> Callable[[argparse.Namespace], int]:
    """Make a verb function: connect, run ``func``, turn request failures into exit 1."""

    @functools.wraps(func)
    def verb(args: argparse.Namespace) -> int:
        from clara_rt.client import Client, ClientError

        try:
            client = Client.from_config(args.host, args.token)
        except ValueError as exc:
            return _usage(str(exc))
        try:
            return func(client, args)
        except ClientError as exc:
            print(f"clara-rt: error: {exc}", file=sys.stderr)
            if exc.status == 401:
                print(_TOKEN_HINT, file=sys.stderr)
            return EXIT_FAILED
        except (TimeoutError, OSError) as exc:
            print(f"clara-rt: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("clara-rt: interrupted", file=sys.stderr)
            return 130

    return verb


def _show_state(job: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        return _dump(job)
    state = job["state"] + (" (queued)" if job["queued"] else "")
    lines = [("JOB_ID", job["id"]), ("STATE", state), ("STATUS", job["status"])]
    if job["state"] == "stopped":
        lines.append(("DURATION", _duration(job, time.time())))
    if job["error"]:
        lines.append(("ERROR", job["error"]))
    for key, value in lines:
        print(f"{key}: {value}")
    return EXIT_OK


def _dump(data: Any) -> int:
    print(json.dumps(data, indent=2))
    return EXIT_OK


def _fields(pairs: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in pairs) + 1
    for key, value in pairs:
        print(f"{(key + ':').ljust(width)} {value}")


def _table(header: list[str], rows: list[list[str]], indent: str = "") -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _note(message: str) -> None:
    print(f"clara-rt: {message}", file=sys.stderr, flush=True)


def _usage(message: str) -> int:
    print(f"clara-rt: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _tally(paths: list[Path]) -> tuple[int, int]:
    """Files and bytes under ``paths`` (what an upload of them sends)."""
    count = size = 0
    for path in paths:
        for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if item.is_file():
                count += 1
                size += item.stat().st_size
    return count, size


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _duration(job: dict[str, Any], now: float) -> str:
    """Run time: started -> stopped (or now while running); ``-`` before it started."""
    if job["started"] is None:
        return "-"
    end = job["stopped"] if job["stopped"] is not None else now
    return _seconds(max(0.0, end - job["started"]))


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.2f}s" if s < 10 else f"{s:.1f}s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _ms(value: float | None, plus: bool = False) -> str:
    if value is None:
        return "-"
    if plus:
        return f"+{value / 1e3:.3f}s"
    return f"{value:.1f}ms" if value < 1000 else f"{value / 1e3:.2f}s"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"

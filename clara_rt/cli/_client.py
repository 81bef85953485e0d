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
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from clara_rt.cli import _client_verbs as verbs_
from clara_rt.cli._common import positive_int
from clara_rt.job import PRIORITY_NAMES

if TYPE_CHECKING:
    from typing import TypeAlias

    from clara_rt.cli._client_verbs import Verb

    Subs: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add"]


def add(verbs: Subs) -> None:
    """Declare ``create``, ``start``, ``list``, ``cancel``, ``describe``, ``wait``,
    ``download`` and ``logs``."""
    declare = _Declare(verbs, _connection())
    _add_create(declare)
    _add_job_verbs(declare)
    _add_list(declare)
    _add_describe(declare)
    _add_download_and_logs(declare)


class _Declare:
    """Declares verb groups (``create``, ``list``, ...) and their leaves, each taking the
    connection options and running its verb function through :func:`handled`."""

    def __init__(self, verbs: Subs, conn: argparse.ArgumentParser) -> None:
        self.verbs = verbs
        self.conn = conn

    def group(self, verb: str, help_: str) -> Subs:
        p = self.verbs.add_parser(verb, help=help_, description=help_)
        return p.add_subparsers(dest="what", required=True, metavar="WHAT")

    def leaf(self, group: Subs, name: str, help_: str, func: Verb,
             aliases: Iterable[str] = ()) -> argparse.ArgumentParser:
        p = group.add_parser(name, parents=[self.conn], help=help_, description=help_,
                             aliases=list(aliases))
        p.set_defaults(func=verbs_.handled(func))
        return p


def _connection() -> argparse.ArgumentParser:
    """The options every client verb takes: ``--host``, ``--token``, ``--json``."""
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
    return conn


def _add_create(declare: _Declare) -> None:
    create = declare.group("create", "register a pipeline or create a job on a clara-rt server")
    p = declare.leaf(create, "pipeline", "register a Clara pipeline definition",
                     verbs_.create_pipeline, aliases=["pipelines"])
    p.add_argument("-p", "--pipeline", dest="definition", type=Path, required=True,
                   metavar="X.yaml", help="the pipeline definition")
    p.add_argument("--replace", action="store_true",
                   help="replace a pipeline of the same name")
    p = declare.leaf(create, "job", "upload a payload and create a job of a pipeline",
                     verbs_.create_job, aliases=["jobs"])
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


def _add_job_verbs(declare: _Declare) -> None:
    """``start job``, ``cancel job``, ``wait job``."""
    start = declare.group("start", "start (queue) a created job")
    p = declare.leaf(start, "job", "queue a created job", verbs_.start_job, aliases=["jobs"])
    p.add_argument("-j", "--job", required=True, metavar="ID")

    cancel = declare.group("cancel", "cancel a job")
    p = declare.leaf(cancel, "job", "cancel a pending or running job", verbs_.cancel_job,
                     aliases=["jobs"])
    p.add_argument("-j", "--job", required=True, metavar="ID")

    wait = declare.group("wait", "wait for a job to stop")
    p = declare.leaf(wait, "job", "wait until the job stops; exit 0 if it ended healthy, else 1",
                     verbs_.wait_job, aliases=["jobs"])
    p.add_argument("-j", "--job", required=True, metavar="ID")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="give up after S seconds (exit 1; the job goes on)")


def _add_list(declare: _Declare) -> None:
    listing = declare.group("list", "list jobs, pipelines or payloads")
    p = declare.leaf(listing, "jobs", "list jobs, newest first", verbs_.list_jobs,
                     aliases=["job"])
    p.add_argument("--state", choices=("pending", "running", "stopped"))
    p.add_argument("--status", choices=("healthy", "faulted", "canceled", "timed-out"))
    p.add_argument("--pipeline", metavar="P", help="pipeline id or name")
    p.add_argument("--priority", choices=PRIORITY_NAMES)
    p.add_argument("--limit", type=positive_int, metavar="N", help="at most N jobs")
    declare.leaf(listing, "pipelines", "list registered pipelines", verbs_.list_pipelines,
                 aliases=["pipeline"])
    declare.leaf(listing, "payloads", "list uploaded payloads", verbs_.list_payloads,
                 aliases=["payload"])


def _add_describe(declare: _Declare) -> None:
    describe = declare.group("describe", "show one job or pipeline in detail")
    p = declare.leaf(describe, "job", "state, status, error, operators and history of a job",
                     verbs_.describe_job, aliases=["jobs"])
    p.add_argument("-j", "--job", required=True, metavar="ID")
    p = declare.leaf(describe, "pipeline", "operators and jobs of a pipeline",
                     verbs_.describe_pipeline, aliases=["pipelines"])
    p.add_argument("-p", "--pipeline", required=True, metavar="REF",
                   help="pipeline id or name")


def _add_download_and_logs(declare: _Declare) -> None:
    p = declare.verbs.add_parser(
        "download", parents=[declare.conn], help="download a job's results",
        description="Download a job's results (all, or one file with --file) into DEST, "
                    "keeping their folders.")
    p.add_argument("job", metavar="JOB", help="job id")
    p.add_argument("dest", nargs="?", type=Path, metavar="DEST",
                   help="folder to download into (default: ./<job id>)")
    p.add_argument("--file", metavar="PATH",
                   help="one result file, e.g. seg-writer/seg.dcm (saved as DEST/PATH)")
    p.set_defaults(func=verbs_.handled(verbs_.download))

    p = declare.verbs.add_parser("logs", parents=[declare.conn],
                                 help="print an operator's log of a job")
    p.add_argument("job", metavar="JOB", help="job id")
    p.add_argument("operator", metavar="OPERATOR", help="operator name")
    p.set_defaults(func=verbs_.handled(verbs_.logs))

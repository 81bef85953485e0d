"""``clara-rt validate | graph | run`` on Clara pipeline definitions.

* ``validate PIPELINE.yaml`` checks the definition (and, when every operator can run, builds the
  pipeline so that port types are checked too); prints ``OK`` or ``path:line:col: error: ...``.
* ``graph PIPELINE.yaml [--format dot|mermaid] [--png FILE]`` draws it.
* ``run PIPELINE.yaml --input DIR --output DIR`` runs one job in this process: a progress line per
  operator on a terminal, then a table of operator timings and where the outputs went (or a JSON
  report with ``--json``). An output folder that already holds files is refused unless
  ``--overwrite``; the job's scratch folder lives inside the output folder and is removed after a
  successful run. ``--trace FILE`` writes the job's timeline as Chrome trace JSON (open it in
  Perfetto). A failed job's error names the file and line in operator code; its full traceback
  and the job's log records are kept in ``<workspace>/job.log`` (``--verbose`` prints it).

Operator code: ``run`` and ``validate`` import ``clara-rt: {operator: "module:Class"}`` modules
from installed packages and then from the definition's own folder (a ``myops.py`` beside
``pipeline.yaml`` needs no PYTHONPATH; it never shadows an installed module of the same name).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from clara_rt.cli._common import parse_pairs, positive_int
from clara_rt.cli._report import captured_log, print_report, watch, write_job_log
from clara_rt.errors import ClaraRTError
from clara_rt.job import PRIORITY_NAMES
from clara_rt.runner.outputs import collect_outputs

__all__ = ["add"]

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``validate``, ``graph`` and ``run``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    common.add_argument("--var", action="append", default=[], metavar="K=V",
                        help="value of ${{K}} in the definition (repeatable)")
    common.add_argument("--strict", action="store_true", help="unknown keys are errors")
    p = verbs.add_parser("validate", parents=[common], help="check a pipeline definition")
    p.set_defaults(func=_cmd_validate)
    p = verbs.add_parser("graph", parents=[common], help="draw a pipeline definition")
    p.add_argument("--format", choices=("dot", "mermaid"), default="dot")
    p.add_argument("--png", type=Path, metavar="FILE", help="render to PNG with graphviz")
    p.set_defaults(func=_cmd_graph)
    p = verbs.add_parser("run", parents=[common], help="run one job of a pipeline definition")
    p.add_argument("--input", type=Path, required=True, metavar="DIR", help="the job's input")
    p.add_argument("--output", type=Path, required=True, metavar="DIR", help="where results go")
    p.add_argument("--priority", choices=PRIORITY_NAMES, default="normal")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"),
                   help="where the pipeline's arrays live: cpu, cuda, or auto (the GPU when "
                        "CuPy finds one); default the pipeline's clara-rt: {device: ...}, else cpu")
    p.add_argument("--job-id", metavar="ID",
                   help="the job's id (${{JOB_ID}}, NVIDIA_CLARA_JOBID); default: a fresh one")
    p.add_argument("--job-name", metavar="NAME",
                   help="the job's name (NVIDIA_CLARA_JOBNAME); default: PIPELINE-ID")
    p.add_argument("--workers", type=positive_int, metavar="N", help="worker threads (cores)")
    p.add_argument("--service", action="append", default=[], metavar="NAME=URL",
                   help="URL of a running server for a service of the definition (triton=URL: "
                        "the server of every operator's models:)")
    p.add_argument("--timeout", type=float, metavar="S", help="stop the job after S seconds")
    p.add_argument("--inference", choices=("remote", "local"), default="remote",
                   help="local: serve Triton models from ONNX files in --models (edge use)")
    p.add_argument("--models", type=Path, metavar="DIR",
                   help="with --inference local: DIR/NAME.onnx or DIR/NAME/<version>/model.onnx")
    p.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    p.add_argument("--overwrite", action="store_true",
                   help="allow writing into an output folder that already holds files")
    p.add_argument("--keep-workspace", action="store_true",
                   help="keep the job's scratch folder (kept anyway when the job fails)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print a failed operator's full traceback (it is kept in the "
                        "workspace's job.log either way)")
    p.add_argument("--trace", type=Path, metavar="FILE",
                   help="write the job's timeline as Chrome trace JSON (open it in Perfetto, "
                        "ui.perfetto.dev)")
    p.set_defaults(func=_cmd_run)


# --- verbs ----------------------------------------------------------------------------------


def _cmd_validate(args: argparse.Namespace) -> int:
    from clara_rt.definition.build import build_pipeline, unresolved

    try:
        definition = _parse(args, template=True)
        missing = unresolved(definition)
        if not missing:
            _import_beside(args.pipeline)
            build_pipeline(definition, require_services=False)
    except (ClaraRTError, ValueError) as exc:
        return _fail(exc)
    for op in missing:
        print(f"{op.loc}: note: operator '{op.name}' has no clara-rt key, image mapping or "
              "command; 'run' needs one", file=sys.stderr)
    edges = sum(1 for op in definition.operators for e in op.inputs if e.from_)
    print(f"OK: {definition.path}: pipeline '{definition.name}' (api-version "
          f"{definition.api_version}): {len(definition.operators)} operators, {edges} "
          f"connections, {len(definition.warnings)} warnings")
    return EXIT_OK


def _cmd_graph(args: argparse.Namespace) -> int:
    from clara_rt.definition.graph import to_dot, to_mermaid

    try:
        definition = _parse(args, template=True)
    except (ClaraRTError, ValueError) as exc:
        return _fail(exc)
    if args.png is None:
        sys.stdout.write(to_mermaid(definition) if args.format == "mermaid"
                         else to_dot(definition))
        return EXIT_OK
    dot = shutil.which("dot")
    if dot is None:
        print("clara-rt: error: --png needs graphviz's 'dot' (apt-get install graphviz); "
              "without --png the DOT text is printed", file=sys.stderr)
        return EXIT_USAGE
    proc = subprocess.run([dot, "-Tpng", "-o", str(args.png)], input=to_dot(definition),
                          text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        print(f"clara-rt: error: dot failed: {proc.stderr.strip()}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {args.png}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from clara_rt.definition.build import build_pipeline

    try:
        definition = _parse(args)
        services = parse_pairs(args.service, "--service")
        _check_folders(args)
        _local_inference(args)
        _import_beside(args.pipeline)
        # Local inference serves the models from files: no server URL is needed.
        built = build_pipeline(definition, services=services,
                               require_services=args.inference == "remote", device=args.device)
    except (ClaraRTError, ValueError) as exc:
        return _fail(exc)
    return _run_job(args, built)


def _run_job(args: argparse.Namespace, built: Any) -> int:
    import tempfile

    from clara_rt import Runtime

    args.output.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=".clara-rt-work-", dir=args.output))
    with Runtime(workers=args.workers) as rt, captured_log() as records:
        try:
            job = rt.submit(built.pipeline, built.payload_for(args.input.resolve()),
                            priority=args.priority, timeout=args.timeout, workspace=workspace,
                            job_id=args.job_id, name=args.job_name)
        except ClaraRTError as exc:  # an operator's start() failed: no job was created
            shutil.rmtree(workspace, ignore_errors=True)
            print(f"clara-rt: error: {exc}", file=sys.stderr)
            return EXIT_JOB_FAILED
        watch(job, enabled=sys.stderr.isatty() and not args.json)
        job.wait()
    if args.trace is not None:
        _write_trace(job, args.trace)
    outputs: dict[str, Path] = {}
    if job.state.value == "succeeded":
        outputs = collect_outputs(job.result(), args.output, workspace,
                                  overwrite=args.overwrite)
        if not args.keep_workspace:
            shutil.rmtree(workspace, ignore_errors=True)
    if workspace.exists():
        write_job_log(workspace, job, records)
    print_report(job, built, outputs, workspace if workspace.exists() else None,
                 as_json=args.json, verbose=args.verbose)
    return EXIT_OK if job.state.value == "succeeded" else EXIT_JOB_FAILED


# --- helpers --------------------------------------------------------------------------------


def _parse(args: argparse.Namespace, *, template: bool = False) -> Any:
    from clara_rt.definition.schema import parse_definition

    if not args.pipeline.is_file():
        raise ValueError(f"pipeline definition {args.pipeline} does not exist")
    definition = parse_definition(args.pipeline, variables=parse_pairs(args.var, "--var"),
                                  strict=args.strict, allow_undefined=template)
    for warning in definition.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return definition


def _import_beside(pipeline: Path) -> None:
    """Let ``clara-rt:`` keys name modules in the definition's folder (after installed ones)."""
    folder = str(pipeline.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)


def _write_trace(job: Any, path: Path) -> None:
    """Write the job's operators (on worker lanes) and its queue and run times as a trace."""
    from clara_rt.monitor.trace import Span, chrome_trace, dumps, spans_from_states

    origin = job.submitted_ns
    spans = spans_from_states(job.operator_states(), origin)
    lane: list[Span] = []
    if job.started_ns is not None:
        lane.append(Span("queued", 0, job.started_ns - origin, "waited"))
        if job.finished_ns is not None:
            lane.append(Span("run", job.started_ns - origin, job.finished_ns - origin,
                             job.state.value))
    trace = chrome_trace(spans, title=f"job {job.id} ({job.pipeline})", job=lane,
                         metadata={"job": job.id, "pipeline": job.pipeline,
                                   "state": job.state.value})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(trace) + "\n", encoding="utf-8")
    if sys.stderr.isatty():
        print(f"trace: {path} (open it in https://ui.perfetto.dev)", file=sys.stderr)


def _local_inference(args: argparse.Namespace) -> None:
    if args.inference == "remote":
        if args.models is not None:
            raise ValueError("--models is only used with --inference local")
        return
    if args.models is None or not args.models.is_dir():
        raise ValueError("--inference local needs --models DIR, a folder of ONNX models named "
                         "after the Triton models (NAME.onnx or NAME/<version>/model.onnx)")
    from clara_rt.operators.inference import set_local_models

    set_local_models(args.models)


def _check_folders(args: argparse.Namespace) -> None:
    if not args.input.is_dir():
        raise ValueError(f"input folder {args.input} does not exist or is not a folder")
    if args.output.exists():
        if not args.output.is_dir():
            raise ValueError(f"output {args.output} exists and is not a folder")
        held = [p.name for p in args.output.iterdir()]
        if held and not args.overwrite:
            raise ValueError(f"output folder {args.output} already holds {len(held)} entries "
                             f"({', '.join(sorted(held)[:3])}...); pass --overwrite to write "
                             "into it anyway, or choose an empty folder")


def _fail(exc: BaseException) -> int:
    print(f"clara-rt: error: {exc}", file=sys.stderr)
    return EXIT_USAGE

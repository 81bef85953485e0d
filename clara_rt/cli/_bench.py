"""``clara-rt bench SCENARIO|all [--json] [--repeat N] [--jobs N] [--quick]``.

Runs benchmark scenarios from :mod:`clara_rt.bench`; each prints clara-rt's figures next to its
baseline's and their ratio. Results go to stdout, progress to stderr. ``--quick`` runs small
sizes; ``all --quick`` is the regression guard: it runs the guarded scenarios small, prints their
ratios next to ``benchmarks/baseline_ratios.json`` and exits 1 only when one is worse than half
the recorded ratio (never on absolute times).

``bench load`` (Clara's ``cpload``) drives ``clara-rt serve``: ``--host URL [--token T]`` (or,
without ``--host``, a server it starts on a temporary data directory: ``--local-server``),
``--definition X.yaml`` or ``--pipeline NAME``, ``--input DIR``, ``-n N`` jobs with priorities
in the ``--mix`` proportions, ``--delay S`` between submissions, ``--concurrency C`` client
threads; it reports latency and queue wait per priority and throughput, next to the same jobs on
an in-process Runtime (``--no-baseline`` skips that). It does not read ``$CLARA_RT_HOST`` or
``~/.clara-rt/config.yaml``, so it never loads a server by accident.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from clara_rt.cli._common import positive_int, progress

_SCENARIO_HELP = ("hops: per-hop latency; throughput: jobs/s; core: C++ dispatches/s; "
                  "dispatch: per hop from 1- and 21-stage chains, 1-op submit->result "
                  "and jobs/s vs a threads+queue.Queue chain; "
                  "construct: build+validate time; rss: idle memory; kernels: numba imaging "
                  "kernels vs NumPy; dicom: load a 300-slice CT series vs dcm2niix and a "
                  "pydicom loop; inference: InferenceOp(torch) vs the scripted model and "
                  "torch vs ONNX Runtime on a 96^3 UNet, Triton backend vs tritonclient "
                  "(CLARA_RT_TRITON_URL); startup: process start to first operator of "
                  "a YAML pipeline (clara-rt run, cold) and in-process (warm) vs python "
                  "and numpy start; priority: immediate/high latency behind 1,000 queued "
                  "ct-lung-seg jobs and shares per class vs the 4:2:1 weights; branches: "
                  "multi-AI ROI branches on Triton, 4 workers vs 1; e2e: ct-lung-seg to a "
                  "DICOM SEG, cold and warm, vs MONAI Deploy App SDK 0.5.1 (its venv is "
                  "created on first use, ~1 GB); load: N jobs of mixed priority through "
                  "clara-rt serve vs an in-process Runtime (options below); cluster: "
                  "ct-lung-seg jobs/s on 1 vs 2 local Ray nodes and Ray's per-job "
                  "overhead vs the in-process runtime (needs clara-rt[cluster]); gpu: the "
                  "CuPy path (hops CuPy vs NumPy, 4-op chain vs direct calls, 1 vs 4 "
                  "workers, ct-lung-seg GPU vs CPU; exit 2 without a GPU); all: every "
                  "one (with --quick: the regression guard)")


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from clara_rt.bench import SCENARIOS

    p = verbs.add_parser(
        "bench", help="measure clara-rt against a baseline",
        description="Run benchmark scenarios; each measures clara-rt and its baseline in the "
                    "same run and prints their ratio (above 1: clara-rt better).")
    p.add_argument("scenario", choices=[*SCENARIOS, "all"], help=_SCENARIO_HELP)
    p.add_argument("--json", action="store_true",
                   help="print one JSON record per scenario on stdout (tables go to stderr)")
    p.add_argument("--repeat", type=positive_int, metavar="N",
                   help="rounds (or builds / processes) per system; default per scenario")
    p.add_argument("-n", "--jobs", type=positive_int, metavar="N",
                   help="jobs per system for hops, throughput, core, load and cluster; queued "
                        "normal jobs for priority (others ignore it)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes; with 'all': run hops, throughput, core, construct and "
                        "dicom small (< 60 s) and exit 1 when a ratio is worse than half the "
                        "one in benchmarks/baseline_ratios.json")
    p.add_argument("--baseline", metavar="FILE",
                   help="recorded ratios for 'all --quick' (default: "
                        "benchmarks/baseline_ratios.json of this checkout)")
    _add_load_options(p)
    p.set_defaults(func=_cmd_bench)


def _add_load_options(p: argparse.ArgumentParser) -> None:
    """The options of ``clara-rt bench load`` (their own group in ``--help``)."""
    g = p.add_argument_group("load (clara-rt bench load)")
    g.add_argument("--host", metavar="URL", help="the server to load (default: --local-server)")
    g.add_argument("--token", metavar="T", help="its bearer token (default: $CLARA_RT_TOKEN)")
    g.add_argument("--local-server", action="store_true",
                   help="start clara-rt serve on a temporary data directory for the run "
                        "(the default without --host)")
    what = g.add_mutually_exclusive_group()
    what.add_argument("--pipeline", metavar="NAME", help="a pipeline registered on --host")
    what.add_argument("--definition", type=Path, metavar="X.yaml",
                      help="pipeline to register (replacing one of the same name); default "
                           "without --pipeline: examples/ct-lung-seg/pipeline.yaml")
    g.add_argument("--input", type=Path, metavar="DIR",
                   help="the jobs' input (default with ct-lung-seg: a chest CT phantom)")
    g.add_argument("--mix", type=_mix, metavar="P=W,...",
                   help="priority weights (default immediate=1,high=2,normal=5,low=2)")
    g.add_argument("--delay", type=float, metavar="S", help="seconds between submissions")
    g.add_argument("--concurrency", type=positive_int, metavar="C",
                   help="client threads submitting (default 4)")
    g.add_argument("--payload-per-job", action="store_true",
                   help="upload the input for every job (default: once)")
    g.add_argument("--no-baseline", action="store_true",
                   help="skip the in-process Runtime run")
    g.add_argument("--workers", type=positive_int, metavar="N",
                   help="workers of the local server and the baseline Runtime (default 2; "
                        "with --host give the server's)")
    g.add_argument("--seed", type=int, metavar="S", help="seed of the priority sequence")
    g.add_argument("--timeout", type=float, metavar="S",
                   help="seconds to wait for all jobs (default 600)")


_LOAD_OPTIONS = {"host": "host", "token": "token", "pipeline": "pipeline",
                 "definition": "definition", "input": "input_dir", "mix": "mix",
                 "delay": "delay", "concurrency": "concurrency", "workers": "workers",
                 "seed": "seed", "timeout": "timeout"}
_LOAD_FLAGS = ("local_server", "payload_per_job", "no_baseline")


def _mix(text: str) -> dict[str, float]:
    from clara_rt.bench import parse_mix

    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load_options(args: argparse.Namespace) -> dict[str, Any] | str:
    """The ``load`` keyword arguments, or why they are wrong."""
    given = [k for k in _LOAD_OPTIONS if getattr(args, k) is not None]
    given += [k for k in _LOAD_FLAGS if getattr(args, k)]
    if args.scenario != "load":
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            return f"{flags}: only 'bench load' takes these options"
        return {}
    if args.host and args.local_server:
        return "--host and --local-server exclude each other"
    options: dict[str, Any] = {name: getattr(args, k) for k, name in _LOAD_OPTIONS.items()
                               if getattr(args, k) is not None}
    if "token" not in options and args.host and os.environ.get("CLARA_RT_TOKEN"):
        options["token"] = os.environ["CLARA_RT_TOKEN"]
    options["payload_per_job"] = args.payload_per_job
    options["baseline"] = not args.no_baseline
    return options


def _cmd_bench(args: argparse.Namespace) -> int:
    from clara_rt import bench
    from clara_rt.client import ClientError
    from clara_rt.errors import ClaraRTError, DeviceUnavailableError

    options = _load_options(args)
    if isinstance(options, str):
        print(f"clara-rt: error: {options}", file=sys.stderr)
        return 2
    if args.quick and args.scenario == "all":
        return _quick_guard(args)
    names = list(bench.SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        progress(f"bench {name}: running")
        t0 = time.perf_counter()
        try:
            record = bench.run_scenario(name, jobs=args.jobs, repeat=args.repeat,
                                        quick=args.quick, progress=progress,
                                        options=options if name == "load" else None)
        except DeviceUnavailableError as exc:  # bench gpu on a machine without one
            if args.scenario == "all":
                progress(f"bench {name}: skipped: {exc}")
                continue
            print(f"clara-rt: error: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            if name != "load":
                raise
            print(f"clara-rt: error: {exc}", file=sys.stderr)
            return 2
        except (ClientError, ClaraRTError, OSError, TimeoutError, RuntimeError) as exc:
            # a request failed, the local server or the Ray cluster did not start...
            if name not in ("load", "cluster"):
                raise
            print(f"clara-rt: error: {exc}", file=sys.stderr)
            return 1
        progress(f"bench {name}: done in {time.perf_counter() - t0:.1f} s")
        table = bench.format_table(record)
        if args.json:
            print(table, file=sys.stderr)
            print(json.dumps(record.to_dict()), flush=True)
        else:
            print(table + "\n", flush=True)
    return 0


def _quick_guard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clara_rt import bench

    t0 = time.perf_counter()
    rows, records = bench.quick_guard(Path(args.baseline) if args.baseline else None,
                                      progress=progress)
    out = sys.stderr if args.json else sys.stdout
    for record in records:
        print(bench.format_table(record) + "\n", file=out, flush=True)
        if args.json:
            print(json.dumps(record.to_dict()), flush=True)
    print(bench.format_guard(rows), file=out, flush=True)
    bad = [r for r in rows if r.verdict == "REGRESSION"]
    progress(f"bench all --quick: {len(rows) - len(bad)}/{len(rows)} ratios ok, "
             f"{len(bad)} regressions, {time.perf_counter() - t0:.0f} s")
    return 1 if bad else 0

"""``clara-rt bench SCENARIO|all [--json] [--repeat N] [--jobs N] [--quick]``.

Runs benchmark scenarios from :mod:`clara_rt.bench`; each prints clara-rt's figures next to its
baseline's and their ratio. Results go to stdout, progress to stderr. ``--quick`` runs small
sizes; ``all --quick`` is the regression guard: it runs the guarded scenarios small, prints their
ratios next to ``benchmarks/baseline_ratios.json`` and exits 1 only when one is worse than half
the recorded ratio (never on absolute times).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from clara_rt.cli._common import positive_int, progress


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from clara_rt.bench import SCENARIOS

    p = verbs.add_parser(
        "bench", help="measure clara-rt against a baseline",
        description="Run benchmark scenarios; each measures clara-rt and its baseline in the "
                    "same run and prints their ratio (above 1: clara-rt better).")
    p.add_argument("scenario", choices=[*SCENARIOS, "all"],
                   help="hops: per-hop latency; throughput: jobs/s; core: C++ dispatches/s; "
                        "construct: build+validate time; rss: idle memory; kernels: numba imaging "
                        "kernels vs NumPy; dicom: load a 300-slice CT series vs dcm2niix and a "
                        "pydicom loop; inference: Triton backend vs bare tritonclient "
                        "(CLARA_RT_TRITON_URL); startup: process start to first operator of "
                        "a YAML pipeline (clara-rt run, cold) and in-process (warm) vs python "
                        "and numpy start; priority: immediate/high latency behind 1,000 queued "
                        "ct-lung-seg jobs and shares per class vs the 4:2:1 weights; branches: "
                        "multi-AI ROI branches on Triton, 4 workers vs 1; e2e: ct-lung-seg to a "
                        "DICOM SEG, cold and warm, vs MONAI Deploy App SDK 0.5.1 (its venv is "
                        "created on first use, ~1 GB); all: every "
                        "one (with --quick: the regression guard)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON record per scenario on stdout (tables go to stderr)")
    p.add_argument("--repeat", type=positive_int, metavar="N",
                   help="rounds (or builds / processes) per system; default per scenario")
    p.add_argument("--jobs", type=positive_int, metavar="N",
                   help="jobs per system for hops, throughput and core; queued normal jobs "
                        "for priority (others ignore it)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes; with 'all': run hops, throughput, core, construct and "
                        "dicom small (< 60 s) and exit 1 when a ratio is worse than half the "
                        "one in benchmarks/baseline_ratios.json")
    p.add_argument("--baseline", metavar="FILE",
                   help="recorded ratios for 'all --quick' (default: "
                        "benchmarks/baseline_ratios.json of this checkout)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from clara_rt import bench

    if args.quick and args.scenario == "all":
        return _quick_guard(args)
    names = list(bench.SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        progress(f"bench {name}: running")
        t0 = time.perf_counter()
        record = bench.run_scenario(name, jobs=args.jobs, repeat=args.repeat,
                                    quick=args.quick, progress=progress)
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

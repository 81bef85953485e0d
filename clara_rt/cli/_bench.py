"""``clara-rt bench {hops,throughput,core,construct,rss,all} [--json] [--repeat N] [--jobs N]``.

Runs benchmark scenarios from :mod:`clara_rt.bench`; each prints clara-rt's figures next to its
baseline's and their ratio. Results go to stdout, progress to stderr.
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
                        "(CLARA_RT_TRITON_URL); all: every one")
    p.add_argument("--json", action="store_true",
                   help="print one JSON record per scenario on stdout (tables go to stderr)")
    p.add_argument("--repeat", type=positive_int, metavar="N",
                   help="rounds (or builds / processes) per system; default per scenario")
    p.add_argument("--jobs", type=positive_int, metavar="N",
                   help="jobs per system for hops, throughput and core (others ignore it)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from clara_rt import bench

    names = list(bench.SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        progress(f"bench {name}: running")
        t0 = time.perf_counter()
        record = bench.run_scenario(name, jobs=args.jobs, repeat=args.repeat,
                                    progress=progress)
        progress(f"bench {name}: done in {time.perf_counter() - t0:.1f} s")
        table = bench.format_table(record)
        if args.json:
            print(table, file=sys.stderr)
            print(json.dumps(record.to_dict()), flush=True)
        else:
            print(table + "\n", flush=True)
    return 0

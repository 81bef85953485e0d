"""The ``clara-rt`` command line: one subcommand per verb, one small function per verb.

``clara-rt bench {hops,throughput,core,construct,rss,all} [--json] [--repeat N] [--jobs N]``
runs benchmark scenarios from :mod:`clara_rt.bench`; each prints clara-rt's figures next to its
baseline's and their ratio. Results go to stdout, progress to stderr.

To add a verb: write ``_add_<verb>(subparsers)`` that declares its parser and sets
``func=_cmd_<verb>``, and call it from :func:`build_parser`. A verb function takes the parsed
arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``clara-rt`` command line and return its exit status.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when a verb fails, 2 on a usage error (argparse exits with 2 itself).
    """
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every verb."""
    from clara_rt import __version__

    parser = argparse.ArgumentParser(
        prog="clara-rt", description="In-process pipeline runtime for medical-imaging AI.")
    parser.add_argument("--version", action="version", version=f"clara-rt {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_bench(verbs)
    return parser


# --- bench --------------------------------------------------------------------------------

def _add_bench(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from clara_rt.bench import SCENARIOS

    p = verbs.add_parser(
        "bench", help="measure clara-rt against a baseline",
        description="Run benchmark scenarios; each measures clara-rt and its baseline in the "
                    "same run and prints their ratio (above 1: clara-rt better).")
    p.add_argument("scenario", choices=[*SCENARIOS, "all"],
                   help="hops: per-hop latency; throughput: jobs/s; core: C++ dispatches/s; "
                        "construct: build+validate time; rss: idle memory; all: every one")
    p.add_argument("--json", action="store_true",
                   help="print one JSON record per scenario on stdout (tables go to stderr)")
    p.add_argument("--repeat", type=_positive_int, metavar="N",
                   help="rounds (or builds / processes) per system; default per scenario")
    p.add_argument("--jobs", type=_positive_int, metavar="N",
                   help="jobs per system for hops, throughput and core (others ignore it)")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from clara_rt import bench

    names = list(bench.SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        _progress(f"bench {name}: running")
        t0 = time.perf_counter()
        record = bench.run_scenario(name, jobs=args.jobs, repeat=args.repeat,
                                    progress=_progress)
        _progress(f"bench {name}: done in {time.perf_counter() - t0:.1f} s")
        table = bench.format_table(record)
        if args.json:
            print(table, file=sys.stderr)
            print(json.dumps(record.to_dict()), flush=True)
        else:
            print(table + "\n", flush=True)
    return 0


# --- helpers ------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"clara-rt: {message}", file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())

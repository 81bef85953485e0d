"""Run every clara-rt benchmark scenario at full size; print the tables, save the records.

``make bench`` runs this. Each scenario measures clara-rt and its baseline in the same run
(see ``clara_rt/bench/``); the records (a JSON list) go to
``benchmarks/results/<YYYY-MM-DD>-<host>.json``. About 1-3 minutes on a 2-core machine.

Usage: ``.venv/bin/python benchmarks/run_all.py [--quick] [--out FILE]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from clara_rt import bench  # noqa: E402

# Full sizes; every scenario alternates its systems within each round.
FULL: dict[str, dict[str, Any]] = {
    "hops": {"jobs": 3000, "repeat": 3},
    "throughput": {"jobs": 100_000, "repeat": 3},
    "core": {"jobs": 200_000, "repeat": 3},
    "construct": {"repeat": 30},
    "rss": {"repeat": 3},
    "kernels": {"repeat": 3},
    "dicom": {"repeat": 3},
    "startup": {"repeat": 5},
    "priority": {},
    "load": {"jobs": 40},
    "lungseg": {"repeat": 2},  # ~2 min: the sequential baseline alone takes 20-40 s
}
QUICK: dict[str, dict[str, Any]] = {
    "hops": {"jobs": 300, "repeat": 1},
    "throughput": {"jobs": 5000, "dask_jobs": 1000, "repeat": 1},
    "core": {"jobs": 20_000, "repeat": 1},
    "construct": {"repeat": 5},
    "rss": {"repeat": 1},
}


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, print each table, write the JSON list; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: results/...)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    records = []
    t_all = time.perf_counter()
    for name, kwargs in sizes.items():
        t0 = time.perf_counter()
        record = bench.SCENARIOS[name](**kwargs, progress=_progress)
        _progress(f"{name}: done in {time.perf_counter() - t0:.1f} s")
        print(bench.format_table(record) + "\n", flush=True)
        records.append(record.to_dict())
    out = args.out or _default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1) + "\n")
    _progress(f"all scenarios in {time.perf_counter() - t_all:.0f} s; records in {out}")
    missed = [t for r in records for t in r["targets"] if not t["passed"]]
    for t in missed:
        _progress(f"MISS: {t['name']}: {t['value']:.3g} {t['unit']} (target {t['limit']:g})")
    return 0


def _default_out() -> Path:
    day = datetime.date.today().isoformat()
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname())
    return ROOT / "benchmarks" / "results" / f"{day}-{host}.json"


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

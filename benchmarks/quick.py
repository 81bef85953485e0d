"""The quick regression guard: ``clara-rt bench all --quick`` from a checkout.

Runs hops, throughput, core, construct and dicom at small sizes (about 10-30 s on 2 cores),
prints each table and then every guarded ratio next to the one recorded in
``benchmarks/baseline_ratios.json`` (from the latest full ``make bench``). Exits 1 only when a
ratio is worse than half the recorded one (a 2x regression); absolute times are never checked.

Usage: ``.venv/bin/python benchmarks/quick.py [--json] [--baseline FILE]``
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from clara_rt.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "all", "--quick", *sys.argv[1:]]))

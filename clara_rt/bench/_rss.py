"""The ``rss`` scenario: resident memory of a fresh process with clara-rt loaded."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from clara_rt.bench._record import BenchRecord, Progress, _quiet, _ratio, machine_info
from clara_rt.bench._workload import checkout_env

_RSS_SNIPPETS = {
    "numpy (baseline)": "import numpy",
    "clara-rt import": "import clara_rt",
    "clara-rt Runtime()": "import clara_rt\nrt = clara_rt.Runtime()",
}
_RSS_PRINT = ("\nimport re\nwith open('/proc/self/status') as f:\n"
              "    print(re.search(r'VmRSS:\\s+(\\d+)', f.read()).group(1))\n")


def idle_rss(*, repeat: int = 3, progress: Progress | None = None) -> BenchRecord:
    """Measure resident memory (VmRSS) of a fresh interpreter after each import / setup.

    Runs ``sys.executable -c`` with: ``import numpy`` (baseline), ``import clara_rt``, and
    ``import clara_rt; rt = Runtime()`` (one worker per CPU, idle). Median of ``repeat`` runs.
    Linux only (reads ``/proc/self/status``).

    Args:
        repeat: Processes per snippet.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    figures: dict[str, dict[str, float]] = {}
    say(f"rss: {len(_RSS_SNIPPETS)} snippets x {repeat} processes")
    for name, snippet in _RSS_SNIPPETS.items():
        tail = "\nrt.close()\n" if "rt =" in snippet else ""
        kb = [_subprocess_int(snippet + _RSS_PRINT + tail) for _ in range(repeat)]
        figures[name] = {"rss_mb": float(np.median(kb)) / 1024}
    base = figures["numpy (baseline)"]["rss_mb"]
    for fig in figures.values():
        fig["delta_mb"] = fig["rss_mb"] - base
    rt_mb = figures["clara-rt Runtime()"]["rss_mb"]
    return BenchRecord(
        scenario="rss",
        title=f"idle VmRSS of a fresh process, median of {repeat}",
        machine=machine_info(),
        params={"repeat": repeat},
        figures=figures,
        ratios={"numpy / clara-rt Runtime() rss_mb": _ratio(base, rt_mb)},
        notes="delta_mb is against the numpy-only process; clara-rt imports numpy itself.")


# --- private ------------------------------------------------------------------------------


def _subprocess_int(code: str) -> int:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=checkout_env(), timeout=120).stdout
    match = re.search(r"(\d+)\s*$", out)
    if match is None:
        raise RuntimeError(f"no number in the output of the rss probe: {out!r}")
    return int(match.group(1))

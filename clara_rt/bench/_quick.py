"""The ``--quick`` regression guard: small runs of the main scenarios, ratios vs recorded ones.

:data:`QUICK` holds the small sizes (the whole guard runs in well under 60 s on 2 cores);
:func:`quick_guard` runs them, compares each guarded ratio with the one recorded from the latest
full run (``benchmarks/baseline_ratios.json``) and flags a **regression** only when a ratio is
worse than half the recorded one (2x). Absolute times are never checked: on a shared machine
they drift by 2x, ratios measured in one run do not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clara_rt.bench._record import BenchRecord, Progress, _quiet

__all__ = ["QUICK", "GuardRow", "default_baseline", "format_guard", "quick_guard"]

QUICK: dict[str, dict[str, Any]] = {
    "hops": {"jobs": 1000, "repeat": 2},
    "throughput": {"jobs": 20_000, "dask_jobs": 2000, "repeat": 2},
    "core": {"jobs": 100_000, "repeat": 2},
    "dispatch": {"jobs": 300, "throughput_jobs": 10_000, "repeat": 2},
    "construct": {"repeat": 10},
    "dicom": {"slices": 100, "repeat": 2},
    "startup": {"repeat": 2, "warm_repeat": 5},
    "priority": {"backlog": 200, "probes": 3, "window": 3.0},
    "e2e": {"repeat": 1},
    "load": {"jobs": 12, "shape": (16, 64, 64)},
    "lungseg": {"shape": (16, 512, 512), "repeat": 2, "threads": (1, 2), "rss": False},
    "gpu": {"hop_jobs": 500, "chain_shape": (64, 256, 256), "chain_jobs": 10, "concurrent": 8,
            "lung_shape": (64, 128, 128)},
}
"""Small sizes per scenario for ``--quick``."""

GUARDED = ("hops", "throughput", "core", "dispatch", "construct", "dicom", "lungseg",
           "startup")
"""Scenarios whose ratios the guard checks (those recorded in the baseline file)."""

_FACTOR = 0.5  # fail below half the recorded ratio (a 2x regression)


@dataclass(frozen=True, slots=True)
class GuardRow:
    """One guarded ratio: recorded, measured now, and the verdict (ok / REGRESSION / skipped)."""

    scenario: str
    ratio: str
    recorded: float
    measured: float | None
    verdict: str


def default_baseline() -> Path:
    """Return ``benchmarks/baseline_ratios.json`` of the checkout this package lives in."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "baseline_ratios.json"


def quick_guard(baseline: Path | None = None, *, scenarios: tuple[str, ...] = GUARDED,
                retries: int = 2, progress: Progress | None = None
                ) -> tuple[list[GuardRow], list[BenchRecord]]:
    """Run ``scenarios`` at :data:`QUICK` sizes and compare their ratios with ``baseline``.

    Returns the rows (one per recorded ratio) and the records. A row's verdict is
    ``REGRESSION`` when the measured ratio is below half the recorded one, ``skipped`` when the
    run did not produce that ratio (e.g. dask or dcm2niix not installed), ``ok`` otherwise.
    A scenario with a regressed ratio is run again, up to ``retries`` times, and each ratio keeps
    its best value: a neighbour stealing the CPU for one run must not fail the guard, a real
    regression shows in every run.
    """
    from clara_rt.bench._scenarios import SCENARIOS

    say = progress or _quiet
    recorded: dict[str, Any] = json.loads((baseline or default_baseline()).read_text())
    rows: list[GuardRow] = []
    records: list[BenchRecord] = []
    for name in scenarios:
        want = {k: float(v) for k, v in recorded.get(name, {}).items()}
        best: dict[str, float] = {}
        for attempt in range(retries + 1):
            t0 = time.perf_counter()
            record = SCENARIOS[name](**QUICK[name], progress=say)
            say(f"quick {name}: {time.perf_counter() - t0:.1f} s (run {attempt + 1})")
            for key, value in record.ratios.items():
                best[key] = max(value, best.get(key, value))
            if all(best.get(k, w) >= _FACTOR * w for k, w in want.items()):
                break
        records.append(record)
        for key, w in want.items():
            got = best.get(key)
            verdict = "skipped" if got is None else "REGRESSION" if got < _FACTOR * w else "ok"
            rows.append(GuardRow(name, key, w, got, verdict))
    return rows, records


def format_guard(rows: list[GuardRow]) -> str:
    """Render the guard rows as a table (recorded, measured, measured/recorded, verdict)."""
    width = max([len("scenario / ratio"), *(len(f"{r.scenario}: {r.ratio}") for r in rows)])
    lines = ["== quick regression guard (fails below 0.5x the recorded ratio; above 1: "
             "clara-rt better)",
             f"  {'scenario / ratio'.ljust(width)}  {'recorded':>9}  {'now':>9}  "
             f"{'now/rec':>7}  verdict"]
    for r in rows:
        now = "-" if r.measured is None else f"{r.measured:9.2f}"
        rel = "-" if r.measured is None else f"{r.measured / r.recorded:7.2f}"
        lines.append(f"  {f'{r.scenario}: {r.ratio}'.ljust(width)}  {r.recorded:9.2f}  "
                     f"{now:>9}  {rel:>7}  {r.verdict}")
    return "\n".join(lines)

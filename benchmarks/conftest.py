"""pytest-benchmark helpers: put clara-rt and its baseline side by side and print the ratio.

Each benchmark runs through the ``compare`` fixture, which remembers the median time per unit
(per job, per dispatch...) of every system in its group; at the end of the session the terminal
summary prints, for each group, baseline / clara-rt (above 1: clara-rt faster).

Run: ``.venv/bin/python -m pytest benchmarks --benchmark-only`` (not part of ``make test``).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

_MEDIANS: defaultdict[str, dict[str, float]] = defaultdict(dict)


@pytest.fixture
def compare(benchmark: Any) -> Callable[..., Any]:
    """Return ``run(system, target, *, units=1, rounds=..., setup=None, warmup_rounds=1)``.

    ``run`` times ``target`` with ``benchmark.pedantic`` and records its median divided by
    ``units`` (jobs or dispatches per call) under the benchmark's group and ``system``.
    """

    def run(system: str, target: Callable[..., Any], *, units: int = 1, rounds: int = 20,
            setup: Callable[[], Any] | None = None, warmup_rounds: int = 1) -> Any:
        benchmark.extra_info.update(system=system, units=units)
        result = benchmark.pedantic(target, setup=setup, rounds=rounds, iterations=1,
                                    warmup_rounds=warmup_rounds)
        if benchmark.stats is not None:  # None with --benchmark-disable
            _MEDIANS[benchmark.group or "default"][system] = benchmark.stats.stats.median / units
        return result

    return run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print baseline / clara-rt median ratios per group."""
    if not _MEDIANS:
        return
    terminalreporter.section("clara-rt ratios (baseline median / clara-rt median; >1: faster)")
    for group, systems in _MEDIANS.items():
        claras = {k: v for k, v in systems.items() if k.startswith("clara-rt")}
        for base, base_t in systems.items():
            if base in claras:
                continue
            for clara, clara_t in claras.items():
                terminalreporter.write_line(
                    f"{group:<12} {base:>28} / {clara:<24} {base_t / clara_t:8.2f}x   "
                    f"({base_t * 1e6:.2f} us vs {clara_t * 1e6:.2f} us per unit)")

"""What a scenario returns: a :class:`BenchRecord` with its targets, the machine it ran on
(:func:`machine_info`) and its text table (:func:`format_table`)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import clara_rt
from clara_rt import _core

Progress = Callable[[str], None]
"""Receives one-line progress messages (the CLI prints them to stderr)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for one figure, e.g. ``p50 per hop <= 2 us``."""

    name: str
    value: float
    limit: float
    unit: str
    higher_is_better: bool = False

    @property
    def passed(self) -> bool:
        """Whether ``value`` meets ``limit``."""
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


@dataclass(frozen=True, slots=True)
class BenchRecord:
    """The outcome of one scenario: per-system figures, ratios and targets.

    Attributes:
        scenario: Scenario name (``hops``, ``throughput``...).
        title: One line saying what was measured.
        machine: Host, CPUs and versions (:func:`machine_info`).
        params: The sizes the scenario ran with.
        figures: ``{system: {metric: value}}``; clara-rt and its baseline(s).
        ratios: ``{description: value}``; above 1 means clara-rt is better.
        targets: Goals checked against the figures.
        notes: How to read the figures (fairness choices, caveats).
    """

    scenario: str
    title: str
    machine: dict[str, Any]
    params: dict[str, Any]
    figures: dict[str, dict[str, float]]
    ratios: dict[str, float]
    targets: tuple[Target, ...] = ()
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-ready data (targets carry ``passed``)."""
        data = asdict(self)
        data["targets"] = [{**asdict(t), "passed": t.passed} for t in self.targets]
        return data


def machine_info() -> dict[str, Any]:
    """Describe this machine: hostname, CPUs, Python, numpy, clara-rt and dask versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    try:
        dask_version: str | None = importlib.metadata.version("dask")
    except importlib.metadata.PackageNotFoundError:
        dask_version = None
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "clara_rt": clara_rt.__version__,
        "clara_rt_core": _core.__version__,
        "dask": dask_version,
    }


def format_table(record: BenchRecord) -> str:
    """Render a record as a text table, then its ratios and targets (PASS/MISS)."""
    cols: list[str] = []
    for fig in record.figures.values():
        cols.extend(k for k in fig if k not in cols)
    rows = [["system", *cols]]
    rows += [[name, *(_fmt(fig.get(c)) for c in cols)] for name, fig in record.figures.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"== {record.scenario}: {record.title}"]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:],
                                                                        strict=True)]
        lines.append("  " + "  ".join(cells))
    if record.ratios:
        lines.append("  ratios (above 1: clara-rt better)")
        width = max(len(k) for k in record.ratios)
        lines += [f"    {k.ljust(width)}  {v:8.2f}x" for k, v in record.ratios.items()]
    for t in record.targets:
        op = ">=" if t.higher_is_better else "<="
        lines.append(f"  {'PASS' if t.passed else 'MISS'}  {t.name}: {_fmt(t.value)} {t.unit} "
                     f"(target {op} {_fmt(t.limit)} {t.unit})")
    if record.notes:
        lines.append(f"  note: {record.notes}")
    return "\n".join(lines)


# --- private ------------------------------------------------------------------------------


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("inf")


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _quiet(message: str) -> None:
    """Default progress sink: drop the message."""

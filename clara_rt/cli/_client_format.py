"""Output of the client verbs: tables, ``KEY: value`` fields, times, sizes, notes on stderr, and
the exit statuses."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "dump", "duration", "fields", "ms", "note",
           "size", "table", "tally", "usage", "when"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def dump(data: Any) -> int:
    print(json.dumps(data, indent=2))
    return EXIT_OK


def fields(pairs: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in pairs) + 1
    for key, value in pairs:
        print(f"{(key + ':').ljust(width)} {value}")


def table(header: list[str], rows: list[list[str]], indent: str = "") -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def note(message: str) -> None:
    print(f"clara-rt: {message}", file=sys.stderr, flush=True)


def usage(message: str) -> int:
    print(f"clara-rt: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def tally(paths: list[Path]) -> tuple[int, int]:
    """Files and bytes under ``paths`` (what an upload of them sends)."""
    count = size = 0
    for path in paths:
        for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if item.is_file():
                count += 1
                size += item.stat().st_size
    return count, size


def when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def duration(job: dict[str, Any], now: float) -> str:
    """Run time: started -> stopped (or now while running); ``-`` before it started."""
    if job["started"] is None:
        return "-"
    end = job["stopped"] if job["stopped"] is not None else now
    return _seconds(max(0.0, end - job["started"]))


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.2f}s" if s < 10 else f"{s:.1f}s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def ms(value: float | None, plus: bool = False) -> str:
    if value is None:
        return "-"
    if plus:
        return f"+{value / 1e3:.3f}s"
    return f"{value:.1f}ms" if value < 1000 else f"{value / 1e3:.2f}s"


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"

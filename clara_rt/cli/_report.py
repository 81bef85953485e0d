"""What ``clara-rt run`` shows and keeps: live progress, outputs on disk, the final report."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.arrays import to_host
from clara_rt.job import Job

__all__ = ["collect_outputs", "print_report", "watch"]


def watch(job: Job, *, enabled: bool) -> None:
    """Print one line per operator as it starts and ends, until the job is finished."""
    if not enabled:
        return
    seen: dict[str, int] = {}
    t0 = job.submitted_ns
    while True:
        finished = job.wait(0.05)
        times = job._times
        for i, node in enumerate(job._plan.nodes):
            start, end = times[2 * i], times[2 * i + 1]
            name = node.operator.name
            if start and name not in seen:  # a fast operator may start and end in one poll
                print(f"  running  {name:<32} +{(start - t0) / 1e6:8.1f} ms", file=sys.stderr)
                seen[name] = 1
            if end and seen.get(name) == 1:
                print(f"  done     {name:<32} {(end - start) / 1e6:9.1f} ms", file=sys.stderr)
                seen[name] = 2
        if finished:
            return


def collect_outputs(results: dict[str, Any], output: Path, workspace: Path, *,
                    overwrite: bool) -> dict[str, Path]:
    """Move or write every result into ``output``; return ``op.port`` -> where it went.

    Files and folders (path results) go to ``output/<op>/<port>``: moved when the job wrote
    them in its ``workspace``, copied otherwise (a result may name the user's own input, which
    is never moved or changed). ``None`` results are skipped. Arrays are saved as
    ``output/<op>/<port>.npy``; other values as JSON (or their ``repr`` in a ``.txt``). An
    existing target is replaced only with ``overwrite``; the write goes to a temporary name first
    and is renamed into place, so a failure never leaves half a result.
    """
    placed: dict[str, Path] = {}
    for key, value in results.items():
        op, _, port = key.partition(".")
        target = output / op / port
        if value is None:
            continue
        if isinstance(value, str | Path) and Path(value).exists():
            placed[key] = _place(Path(value), target, workspace, overwrite)
        elif hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__"):
            placed[key] = _write(target.with_suffix(".npy"), overwrite,
                                 lambda tmp, v=value: np.save(tmp, _host(v)))
        else:
            placed[key] = _write_value(target, value, overwrite)
    return placed


def print_report(job: Job, built: Any, outputs: dict[str, Path], workspace: Path | None, *,
                 as_json: bool) -> None:
    """Print the timings table and outputs (or a JSON report on stdout)."""
    rows = job.operator_states()
    error = str(job.error) if job.error is not None else None
    if as_json:
        print(json.dumps({
            "job": job.id, "pipeline": job.pipeline, "state": job.state.value,
            "priority": job.priority.name.lower(), "operators": rows,
            "outputs": {k: str(v) for k, v in outputs.items()}, "error": error,
            "workspace": str(workspace) if workspace else None,
        }, indent=2))
        return
    print(f"job {job.id} of '{job.pipeline}': {job.state.value}")
    width = max([len("operator"), *(len(row["name"]) for row in rows)])
    print(f"  {'operator':<{width}} {'state':<10} {'start ms':>9} {'duration ms':>12}")
    for row in rows:
        start = "" if row["start_ms"] is None else f"{row['start_ms']:9.1f}"
        duration = "" if row["duration_ms"] is None else f"{row['duration_ms']:12.1f}"
        print(f"  {row['name']:<{width}} {row['state']:<10} {start:>9} {duration:>12}")
    for key, path in outputs.items():
        print(f"output {key}: {path}")
    if error:
        print(f"error: {error}", file=sys.stderr)
    if workspace is not None:
        print(f"workspace kept: {workspace}")


def _place(source: Path, target: Path, workspace: Path, overwrite: bool) -> Path:
    target = target.with_suffix("".join(source.suffixes)) if source.is_file() else target
    _clear(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve().is_relative_to(workspace.resolve()):
        shutil.move(str(source), str(target))
    elif source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


def _write(target: Path, overwrite: bool, writer: Any) -> Path:
    _clear(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial{target.suffix}")
    writer(tmp)
    tmp.replace(target)
    return target


def _write_value(target: Path, value: Any, overwrite: bool) -> Path:
    try:
        text, suffix = json.dumps(value, indent=2, default=_jsonable), ".json"
    except (TypeError, ValueError):
        text, suffix = repr(value), ".txt"
    return _write(target.with_suffix(suffix), overwrite, lambda tmp: tmp.write_text(text))


def _jsonable(value: Any) -> Any:
    """JSON form of records results often hold (dataclasses, ``to_dict()``, arrays, paths)."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return str(value)


def _clear(target: Path, overwrite: bool) -> None:
    if not target.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()


def _host(value: Any) -> Any:
    return to_host(value)

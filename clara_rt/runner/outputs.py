"""Collecting a job's results into an output folder: ``clara-rt run --output``, the server's
``output/`` folders and the cluster's node runtimes all write them the same way."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.arrays import to_host

__all__ = ["collect_outputs"]


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
        if isinstance(value, str | Path) and Path(value).is_symlink():
            # A command may swap its output folder for a link to / (issue 16.1): never follow.
            logging.getLogger("clara_rt.results").warning(
                "result %s is a symbolic link (%s -> %s); links are never collected", key,
                value, Path(value).readlink())
            continue
        if isinstance(value, str | Path) and Path(value).exists():
            placed[key] = _place(Path(value), target, workspace, overwrite)
        elif hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__"):
            placed[key] = _write(target.with_suffix(".npy"), overwrite,
                                 lambda tmp, v=value: np.save(tmp, to_host(v)))
        else:
            placed[key] = _write_value(target, value, overwrite)
    return placed


def _place(source: Path, target: Path, workspace: Path, overwrite: bool) -> Path:
    target = target.with_suffix("".join(source.suffixes)) if source.is_file() else target
    _clear(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve().is_relative_to(workspace.resolve()):
        shutil.move(str(source), str(target))
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True)  # links stay links, never followed
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

"""How a cluster job's payload and results travel between the server and a node.

Two ways, chosen per job by :func:`transport_for`:

* ``"shared-path"``: the server's data directory is visible at the same path on every node
  (``--cluster-shared-path DIR``, an NFS or similar mount). Nothing is copied: the node reads the
  job's input folder and writes its results and logs into the job's folders itself.
* ``"object-store"``: the folder's files are packed into **one** ``uint8`` array plus an index
  (:func:`pack`) and put into Ray's object store; the node unpacks them into a local scratch
  folder (:func:`unpack`), runs the job there and packs its results and logs back the same way.
  Ray hands NumPy arrays over without a copy from its shared-memory store on the receiving
  node, so a file is copied once into the array on one side and written once from it on the
  other.

A packed folder is a plain tuple ``(index, data)`` (``index``: ``(relative path, offset,
size)`` per file; ``data``: the bytes), so that any node can read it without clara-rt's classes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

__all__ = ["OBJECT_STORE", "RESULTS_DIR", "SHARED_PATH", "Packed", "pack", "place_results",
           "transport_for", "unpack"]

SHARED_PATH = "shared-path"
OBJECT_STORE = "object-store"
RESULTS_DIR = ".clara-rt-results"
"""Folder of the job's workspace where a node (or the bridge) leaves the results;
:func:`place_results` moves them into the output folder."""

Packed = tuple[tuple[tuple[str, int, int], ...], Any]
"""``(index, data)``: ``index`` holds ``(relative path, offset, size)`` per file, ``data`` is a
one-dimensional ``uint8`` array."""


def transport_for(shared_path: Path | None, *paths: Path) -> str:
    """``"shared-path"`` when every one of ``paths`` lies under ``shared_path``, else
    ``"object-store"``."""
    if shared_path is None:
        return OBJECT_STORE
    root = shared_path.resolve()
    inside = all(Path(p).resolve().is_relative_to(root) for p in paths)
    return SHARED_PATH if inside else OBJECT_STORE


def pack(folders: dict[str, Path]) -> Packed:
    """Pack the regular files under each folder into one array, named ``key/relative/path``.

    Missing folders are skipped; symbolic links to files are followed, links to folders are not.
    """
    files: list[tuple[str, Path, int]] = []
    for key, folder in folders.items():
        if not folder.is_dir():
            continue
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            for name in sorted(names):
                path = Path(root, name)
                if path.is_file():
                    rel = path.relative_to(folder).as_posix()
                    files.append((f"{key}/{rel}", path, path.stat().st_size))
    data = np.empty(sum(size for _, _, size in files), dtype=np.uint8)
    view = data.data
    index: list[tuple[str, int, int]] = []
    offset = 0
    for rel, path, size in files:
        with open(path, "rb") as src:
            got = src.readinto(view[offset:offset + size])
        index.append((rel, offset, got))  # a file that shrank meanwhile keeps what was read
        offset += size
    return tuple(index), data


def unpack(packed: Packed, targets: dict[str, Path], *, append: tuple[str, ...] = ()
           ) -> list[Path]:
    """Write the files of ``packed`` under ``targets[key]`` (the first path component).

    Files of the keys in ``append`` are appended to existing files (operator logs); the others
    are written anew. Entries whose key has no target are skipped.

    Raises:
        ValueError: An entry would land outside its target (absolute path or ``..``).
    """
    index, data = packed
    view = np.ascontiguousarray(data, dtype=np.uint8).data.cast("B")
    written: list[Path] = []
    for rel, offset, size in index:
        key, _, rest = rel.partition("/")
        if key not in targets:
            continue
        parts = PurePosixPath(rest).parts
        if not parts or PurePosixPath(rest).is_absolute() or ".." in parts:
            raise ValueError(f"packed file {rel!r} would land outside its folder")
        target = targets[key].joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab" if key in append else "wb") as out:
            out.write(view[offset:offset + size])
        written.append(target)
    return written


def place_results(workspace: Path, output: Path) -> None:
    """Move the results a node left in ``workspace/.clara-rt-results`` into ``output``.

    The results were written completely before the job was reported finished, so this is a
    rename per entry (``output`` itself when it does not exist yet).
    """
    results = workspace / RESULTS_DIR
    if not results.is_dir():
        output.mkdir(parents=True, exist_ok=True)
        return
    if not output.exists():
        output.parent.mkdir(parents=True, exist_ok=True)
        os.replace(results, output)
        return
    for entry in sorted(results.iterdir()):
        target = output / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)
    results.rmdir()

"""Where Clara's folder ports meet in-process array ports.

A command operator exchanges folders; a Python operator may want an array. When a folder port
feeds an array port (or the reverse) the pipeline builder inserts :class:`LoadFolderOp` (or
:class:`SaveFolderOp`), chosen by the array port's ``format``. ``npy`` is built in; ``nifti``
needs ``nibabel``. Other packages add formats through the entry point groups
``clara_rt.folder_loaders`` (``name = "module:loader"``, ``loader(folder) -> array``) and
``clara_rt.folder_writers`` (``writer(array, folder) -> file``), looked up when a format is
first asked for and imported when first used; or in process with :func:`register_loader` /
:func:`register_writer`. ``dicom`` is registered so by the operator library
(``clara_rt.operators.io.folder_formats``): this module never imports ``operators/``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.arrays import to_host
from clara_rt.operator import Operator, OperatorSpec

__all__ = ["LOADER_GROUP", "WRITER_GROUP", "LoadFolderOp", "SaveFolderOp", "folder_formats",
           "register_loader", "register_writer"]

LOADER_GROUP = "clara_rt.folder_loaders"
"""Entry point group of folder loaders: ``format = "module:function"``."""
WRITER_GROUP = "clara_rt.folder_writers"
"""Entry point group of folder writers: ``format = "module:function"``."""

Loader = Callable[[Path], Any]
Writer = Callable[[Any, Path], Path]
_LOADERS: dict[str, Loader] = {}
_WRITERS: dict[str, Writer] = {}
_discovered = False
_discover_lock = threading.Lock()


def register_loader(fmt: str, loader: Loader) -> None:
    """Make ``LoadFolderOp(format=fmt)`` read a folder with ``loader(folder) -> array``."""
    _LOADERS[fmt] = loader


def register_writer(fmt: str, writer: Writer) -> None:
    """Make ``SaveFolderOp(format=fmt)`` write with ``writer(array, folder) -> file``."""
    _WRITERS[fmt] = writer


def folder_formats(adapter: type[Operator]) -> tuple[str, ...]:
    """Formats the given adapter class can handle (registered, or declared by entry points)."""
    _discover()
    return tuple(sorted(_LOADERS if adapter is LoadFolderOp else _WRITERS))


def _discover() -> None:
    """Add the formats declared in the entry point groups, once; each is imported on first use
    (so that listing formats never imports the packages that provide them)."""
    global _discovered
    with _discover_lock:
        if _discovered:
            return
        for group, table in ((LOADER_GROUP, _LOADERS), (WRITER_GROUP, _WRITERS)):
            for ep in entry_points(group=group):
                table.setdefault(ep.name, _on_first_use(ep))
        _discovered = True


def _on_first_use(ep: EntryPoint) -> Callable[..., Any]:
    loaded: list[Callable[..., Any]] = []

    def call(*args: Any) -> Any:
        if not loaded:
            loaded.append(ep.load())
        return loaded[0](*args)

    return call


def _lookup(table: dict[str, Any], fmt: str, op: Operator, what: str) -> Any:
    _discover()
    if fmt not in table:
        raise ValueError(f"operator '{op.name}': no folder {what} for format '{fmt}'; known: "
                         f"{', '.join(sorted(table))} (add one to the entry point group "
                         f"'{LOADER_GROUP if what == 'loader' else WRITER_GROUP}')")
    return table[fmt]


class LoadFolderOp(Operator):
    """Read the array in a folder (``in``: path) in ``format`` and emit it (``out``: array)."""

    format = "npy"

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("in", kind="path")
        spec.output("out", kind="array", device="cpu", format=self.format)

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        outputs["out"] = _lookup(_LOADERS, self.format, self, "loader")(Path(inputs["in"]))


class SaveFolderOp(Operator):
    """Write the array on ``in`` into a new folder in the job workspace; emit the folder."""

    format = "npy"

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("in", kind="array", format=self.format)
        spec.output("out", kind="path", format=self.format)

    def compute(self, inputs: Any, outputs: Any, context: Any) -> None:
        if context.workspace is None:
            raise RuntimeError(f"operator '{self.name}' writes a folder and needs a job "
                               "workspace: Runtime.submit(..., workspace=DIR)")
        folder = Path(context.workspace) / self.name
        folder.mkdir(parents=True, exist_ok=True)
        _lookup(_WRITERS, self.format, self, "writer")(inputs["in"], folder)
        outputs["out"] = folder


def _single(folder: Path, patterns: tuple[str, ...], what: str) -> Path:
    found = sorted(p for pattern in patterns for p in folder.glob(pattern))
    if len(found) != 1:
        names = ", ".join(p.name for p in found[:5]) or "none"
        raise ValueError(f"expected one {what} file in {folder}, found {len(found)} ({names})")
    return found[0]


def _load_npy(folder: Path) -> Any:
    return np.load(_single(folder, ("*.npy",), ".npy"), allow_pickle=False)


def _save_npy(array: Any, folder: Path) -> Path:
    array = to_host(array)  # a GPU array: bring it to the host once, to write it
    target = folder / "array.npy"
    np.save(target, array)
    return target


def _load_nifti(folder: Path) -> Any:
    import nibabel

    image = nibabel.load(_single(folder, ("*.nii", "*.nii.gz"), "NIfTI"))
    return np.asanyarray(image.dataobj)


def _save_nifti(array: Any, folder: Path) -> Path:
    import nibabel

    array = to_host(array)
    target = folder / "image.nii.gz"
    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), target)
    return target


register_loader("npy", _load_npy)
register_writer("npy", _save_npy)
register_loader("nifti", _load_nifti)
register_writer("nifti", _save_nifti)

"""Folder formats the operator library adds to clara-rt's folder ports.

When a Clara folder port feeds an in-process array port whose ``format`` is ``dicom``, the
pipeline builder inserts :class:`~clara_rt.definition.folders.LoadFolderOp`, which finds its
reader through the ``clara_rt.folder_loaders`` entry point group (pyproject.toml):

.. code-block:: toml

    [project.entry-points."clara_rt.folder_loaders"]
    dicom = "clara_rt.operators.io.folder_formats:load_dicom"

so ``clara_rt.definition`` never imports the operator library. Another package adds a format the
same way (``clara_rt.folder_writers`` for writers: ``writer(array, folder) -> file``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clara_rt.operators.io.dicom_series import load_series

__all__ = ["load_dicom"]


def load_dicom(folder: Path) -> Any:
    """The volume of the CT/MR series in ``folder`` (:func:`load_series`'s rules), without its
    meta: a folder loader for ``format: dicom``."""
    return load_series(folder)[0]

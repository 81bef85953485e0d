"""Folder formats come from the operator package through an entry point (issue 18.8): the
definition layer lists and loads ``dicom`` without importing ``operators/`` itself."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from clara_rt import Pipeline, Runtime
from clara_rt.definition.folders import (
    LOADER_GROUP,
    LoadFolderOp,
    SaveFolderOp,
    folder_formats,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_operator_package_declares_dicom() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][LOADER_GROUP]["dicom"] == (
        "clara_rt.operators.io.folder_formats:load_dicom")
    assert "dicom" in folder_formats(LoadFolderOp), (
        "the installed metadata lacks the entry point: reinstall with `pip install -e .` (or "
        "`python setup.py egg_info` in a checkout)")


def test_listing_formats_imports_no_operator() -> None:
    code = ("import sys\nfrom clara_rt.definition.folders import LoadFolderOp, folder_formats\n"
            "assert 'dicom' in folder_formats(LoadFolderOp)\n"
            "print(sorted(m for m in sys.modules if m.startswith('clara_rt.operators')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_dicom_folder_loads_through_the_entry_point(tmp_path: Path) -> None:
    from tests.data.dicom_series import make_series

    make_series(tmp_path / "ct", slices=4, rows=16, cols=16)
    p = Pipeline("load")
    p.add(LoadFolderOp("load", format="dicom"))
    with Runtime(workers=1) as rt:
        volume = rt.submit(p, {"load.in": str(tmp_path / "ct")}, timeout=60).result()["load.out"]
    assert isinstance(volume, np.ndarray) and volume.shape == (4, 16, 16)


def test_an_unknown_format_names_the_operator_and_the_known_ones(tmp_path: Path) -> None:
    p = Pipeline("save")
    p.add(SaveFolderOp("save", format="tiff"))
    with Runtime(workers=1) as rt:
        job = rt.submit(p, {"save.in": np.zeros(3)}, workspace=tmp_path, timeout=60)
        with pytest.raises(Exception, match=r"operator 'save': no folder writer for format "
                                            r"'tiff'; known: nifti, npy"):
            job.result()

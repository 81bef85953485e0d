"""The fast header scanner decodes names in common character sets exactly as pydicom does, and
``clara-rt convert`` of a series with SpecificCharacterSet imports neither pydicom nor nibabel
(issue 19.2: pydicom only when the fast reader gives up)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from clara_rt.bench import checkout_env
from clara_rt.operators.io import load_series
from tests.data.dicom_series import make_series

NAMES = {
    "ISO_IR 100": "Müller^Françoise",
    "ISO_IR 192": "Łukasz^Ñandú^李",
    "ISO_IR 144": "Иванов^Пётр",
    "ISO_IR 126": "Παπαδόπουλος",
    "GB18030": "王^小明",
    "\\ISO 2022 IR 87": "Yamada^Tarou=山田^太郎",  # code extensions: decoded by pydicom
}


@pytest.mark.parametrize("charset", list(NAMES))
def test_names_decode_like_pydicom(tmp_path: Path, charset: str) -> None:
    files = make_series(tmp_path / "ct", slices=2, rows=8, cols=8)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
        ds.PatientName = NAMES[charset]
        ds.SeriesDescription = NAMES[charset].replace("^", " ")
        ds.save_as(path, enforce_file_format=True)
    _, meta = load_series(tmp_path / "ct")
    ds = pydicom.dcmread(files[0])
    assert meta.source["PatientName"] == str(ds.PatientName) == NAMES[charset]
    assert meta.source["SeriesDescription"] == ds.SeriesDescription


def test_convert_imports_neither_pydicom_nor_nibabel(tmp_path: Path) -> None:
    files = make_series(tmp_path / "ct", slices=3, rows=16, cols=16)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet, ds.PatientName = "ISO_IR 100", "Müller^Jörg"
        ds.save_as(path, enforce_file_format=True)
    code = ("import sys\n"
            "from clara_rt.cli import main\n"
            f"assert main(['convert', {str(tmp_path / 'ct')!r}, {str(tmp_path / 'o.nii')!r}]) "
            "== 0\n"
            "loaded = {'pydicom', 'nibabel', 'numpy.ma'} & set(sys.modules)\n"
            "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=checkout_env(), check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o.nii").stat().st_size == 352 + 3 * 16 * 16 * 2

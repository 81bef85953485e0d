"""Start-up of the ``clara-rt`` command line (issue 19): a verb imports only what it needs.

``clara-rt convert`` as a new process must not load the server, the pipeline runtime, SciPy,
pydicom or nibabel, and must write the same file as the library does in-process; on a plain 16-bit
series (the fast path) it must not import NumPy either. The lazy verb
table (:data:`clara_rt.cli.VERBS`) must declare exactly what the verb modules declare.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clara_rt.bench import checkout_env
from clara_rt.cli import VERBS, build_parser
from clara_rt.operators.io import load_series, write_nifti
from tests.data.dicom_series import make_series

# modules a conversion has no use for: the server, the runtime, YAML definitions, imaging
# libraries the fast paths replace
NOT_FOR_CONVERT = ("fastapi", "starlette", "uvicorn", "clara_rt.server", "clara_rt.definition",
                   "clara_rt.executor", "clara_rt._core", "clara_rt.job", "clara_rt.bench",
                   "yaml", "scipy", "numba", "pydicom", "nibabel", "highdicom",
                   "importlib.metadata", "pkg_resources")

_CHILD = """
import json, sys
from clara_rt.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _verbs(parser: object) -> list[tuple[str, str | None]]:
    action = next(a for a in parser._subparsers._group_actions)  # type: ignore[attr-defined]
    return [(a.dest, a.help) for a in action._choices_actions]


def test_verb_table_matches_the_verb_modules() -> None:
    full = _verbs(build_parser())
    assert full == [(name, help_) for name, (_, help_) in VERBS.items()]
    assert _verbs(build_parser(None)) == full
    assert _verbs(build_parser("convert")) == full


def test_a_verb_parses_the_same_when_declared_alone() -> None:
    argv = ["convert", "in", "out.nii", "--modality", "CT", "--select", "only"]
    alone = vars(build_parser("convert").parse_args(argv))
    assert alone == vars(build_parser().parse_args(argv))


def _convert_child(src: Path, out: Path) -> tuple[dict[str, object], list[str]]:
    """Run ``clara-rt convert --json`` in a child; its record and the modules it imported."""
    done = subprocess.run([sys.executable, "-c", _CHILD, "convert", str(src), str(out),
                           "--json"], capture_output=True, text=True, timeout=120,
                          env=checkout_env(), check=False)
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stderr.strip().splitlines()[-1])
    assert child["status"] == 0
    return json.loads(done.stdout), child["modules"]


def _unwanted(modules: list[str], unwanted: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == bad or m.startswith(bad + ".") for bad in unwanted))


def test_convert_process_imports_only_what_it_needs(tmp_path: Path) -> None:
    """The NumPy path (here: a fractional slope) imports nothing else it does not need."""
    make_series(tmp_path / "ct", slices=6, rows=24, cols=20, orientation="oblique", slope=1.5,
                intercept=-1000.0)
    record, modules = _convert_child(tmp_path / "ct", tmp_path / "cli.nii")
    assert not _unwanted(modules, NOT_FOR_CONVERT), "clara-rt convert imported too much"
    assert record["shape_kji"] == [6, 24, 20] and record["dtype"] == "float32"
    volume, meta = load_series(tmp_path / "ct")
    write_nifti(volume, meta, tmp_path / "lib.nii")
    assert (tmp_path / "cli.nii").read_bytes() == (tmp_path / "lib.nii").read_bytes()


@pytest.mark.parametrize("intercept", [0.0, -1024.0])
def test_convert_fast_path_imports_no_numpy(tmp_path: Path, intercept: float) -> None:
    """A plain 16-bit series converts without NumPy: the library's file (or its real values)."""
    make_series(tmp_path / "ct", slices=6, rows=24, cols=20, orientation="oblique",
                intercept=intercept)
    out = tmp_path / "cli.nii"
    record, modules = _convert_child(tmp_path / "ct", out)
    assert not _unwanted(modules, (*NOT_FOR_CONVERT, "numpy")), "fast path imported too much"
    assert record["shape_kji"] == [6, 24, 20] and record["dtype"] == "int16"
    assert (record["scl_slope"], record["scl_inter"]) == (1.0, intercept)
    volume, meta = load_series(tmp_path / "ct")
    assert record["affine_ras"] == meta.affine_ras.tolist()
    write_nifti(volume, meta, tmp_path / "lib.nii")
    ours, library = out.read_bytes(), (tmp_path / "lib.nii").read_bytes()
    if intercept == 0.0:
        assert ours == library
    else:  # the stored values, scl_inter set: the same real values
        assert ours[:112] + ours[120:352] == library[:112] + library[120:352]
        stored = np.frombuffer(ours[352:], "<i2").reshape(volume.shape)
        np.testing.assert_array_equal(stored.astype(np.int32) + int(intercept), volume)

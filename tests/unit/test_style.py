"""The code stays ruff- and clang-format-clean (the brief's style rules, enforced)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import need_peer

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    need_peer(ruff is not None, "ruff")
    assert ruff is not None
    proc = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_clang_format_clean() -> None:
    clang_format = shutil.which("clang-format")
    need_peer(clang_format is not None, "clang-format")
    assert clang_format is not None
    sources = sorted(str(p) for folder in ("csrc", "tests/cpp")
                     for p in (ROOT / folder).glob("*.[ch]pp"))
    assert sources
    proc = subprocess.run([clang_format, "--dry-run", "--Werror", *sources], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_mypy_strict_on_runtime() -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    need_peer(mypy is not None, "mypy")
    assert mypy is not None
    proc = subprocess.run([mypy, "--strict", "--no-incremental", "clara_rt"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]

"""Build the C++ scheduler's own tests with g++ and run them (issue 18.11).

* ``test_scheduler.cpp``: unit tests of ``csrc/`` on one thread (plain checks, no dependency).
* ``stress_scheduler.cpp`` under ThreadSanitizer: workers, waiting callers, a canceller and a
  submitter on one scheduler at once. The Python stress tests hold the GIL, so this is where the
  C++ runs truly in parallel; TSan fails the run (exit 66) on any data race.

Each binary is built into ``tmp_path`` from the checkout's sources; g++ missing skips locally and
fails in CI (``CLARA_RT_REQUIRE_PEERS=1``), like any peer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need_peer

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CORE = [ROOT / "csrc" / name for name in ("dag.cpp", "ready_queue.cpp", "scheduler.cpp")]


def build(tmp_path: Path, source: str, *flags: str) -> Path:
    """Compile ``source`` (in this folder) with the scheduler's sources; return the binary."""
    gxx = shutil.which("g++")
    need_peer(gxx is not None, "g++ (to build the C++ scheduler tests)")
    assert gxx is not None
    binary = tmp_path / Path(source).stem
    cmd = [gxx, "-std=c++17", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", *flags,
           f"-I{ROOT / 'csrc'}", f"-I{HERE}", *map(str, CORE), str(HERE / source), "-o",
           str(binary)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"g++ failed:\n{' '.join(cmd)}\n{proc.stderr[-4000:]}"
    return binary


def run(binary: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120,
                          check=False, env=env)
    assert proc.returncode == 0, (f"{binary.name} exited {proc.returncode}:\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc.stdout


def test_issue_18_cpp_scheduler_unit_tests(tmp_path: Path) -> None:
    out = run(build(tmp_path, "test_scheduler.cpp", "-O1", "-D_GLIBCXX_ASSERTIONS"))
    assert "0 failed check(s)" in out
    assert "FAIL" not in out


@pytest.mark.slow
def test_issue_18_cpp_scheduler_stress_under_thread_sanitizer(tmp_path: Path) -> None:
    binary = build(tmp_path, "stress_scheduler.cpp", "-O1", "-fsanitize=thread")
    out = run(binary, "20000", env={"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"})
    assert out.rstrip().endswith(": ok"), out

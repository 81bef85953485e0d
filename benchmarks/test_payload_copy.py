"""What a job's private input copy costs (issue 16.10): ``copy_payloads`` vs ``cp -r``.

Each server job now runs on a copy of its payloads instead of the stored folder. The baseline
is what a user would do by hand, ``cp -r`` of the same folder; hard links (what jobs of several
payloads used before, and unsafe: a command writing into its input changed the original) are
timed for reference. 64 files of 1 MiB, page cache warm.
Run: ``.venv/bin/python -m pytest benchmarks/test_payload_copy.py --benchmark-only``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from clara_rt.server.jobs import copy_payloads

FILES, SIZE = 64, 1 << 20
pytestmark = pytest.mark.benchmark(group="payload-copy")


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("payload") / "p"
    (folder / "series").mkdir(parents=True)
    for i in range(FILES):
        (folder / "series" / f"{i:04d}.dcm").write_bytes(os.urandom(SIZE))
    return folder


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[[], tuple[tuple[Path], dict[str, Any]]]]:
    count = iter(range(1_000_000))

    def setup() -> tuple[tuple[Path], dict[str, Any]]:
        dest = tmp_path / f"dest-{next(count)}"
        shutil.rmtree(tmp_path / f"dest-{int(dest.name[5:]) - 2}", ignore_errors=True)
        return (dest,), {}

    yield setup


def test_clara_rt_copy_payloads(compare: Callable[..., Any], payload: Path,
                                fresh: Callable[[], Any]) -> None:
    compare("clara-rt copy_payloads", lambda dest: copy_payloads([payload], dest), rounds=8,
            setup=fresh)


def test_cp_r(compare: Callable[..., Any], payload: Path, fresh: Callable[[], Any]) -> None:
    compare("cp -r", lambda dest: subprocess.run(["cp", "-r", str(payload), str(dest)],
                                                 check=True), rounds=8, setup=fresh)


def test_hard_links_unsafe(compare: Callable[..., Any], payload: Path,
                           fresh: Callable[[], Any]) -> None:
    compare("hard links (unsafe)",
            lambda dest: shutil.copytree(payload, dest, copy_function=os.link), rounds=8,
            setup=fresh)

"""`make demo`'s reference pipeline: runs as a user runs it and gets the right answer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from clara_rt import Runtime
from examples.python_api import build
from tests.data.phantom import ct_phantom

ROOT = Path(__file__).resolve().parents[2]


def _lung_voxels(shape: tuple[int, int, int]) -> int:
    """Count the phantom's lung voxels straight from its geometry (independent of the demo)."""
    z, y, x = np.indices(shape, dtype=np.float32)
    cz, cy, cx = (s / 2 for s in shape)
    total = 0
    for side in (-1, 1):
        total += int(((((y - cy) / (0.25 * shape[1])) ** 2
                       + ((x - cx - side * 0.2 * shape[2]) / (0.13 * shape[2])) ** 2
                       + ((z - cz) / (0.4 * shape[0])) ** 2) <= 1).sum())
    return total


def test_demo_segments_exactly_the_lungs() -> None:
    volume = ct_phantom()
    with Runtime(workers=2) as rt:
        out = rt.run(build(), {"window.volume": volume})
    assert out["stats.stats"]["voxels"] == _lung_voxels(volume.shape)
    assert out["mip.mip"].shape == volume.shape[1:]


def test_demo_script_prints_what_it_did() -> None:
    proc = subprocess.run([sys.executable, "examples/python_api.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    expected = _lung_voxels((64, 128, 128))
    assert f"result stats.stats: {expected} lung voxels" in proc.stdout
    job_line = r"^job [0-9a-f]{32}: succeeded \(priority high\)$"
    assert re.search(job_line, proc.stdout, re.M), proc.stdout
    for op in ("window", "threshold", "largest", "stats", "mip"):
        assert f"  {op} " in proc.stdout

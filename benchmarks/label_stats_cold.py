"""Cold label statistics: what a small job pays for its first ``label_stats`` call.

ct-lung-seg needs no numba kernel but the label statistics. This measures, in one run, a fresh
interpreter's first ``clara_rt.operators.kernels.label_stats`` call on a 2-lung mask (imports
included) through the NumPy per-label path (what ``label_stats`` does while numba is not loaded)
and through the numba kernel (``import numba`` + loading its cached compilation), alternating
the two, and the warm per-call time of both on the same volume; it prints the ratios.

Run: ``.venv/bin/python benchmarks/label_stats_cold.py [--shape 64 256 256] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time
t0 = time.perf_counter()
import numpy as np
from clara_rt.operators import kernels
nz, ny, nx = map(int, sys.argv[2:5])
lab = np.zeros((nz, ny, nx), np.uint8)
lab[nz // 10:nz * 8 // 10, ny // 10:ny * 8 // 10, nx // 20:nx * 9 // 20] = 1
lab[nz // 10:nz * 8 // 10, ny // 10:ny * 8 // 10, nx * 11 // 20:nx * 19 // 20] = 2
img = lab.astype(np.int16) * 100 - 900
def call():
    if sys.argv[1] == "numba":
        return kernels._stats_cpu(kernels._cpu_kernels(), lab, img, 2)
    return kernels._stats_per_label(lab, img, 2)
call()
cold = time.perf_counter() - t0
warm = []
for _ in range(3):
    t = time.perf_counter(); call(); warm.append(time.perf_counter() - t)
print(cold * 1e3, min(warm) * 1e3)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {"PYTHONPATH": str(ROOT)}
    cold: dict[str, list[float]] = {"numpy": [], "numba": []}
    warm: dict[str, list[float]] = {"numpy": [], "numba": []}
    for _ in range(args.rounds):
        for path in ("numba", "numpy"):
            out = subprocess.run([sys.executable, "-c", CHILD, path, *map(str, args.shape)],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, **env}).stdout.split()
            cold[path].append(float(out[0]))
            warm[path].append(float(out[1]))
    shape = "x".join(map(str, args.shape))
    for path in ("numpy", "numba"):
        print(f"{path:5s}  cold first call (imports included) median "
              f"{statistics.median(cold[path]):7.1f} ms   warm best {min(warm[path]):7.1f} ms")
    print(f"cold ratio numba / numpy: "
          f"{statistics.median(cold['numba']) / statistics.median(cold['numpy']):.1f}x; warm "
          f"ratio numba / numpy: {min(warm['numba']) / min(warm['numpy']):.2f}x ({shape}, "
          f"2 labels, {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

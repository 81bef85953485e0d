"""What `make demo` runs: the ct-lung-seg reference pipeline on a generated chest CT.

1. Writes a 64-slice chest CT phantom as a real DICOM series (random file names) into
   `.demo/input/` unless it is already there.
2. Runs `examples/ct-lung-seg/pipeline.yaml` on it in this process, exactly as
   `clara-rt run examples/ct-lung-seg/pipeline.yaml --input .demo/input --output .demo/output`
   would: DICOM series -> HU threshold lung mask -> largest components -> DICOM SEG, NIfTI, PNG
   overlays and JSON volumes.
3. Prints what it did and checks the lung volumes against the phantom's geometry.

`python examples/demo.py --work DIR` uses DIR instead of `.demo/`; `--help` says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clara_rt.cli import main as clara_rt  # noqa: E402
from tests.data.chest_dicom import SPACING, write_chest_series  # noqa: E402

PIPELINE = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
WORK = ROOT / ".demo"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = Path(args.work).resolve()
    inputs, outputs = work / "input", work / "output"
    if not any(inputs.glob("*.dcm")):
        files = write_chest_series(inputs)
        print(f"wrote a chest CT phantom: {len(files)} DICOM slices in {inputs}")
    else:
        print(f"using the DICOM series in {inputs}")
    shutil.rmtree(outputs, ignore_errors=True)
    print(f"$ clara-rt run {_shown(PIPELINE)} --input {_shown(inputs)} "
          f"--output {_shown(outputs)} --device {args.device}")
    status = clara_rt(["run", str(PIPELINE), "--input", str(inputs), "--output", str(outputs),
                       "--device", args.device])
    if status != 0:
        return status
    stats = json.loads((outputs / "volumes" / "stats.json").read_text())
    voxel_ml = SPACING[0] * SPACING[1] * SPACING[2] / 1000.0
    expected_ml = 4 / 3 * 3.141592653589793 * 32 * 16.64 * 25.6 * voxel_ml  # the phantom's lung
    for label in sorted(stats):
        lung = stats[label]
        error = abs(lung["volume_ml"] - expected_ml) / expected_ml
        print(f"{lung['name']}: {lung['volume_ml']:.1f} ml (phantom {expected_ml:.1f} ml, "
              f"{error:.1%} off), mean {lung['mean']:.0f} HU")
        if error > 0.05:
            print("lung volume off by more than 5 %", file=sys.stderr)
            return 1
    print(f"open {outputs / 'render' / 'pngs' / 'axial.png'} to see the overlay")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="examples/demo.py",
        description="Write a chest CT phantom as a DICOM series (unless WORK/input already holds "
                    "one), run examples/ct-lung-seg/pipeline.yaml on it into WORK/output and "
                    "check the lung volumes against the phantom.")
    parser.add_argument("--work", default=str(WORK), metavar="WORK",
                        help="folder for input/ and output/ (default: .demo in the checkout)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="where the pipeline runs (default auto: the GPU when CuPy finds one)")
    return parser


def _shown(path: Path) -> str:
    """Print paths inside the checkout relative to it, others in full."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    raise SystemExit(main())

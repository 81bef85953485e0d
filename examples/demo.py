"""What `make demo` runs: the ct-lung-seg reference pipeline on a generated chest CT.

1. Writes a 64-slice chest CT phantom as a real DICOM series (random file names) into
   `.demo/input/` unless it is already there.
2. Runs `examples/ct-lung-seg/pipeline.yaml` on it in this process, exactly as
   `clara-rt run examples/ct-lung-seg/pipeline.yaml --input .demo/input --output .demo/output`
   would: DICOM series -> HU threshold lung mask -> largest components -> DICOM SEG, NIfTI, PNG
   overlays and JSON volumes.
3. Prints what it did and checks the lung volumes against the phantom's geometry.
"""

from __future__ import annotations

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


def main() -> int:
    inputs, outputs = WORK / "input", WORK / "output"
    if not any(inputs.glob("*.dcm")):
        files = write_chest_series(inputs)
        print(f"wrote a chest CT phantom: {len(files)} DICOM slices in {inputs}")
    else:
        print(f"using the DICOM series in {inputs}")
    shutil.rmtree(outputs, ignore_errors=True)
    print(f"$ clara-rt run {PIPELINE.relative_to(ROOT)} --input {inputs.relative_to(ROOT)} "
          f"--output {outputs.relative_to(ROOT)}")
    status = clara_rt(["run", str(PIPELINE), "--input", str(inputs), "--output", str(outputs)])
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


if __name__ == "__main__":
    raise SystemExit(main())

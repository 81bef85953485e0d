"""The MONAI Deploy App SDK 0.5.1 side of the ``e2e`` scenario: its venv and its app.

:func:`monai_venv` creates (once, cached under ``~/.cache/clara-rt-bench``) a virtual environment
with ``monai-deploy-app-sdk==0.5.1``. The SDK's ``monai.deploy.operators`` imports its bundle
operator, which needs ``monai`` (and so torch): torch 2.13.0 is installed first and pinned on
every later ``pip install`` so that ``monai`` cannot pull another (CUDA) build; setuptools is
kept below 81 because the SDK still imports ``pkg_resources``; scipy is there for the shared
threshold segmentation. Progress goes to stderr.

:data:`APP_SOURCE` is the MONAI Deploy application, run by that venv's interpreter as a script:
``DICOMDataLoaderOperator -> DICOMSeriesSelectorOperator -> DICOMSeriesToVolumeOperator ->
LungThresholdOperator -> DICOMSegmentationWriterOperator``. ``LungThresholdOperator`` calls
clara-rt's own ``segment_lungs`` + ``keep_largest(count=2)`` (the repository is put on
``sys.path``; only those NumPy/SciPy functions are used, not the clara-rt runtime), so both
systems run the very same segmentation and the comparison is the framework around it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

from clara_rt.bench._record import Progress, _quiet

__all__ = ["APP_SOURCE", "MONAI_SDK", "monai_venv"]

MONAI_SDK = "0.5.1"
_CACHE = Path(os.environ.get("CLARA_RT_BENCH_CACHE", "~/.cache/clara-rt-bench")).expanduser()
_STEPS = (
    # torch first: pip takes the CPU build on this machine's disk for an exact pin; every later
    # step repeats the pin so that nothing replaces it with a multi-GB CUDA build.
    ["torch==2.13.0"],
    ["torch==2.13.0", "monai==1.6.1", "setuptools>=77.0.3,<81", "scipy"],
    ["torch==2.13.0", "setuptools>=77.0.3,<81", f"monai-deploy-app-sdk=={MONAI_SDK}",
     "highdicom", "pydicom"],
)
_CHECK = ("import warnings; warnings.simplefilter('ignore'); "
          "from monai.deploy.operators import DICOMDataLoaderOperator, "
          "DICOMSeriesSelectorOperator, DICOMSeriesToVolumeOperator, "
          "DICOMSegmentationWriterOperator; import scipy.ndimage, highdicom")


def monai_venv(progress: Progress | None = None) -> Path:
    """Return the Python interpreter of the cached MONAI Deploy venv, creating it if needed.

    The venv lives in ``~/.cache/clara-rt-bench/monai-deploy-0.5.1`` (``$CLARA_RT_BENCH_CACHE``
    overrides the parent folder); a ``complete`` file marks a finished, import-checked one.
    About 1 GB and a minute on a machine with torch 2.13.0 (CPU) on disk.

    Raises:
        RuntimeError: a ``pip install`` failed or the SDK's operators do not import.
    """
    say = progress or _quiet
    root = _CACHE / f"monai-deploy-{MONAI_SDK}"
    python = root / "bin" / "python"
    if (root / "complete").exists() and python.exists():
        return python
    say(f"e2e: creating the MONAI Deploy {MONAI_SDK} venv in {root} (once)")
    venv.create(root, clear=True, with_pip=True)
    for packages in _STEPS:
        say(f"e2e: pip install {' '.join(packages)}")
        done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                               "-q", *packages], stdout=sys.stderr, stderr=sys.stderr,
                              check=False)
        if done.returncode:
            raise RuntimeError(f"pip install {' '.join(packages)} failed in {root} "
                               f"(exit {done.returncode})")
    check = subprocess.run([str(python), "-c", _CHECK], capture_output=True, text=True,
                           check=False)
    if check.returncode:
        raise RuntimeError(f"the MONAI Deploy operators do not import in {root}:\n"
                           f"{check.stderr[-2000:]}")
    (root / "complete").write_text("ok\n")
    return python


APP_SOURCE = r'''
"""MONAI Deploy App SDK 0.5.1 ct-lung-seg: DICOM series -> HU threshold lungs -> DICOM SEG.

argv: REPO SERIES OUT_ROOT RUNS. Runs the app RUNS times in this process (output OUT_ROOT/run<i>)
and prints one JSON line: import_s, clara_import_s, run_s (list), vm_hwm_kb.
"""
import json
import sys
import time
import types
import warnings
from pathlib import Path

t_start = time.perf_counter()
repo, series, out_root, runs = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
sys.argv = sys.argv[:1]  # Application() parses sys.argv
warnings.simplefilter("ignore")

# clara-rt's segmentation functions (NumPy + SciPy), imported from the checkout: operators/ is
# installed as clara_rt.operators, so map it by hand.
t0 = time.perf_counter()
sys.path.insert(0, repo)
import clara_rt  # noqa: E402

_ops = types.ModuleType("clara_rt.operators")
_ops.__path__ = [str(Path(repo) / "operators")]
sys.modules["clara_rt.operators"] = _ops
from clara_rt.operators.postprocess.components import keep_largest  # noqa: E402
from clara_rt.operators.segment.lung_threshold import segment_lungs  # noqa: E402
clara_import_s = time.perf_counter() - t0

import numpy as np  # noqa: E402
import monai.deploy.core as md  # noqa: E402
from monai.deploy.core import (Application, ExecutionContext, Image, InputContext,  # noqa: E402
                               IOType, Operator, OutputContext)
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator  # noqa
from monai.deploy.operators.dicom_seg_writer_operator import (  # noqa: E402
    DICOMSegmentationWriterOperator, SegmentDescription)
from monai.deploy.operators.dicom_series_selector_operator import (  # noqa: E402
    DICOMSeriesSelectorOperator)
from monai.deploy.operators.dicom_series_to_volume_operator import (  # noqa: E402
    DICOMSeriesToVolumeOperator)
from pydicom.sr.codedict import codes  # noqa: E402


@md.input("image", Image, IOType.IN_MEMORY)
@md.output("seg_image", Image, IOType.IN_MEMORY)
class LungThresholdOperator(Operator):
    """clara-rt's LungThresholdOp + KeepLargestOp(count=2), as one MONAI Deploy operator."""

    def compute(self, op_input: InputContext, op_output: OutputContext,
                context: ExecutionContext) -> None:
        image = op_input.get("image")
        seg = segment_lungs(image.asnumpy())  # the SDK's volume is (slices, rows, columns)
        mask = keep_largest((seg.labels > 0).view(np.uint8), 2)
        op_output.set(Image(mask, image.metadata()), "seg_image")


class LungSegApp(Application):
    def compose(self) -> None:
        loader = DICOMDataLoaderOperator()
        selector = DICOMSeriesSelectorOperator(rules='{"selections": [{"name": "CT", '
                                               '"conditions": {"Modality": "(?i)CT"}}]}')
        to_volume = DICOMSeriesToVolumeOperator()
        lungs = LungThresholdOperator()
        writer = DICOMSegmentationWriterOperator(segment_descriptions=[SegmentDescription(
            segment_label="Lung", segmented_property_category=codes.SCT.Organ,
            segmented_property_type=codes.SCT.Lung, algorithm_name="lung threshold",
            algorithm_family=codes.DCM.ArtificialIntelligence, algorithm_version="0.1")])
        self.add_flow(loader, selector, {"dicom_study_list": "dicom_study_list"})
        self.add_flow(selector, to_volume,
                      {"study_selected_series_list": "study_selected_series_list"})
        self.add_flow(to_volume, lungs, {"image": "image"})
        self.add_flow(lungs, writer, {"seg_image": "seg_image"})
        self.add_flow(selector, writer,
                      {"study_selected_series_list": "study_selected_series_list"})


import_s = time.perf_counter() - t_start
run_s = []
for i in range(runs):
    t0 = time.perf_counter()
    app = LungSegApp(do_run=False)
    app.run(input=series, output=str(out_root / f"run{i}"), workdir=str(out_root / f"work{i}"),
            log_level="ERROR")
    run_s.append(time.perf_counter() - t0)
with open("/proc/self/status") as f:
    hwm = int(next(line.split()[1] for line in f if line.startswith("VmHWM")))
print(json.dumps({"import_s": import_s, "clara_import_s": clara_import_s, "run_s": run_s,
                  "vm_hwm_kb": hwm}))
'''
"""The MONAI Deploy application (a script for the venv of :func:`monai_venv`)."""

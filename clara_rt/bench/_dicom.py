"""The ``dicom`` scenario: load a CT series with clara-rt, dcm2niix and a plain pydicom loop.

The series (``slices`` x 512 x 512, int16, Explicit VR Little Endian, shuffled file names) is
written once with pydicom into a cache folder under the system temp dir keyed by its size, and
reused by later runs. Each round times, in turn:

* ``clara-rt load_series``: :func:`clara_rt.operators.io.load_series` (parallel header scan,
  pixel bytes read straight into one preallocated volume, rescaled to int16);
* ``clara-rt convert (.nii)``: :func:`convert_series` in this process, what ``clara-rt convert``
  runs (the same scan; this series takes the fast path: stored values copied into an
  uncompressed ``.nii``, ``scl_inter`` -1024, as dcm2niix writes it);
* ``clara-rt convert (process)``: ``python -m clara_rt.cli convert`` as a new process, as a user
  runs it (interpreter start, imports, load, write; bytecode cached, as an installed package has
  it; no NumPy imported): the fair comparison with dcm2niix;
* ``dcm2niix -z n``: the converter as a subprocess, writing an uncompressed ``.nii``;
* ``python + import numpy (process)``: the floor of any Python tool built on NumPy;
* ``pydicom loop``: ``dcmread`` every file, sort by position along the normal, ``np.stack`` the
  ``pixel_array``\\ s and rescale: what a script would do.

Every system writes into an empty place: outputs of the previous round are deleted before the
clock starts (deleting a 150 MiB file that was just written costs the kernel as much as writing
it). Best and median of ``repeat`` rounds per system; processes also report their CPU time
(user + system, from ``getrusage``), steadier than wall time on a shared machine. Ratios are
baseline time / clara-rt time (above 1: clara-rt faster); for the processes also the median of
the ratios within each round, where both ran under the same neighbours. Files are in the page
cache for every system (one warm-up each, untimed).
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.bench._record import BenchRecord, Progress, Target, _quiet, _ratio, machine_info
from clara_rt.bench._workload import checkout_env

__all__ = ["dicom", "pydicom_loop"]

_LAYOUT = 1  # bump when the generated files change, so stale caches are not reused


def dicom(slices: int = 300, repeat: int = 3, *, rows: int = 512, cols: int = 512,
          progress: Progress | None = None) -> BenchRecord:
    """Time loading a ``slices`` x ``rows`` x ``cols`` CT series several ways.

    Args:
        slices: Files in the series.
        repeat: Rounds; the systems alternate within a round.
        rows: Rows per slice.
        cols: Columns per slice.
        progress: Called with one-line progress messages.
    """
    say = progress or _quiet
    folder = _cached_series(slices, rows, cols, say)
    from clara_rt.operators import io
    exe = shutil.which("dcm2niix")
    with tempfile.TemporaryDirectory(prefix="clara-rt-bench-d2n-") as tmp, \
            tempfile.TemporaryDirectory(prefix="clara-rt-bench-pyc-") as pyc:
        out = Path(tmp)
        systems = _systems(io, folder, out, exe, _process_env(Path(pyc)))
        times, cpu = _rounds(systems, repeat, say, lambda: _clear(out))
    ours = io.load_series(folder)[0]
    same = bool(np.array_equal(ours, pydicom_loop(folder)))
    mb = ours.nbytes / 2**20
    figures = {name: {"best_s": min(t), "median_s": float(np.median(t)),
                      "MiB_per_s": mb / min(t)} for name, t in times.items()}
    for name, c in cpu.items():
        figures[name]["cpu_median_s"] = float(np.median(c))
    paired = _paired(times)
    return BenchRecord(
        scenario="dicom",
        title=f"load a {slices}x{rows}x{cols} int16 CT series ({mb:.0f} MiB, {slices} files, "
              f"page cache warm), best and median of {repeat}",
        machine=machine_info(),
        params={"slices": slices, "rows": rows, "cols": cols, "repeat": repeat,
                "folder": str(folder), "dcm2niix": exe},
        figures=figures, ratios={**_ratios(figures), **paired},
        targets=tuple(_targets(figures, paired)),
        notes=("dcm2niix writes a .nii to an empty temp folder, as does 'clara-rt convert' "
               "(convert_series in this process; '(process)': the CLI as a new process, imports "
               "included, bytecode cached; both store the int16 values with scl_inter -1024); "
               "'load_series' and the pydicom loop stop at the array in memory. "
               f"clara-rt's volume equals the pydicom loop's: {same}."
               + ("" if exe else " dcm2niix not found: not measured.")))


def _process_env(pycache: Path) -> dict[str, str]:
    """The Python processes' environment: this checkout, bytecode cached under ``pycache``.

    An installed package has its ``.pyc`` files (pip compiles them); a checkout run with
    ``PYTHONDONTWRITEBYTECODE`` would compile every clara-rt module at every start (10 ms here).
    The untimed warm-up writes the cache, for NumPy's floor process too.
    """
    env = checkout_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _systems(io: Any, folder: Path, out: Path, exe: str | None,
             env: dict[str, str]) -> dict[str, _System]:
    systems: dict[str, _System] = {
        "clara-rt load_series": lambda: io.load_series(folder)[0],
        "clara-rt convert (.nii)": lambda: io.convert_series(folder, out / "clara.nii"),
        "clara-rt convert (process)": _Process(
            [sys.executable, "-m", "clara_rt.cli", "convert", str(folder),
             str(out / "process.nii")], env),
    }
    if exe:
        systems["dcm2niix -z n"] = _Process(
            [exe, "-z", "n", "-b", "n", "-o", str(out), "-f", "bench", str(folder)], env)
    systems["python + import numpy (process)"] = _Process(
        [sys.executable, "-c", "import numpy"], env)
    systems["pydicom loop"] = lambda: pydicom_loop(folder)
    return systems


def pydicom_loop(folder: Path) -> np.ndarray:
    """Load a series the plain way: full ``dcmread`` of every file, sort, stack, rescale.

    Slices are sorted by position along the normal (as the loader does), and the result is
    int16 when slope and intercept are integral, like :func:`load_series`'s.
    """
    import pydicom

    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient,
                                                                  dtype=float))))
    volume = np.stack([ds.pixel_array for ds in datasets])
    slope = float(datasets[0].get("RescaleSlope", 1))
    intercept = float(datasets[0].get("RescaleIntercept", 0))
    if slope.is_integer() and intercept.is_integer():
        return (volume.astype(np.int32) * int(slope) + int(intercept)).astype(np.int16)
    return (volume * slope + intercept).astype(np.float32)


# --- private ------------------------------------------------------------------------------


class _Process:
    """A command run as a new process; remembers the CPU time (user + system) of its last run."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command, self.env, self.cpu_s = command, env, 0.0

    def __call__(self) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(self.command, check=True, env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


_System = Callable[[], Any]


def _rounds(systems: dict[str, _System], repeat: int, say: Progress,
            clear: Callable[[], None]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    for name, run in systems.items():
        say(f"dicom: warm-up {name}")
        clear()
        run()
    times: dict[str, list[float]] = {name: [] for name in systems}
    cpu: dict[str, list[float]] = {n: [] for n, run in systems.items() if isinstance(run, _Process)}
    for r in range(repeat):
        for name, run in systems.items():
            clear()  # every system writes into an empty place, untimed
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
            if isinstance(run, _Process):
                cpu[name].append(run.cpu_s)
            say(f"dicom: round {r + 1}/{repeat}: {name} {times[name][-1] * 1e3:.0f} ms")
    return times, cpu


def _clear(out: Path) -> None:
    for old in out.iterdir():
        old.unlink()


def _paired(times: dict[str, list[float]]) -> dict[str, float]:
    """Median over rounds of dcm2niix's time / clara-rt's process time in the same round."""
    if "dcm2niix -z n" not in times:
        return {}
    pairs = zip(times["dcm2niix -z n"], times["clara-rt convert (process)"], strict=True)
    return {"dcm2niix / clara-rt convert (process), median of rounds":
            float(np.median([_ratio(theirs, ours) for theirs, ours in pairs]))}


def _ratios(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    ours = figures["clara-rt load_series"]["best_s"]
    ratios = {f"{name} / clara-rt load": _ratio(fig["best_s"], ours)
              for name, fig in figures.items()
              if not name.startswith("clara-rt") and not name.endswith("(process)")}
    if "dcm2niix -z n" in figures:  # both read the series and write an uncompressed .nii
        ratios["dcm2niix / clara-rt convert (.nii)"] = _ratio(
            figures["dcm2niix -z n"]["best_s"], figures["clara-rt convert (.nii)"]["best_s"])
        ratios["dcm2niix / clara-rt convert (process)"] = _ratio(
            figures["dcm2niix -z n"]["best_s"], figures["clara-rt convert (process)"]["best_s"])
    return ratios


def _targets(figures: dict[str, dict[str, float]], paired: dict[str, float]) -> list[Target]:
    ours = figures["clara-rt load_series"]["best_s"]
    targets = []
    if "dcm2niix -z n" in figures:
        targets.append(Target("dcm2niix / clara-rt load", _ratio(
            figures["dcm2niix -z n"]["best_s"], ours), 1.0, "x", True))
        process = paired["dcm2niix / clara-rt convert (process), median of rounds"]
        targets.append(Target("dcm2niix / clara-rt convert (process), median of rounds",
                              process, 1.0, "x", True))
        targets.append(Target("stretch: clara-rt convert (process) <= 0.6x dcm2niix", process,
                              1 / 0.6, "x", True))
    targets.append(Target("pydicom loop / clara-rt load", _ratio(
        figures["pydicom loop"]["best_s"], ours), 2.0, "x", True))
    return targets


def _cached_series(slices: int, rows: int, cols: int, say: Progress) -> Path:
    """Return the cached series folder, writing it first when missing or incomplete."""
    root = Path(tempfile.gettempdir()) / f"clara-rt-bench-dicom-v{_LAYOUT}-{slices}x{rows}x{cols}"
    done = root / "complete"
    if done.exists():
        return root / "series"
    say(f"dicom: writing {slices} slices of {rows}x{cols} into {root} (once)")
    shutil.rmtree(root, ignore_errors=True)
    (root / "series").mkdir(parents=True)
    _write_series(root / "series", slices, rows, cols)
    done.write_text(f"{slices}\n")
    return root / "series"


def _write_series(folder: Path, slices: int, rows: int, cols: int) -> None:
    """Write an axial CT phantom: a body ellipse with noise, HU = stored - 1024."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    y, x = np.mgrid[0:rows, 0:cols]
    body = ((y - rows / 2) / (0.45 * rows)) ** 2 + ((x - cols / 2) / (0.42 * cols)) ** 2 <= 1
    rng = np.random.default_rng(0)
    base = Dataset()
    base.SOPClassUID, base.Modality, base.SeriesDescription = CTImageStorage, "CT", "bench"
    base.PatientID, base.PatientName, base.StudyDate = "BENCH", "Bench^Phantom", "20240101"
    base.StudyInstanceUID, base.SeriesInstanceUID = generate_uid(), generate_uid()
    base.FrameOfReferenceUID = generate_uid()
    base.ImageOrientationPatient, base.PixelSpacing = [1, 0, 0, 0, 1, 0], [0.7, 0.7]
    base.SliceThickness, base.Rows, base.Columns = 1.25, rows, cols
    base.SamplesPerPixel, base.PhotometricInterpretation = 1, "MONOCHROME2"
    base.BitsAllocated, base.BitsStored, base.HighBit, base.PixelRepresentation = 16, 16, 15, 1
    base.RescaleSlope, base.RescaleIntercept = 1, -1024
    for k, name in enumerate(rng.permutation(slices)):
        hu = np.where(body, 40, -1000) + rng.integers(-20, 21, (rows, cols))
        ds = base.copy()
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), k + 1
        ds.ImagePositionPatient = [-180.0, -170.0, -100.0 + 1.25 * k]
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = (hu + 1024).astype("<i2").tobytes()
        pydicom.dcmwrite(folder / f"{name:06d}.dcm", ds, enforce_file_format=True)

"""``clara-rt convert DICOM_DIR OUT.nii[.gz]``: one DICOM series -> NIfTI, like dcm2niix.

Runs :func:`clara_rt.operators.io.convert_series`: the series :func:`load_series` would load
(the rules ``--modality``, ``--description``, ``--series-uid`` and ``--select`` pick one when the
folder holds several), written as :func:`write_nifti` writes it (temporary name, then rename:
never a partial file), but streamed slice by slice into the file as it is read. The process
imports only what that needs: no runtime, server, pydicom or nibabel for native syntaxes, and no
NumPy at all for a plain 16-bit series (stored values copied, the rescale in ``scl_slope`` /
``scl_inter``, as dcm2niix writes it); the garbage collector is paused and NumPy's BLAS, should
it be imported, runs on one thread (a new process would otherwise start BLAS threads that only
spin). Prints one summary line on stdout (or a JSON record with
``--json``); the loader's warnings (skipped files, missing slices, irregular spacing) go to
stderr.

Exit status: 0 written; 1 the series could not be read or written; 2 bad arguments: no such
folder, no DICOM series in it (or none matching the rules), a bad output name, or an existing
output without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["add", "run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``convert``."""
    p = verbs.add_parser(
        "convert", help="convert a DICOM series to NIfTI (like dcm2niix)",
        description="Load one DICOM series from a folder (searched recursively; one file per "
                    "slice, or multi-frame files such as Enhanced CT/MR) and write it as "
                    "NIfTI-1 (.nii or .nii.gz). Slices are sorted along the slice normal; "
                    "rescale slope/intercept are applied (int16 when integral, else float32).")
    p.add_argument("dicom_dir", type=Path, metavar="DICOM_DIR", help="folder of DICOM files")
    p.add_argument("output", type=Path, metavar="OUT.nii[.gz]", help="NIfTI file to write")
    p.add_argument("--modality", metavar="M", help="only series of this modality (CT, MR...)")
    p.add_argument("--description", metavar="REGEX",
                   help="only series whose SeriesDescription matches (case-insensitive)")
    p.add_argument("--series-uid", metavar="UID", help="only this SeriesInstanceUID")
    p.add_argument("--select", choices=("largest", "first", "only"), default="largest",
                   help="which matching series: most slices (default), lowest SeriesNumber, "
                        "or fail unless exactly one matches")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--json", action="store_true", help="print a JSON record on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert ``args.dicom_dir`` to ``args.output``; return the exit status."""
    out: Path = args.output
    problem = _usage_problem(args.dicom_dir, out, args.overwrite)
    if problem:
        return _fail(problem, EXIT_USAGE)
    with _lean():
        return _convert(args, out)


def _convert(args: argparse.Namespace, out: Path) -> int:
    from clara_rt.operators import io
    from clara_rt.operators.io._dicom_read import quiet_logger

    quiet_logger()  # the warnings are printed below with the summary, not twice
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        done = io.convert_series(args.dicom_dir, out, modality=args.modality,
                                 description=args.description, series_uid=args.series_uid,
                                 select=args.select)
    except (io.NoSeriesError, ValueError) as exc:  # nothing to convert, or a bad regex
        return _fail(str(exc), EXIT_USAGE)
    except io.DicomSeriesError as exc:  # a series that cannot be stacked or decoded
        return _fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc}", EXIT_FAILED)
    for warning in done.warnings:
        print(f"clara-rt: warning: {warning}", file=sys.stderr)
    record = _record(done)
    if args.json:
        import json  # only here: 1 ms of start-up

        print(json.dumps(record), flush=True)
    else:
        k, j, i = done.shape
        scaled = ("" if (done.scl_slope, done.scl_inter) == (1.0, 0.0) else
                  f" (values: stored x {done.scl_slope:g} + {done.scl_inter:g})")
        print(f"{out}: {i}x{j}x{k} {done.dtype}{scaled}, spacing {done.spacing[2]:g} x "
              f"{done.spacing[1]:g} x {done.spacing[0]:g} mm, series "
              f"{record['series_uid']} ({record['modality']} {record['description']!r}), "
              f"{len(done.warnings)} warning(s)", flush=True)
    return EXIT_OK


# --- private ------------------------------------------------------------------------------


@contextlib.contextmanager
def _lean() -> Iterator[None]:
    """Pause the garbage collector; OpenBLAS on one thread should NumPy be imported.

    A conversion allocates few objects, so collections during its imports are wasted work. The
    fast path imports no NumPy; the NumPy path's only linear algebra is on 3x3 matrices, and
    OpenBLAS threads started at import spin for a while. The environment variable is set only
    for the conversion, so nothing after it sees it.
    """
    enabled = gc.isenabled()
    gc.disable()
    blas = "numpy" not in sys.modules and "OPENBLAS_NUM_THREADS" not in os.environ
    if blas:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if blas:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        if enabled:
            gc.enable()


def _usage_problem(folder: Path, out: Path, overwrite: bool) -> str | None:
    if not folder.is_dir():
        return f"{folder}: no such folder"
    if not out.name.endswith((".nii", ".nii.gz")) or out.name in (".nii", ".nii.gz"):
        return f"{out}: the output name must end in .nii or .nii.gz"
    if out.exists() and not overwrite:
        return f"{out} exists; pass --overwrite to replace it"
    return None


def _record(done: Any) -> dict[str, Any]:
    source = done.source
    return {
        "output": str(done.path),
        "shape_kji": list(done.shape),
        "dtype": done.dtype,
        "scl_slope": done.scl_slope,
        "scl_inter": done.scl_inter,
        "spacing_kji": list(done.spacing),
        "origin_lps": list(done.origin),
        "affine_ras": done.affine_ras,
        "series_uid": source.get("SeriesInstanceUID"),
        "modality": source.get("Modality"),
        "description": source.get("SeriesDescription") or "",
        "files": len(set(done.files)),  # a multi-frame file gives several slices
        "warnings": list(done.warnings),
    }


def _fail(message: str, status: int) -> int:
    print(f"clara-rt convert: error: {message}", file=sys.stderr)
    return status

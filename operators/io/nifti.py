"""NIfTI-1 in and out: :func:`write_nifti`, :func:`read_nifti` (nibabel) and their operators.

Arrays are ``[k, j, i]`` (:mod:`clara_rt.operators.volume`); NIfTI stores ``[i, j, k]`` with a RAS
affine, so writing transposes (a view, no copy: the C-ordered array is written as the Fortran
order NIfTI wants) and uses ``meta.affine_ras`` as both qform and sform (code 1, scanner).
Writes go to a temporary name in the target folder and are renamed into place, so a failed or
interrupted write never leaves a partial file under the requested name.

Reading applies the header's scaling with the DICOM loader's dtype rule: integers stay integers
(``int16`` when an integral ``scl_slope``/``scl_inter`` keeps them in range, as dcm2niix writes
CT), anything else becomes ``float32``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs
from clara_rt.arrays import to_device, to_host
from clara_rt.operators.io._nifti1 import write_nifti1
from clara_rt.operators.volume import VolumeMeta

__all__ = ["NiftiReaderOp", "NiftiWriterOp", "read_nifti", "write_nifti"]

_SUFFIXES = (".nii.gz", ".nii")


def write_nifti(volume: Any, meta: VolumeMeta | None, path: str | os.PathLike[str]) -> Path:
    """Write a ``[k, j, i]`` volume as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically.

    Args:
        volume: 3-D NumPy or CuPy array (copied to the host if on the GPU); bool is written
            as uint8.
        meta: Its geometry; ``None`` writes 1 mm voxels at the origin.
        path: Target file; its folder must exist. An existing file is replaced.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        ValueError: Not a 3-D volume, or a suffix other than ``.nii`` / ``.nii.gz``.
    """
    target = Path(path)
    suffix = _suffix(target)
    data = _host(volume)
    if data.ndim != 3:
        raise ValueError(f"write_nifti needs a 3-D [k, j, i] volume, got shape {data.shape}")
    if data.dtype == np.bool_:
        data = data.view(np.uint8)
    affine = (meta or VolumeMeta(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))).affine_ras
    stem = target.name[: -len(suffix)]
    temp = target.with_name(f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")
    try:
        write_nifti1(data, affine, temp)  # what nibabel writes, without importing it (0.3 s)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def read_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, VolumeMeta]:
    """Read a NIfTI file as a ``[k, j, i]`` volume and its :class:`VolumeMeta`.

    Args:
        path: A ``.nii`` / ``.nii.gz`` file, or a folder holding exactly one.

    Returns:
        ``(volume, meta)``; 2-D images get one slice, a trailing 4th axis of size 1 is dropped.

    Raises:
        ValueError: No single NIfTI file in the folder, or more than 3 non-trivial dimensions.
    """
    import nibabel

    source = _single_file(Path(path))
    image: Any = nibabel.load(source)
    data = _scaled(image.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.ndim != 3:
        raise ValueError(f"{source}: expected a 3-D image, got shape {data.shape}")
    volume = np.ascontiguousarray(data.transpose(2, 1, 0))
    meta = VolumeMeta.from_affine_ras(image.affine, source={"NiftiFile": str(source)},
                                      files=(str(source),))
    return volume, meta


class NiftiWriterOp(Operator):
    """Write ``volume`` (+ ``meta``) as ``<folder>/<filename>`` and emit the file's path.

    The folder is, in this order: the ``folder`` input when given, the ``folder`` parameter,
    or ``<job workspace>/<operator name>``.

    Ports:
        in ``volume``: array, 3-D ``[k, j, i]``, any dtype, host or GPU.
        in ``meta``: object, optional -- :class:`VolumeMeta` (1 mm voxels when missing).
        in ``folder``: path, optional -- where to write.
        out ``path``: path -- the written file.

    Args:
        name: Operator name in its pipeline.
        filename: File name, ending in ``.nii.gz`` or ``.nii``.
        folder: Default folder when the ``folder`` input is not given.
    """

    def __init__(self, name: str | None = None, /, *, filename: str = "volume.nii.gz",
                 folder: str | os.PathLike[str] | None = None) -> None:
        super().__init__(name)
        _suffix(Path(filename))
        self.filename, self.folder = filename, folder

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``volume``, ``meta``, ``folder`` in, ``path`` out."""
        spec.input("volume", shape=(-1, -1, -1))
        spec.input("meta", kind="object", optional=True, description="VolumeMeta")
        spec.input("folder", kind="path", optional=True, description="output folder")
        spec.output("path", kind="path", format="nifti", description="the written file")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Write the file (atomically) and emit its path."""
        folder = inputs["folder"] or self.folder
        if folder is None:
            if context.workspace is None:
                raise RuntimeError(f"operator '{self.name}' has no output folder: give the "
                                   "'folder' input or parameter, or submit with a workspace")
            folder = Path(context.workspace) / self.name
        Path(folder).mkdir(parents=True, exist_ok=True)
        outputs.emit("path", write_nifti(inputs["volume"], inputs["meta"],
                                         Path(folder) / self.filename))


class NiftiReaderOp(Operator):
    """Read a NIfTI file (or the one in a folder) as ``volume`` + ``meta``.

    Ports:
        in ``path``: path -- a ``.nii``/``.nii.gz`` file or a folder holding exactly one.
        out ``volume``: array ``[k, j, i]`` (int16 / stored integer type, or float32).
        out ``meta``: object -- :class:`VolumeMeta` from the file's affine.

    Args:
        name: Operator name in its pipeline.
        device: ``"cpu"`` or ``"cuda"`` (the volume is copied to the GPU once, with CuPy); a
            pipeline's ``device`` sets it.
    """

    def __init__(self, name: str | None = None, /, *, device: str = "cpu") -> None:
        super().__init__(name)
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``path`` in, ``volume`` + ``meta`` out."""
        spec.input("path", kind="path", format="nifti")
        spec.output("volume", shape=(-1, -1, -1), device=self.device)
        spec.output("meta", kind="object", description="VolumeMeta")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Read the file."""
        volume, meta = read_nifti(inputs["path"])
        outputs.emit("volume", to_device(volume) if self.device == "cuda" else volume)
        outputs.emit("meta", meta)


# --- private ------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    for suffix in _SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return suffix
    raise ValueError(f"{path}: a NIfTI file name must end in .nii.gz or .nii")


def _host(volume: Any) -> np.ndarray:
    if isinstance(volume, np.ndarray):
        return volume
    return to_host(volume)  # type: ignore[no-any-return]


def _single_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    found = sorted(p for p in path.iterdir() if p.name.endswith(_SUFFIXES))
    if len(found) != 1:
        names = ", ".join(p.name for p in found[:5]) or "none"
        raise ValueError(f"expected one NIfTI file in {path}, found {len(found)} ({names})")
    return found[0]


def _scaled(proxy: Any) -> np.ndarray:
    """Apply scl_slope/scl_inter: int16 when integral and in range, else float32."""
    raw = np.asarray(proxy.get_unscaled())
    slope, inter = float(proxy.slope), float(proxy.inter)
    if slope == 1.0 and inter == 0.0:
        return raw
    if raw.dtype.kind in "iu" and slope.is_integer() and inter.is_integer() and raw.size:
        ends = (float(raw.min()) * slope + inter, float(raw.max()) * slope + inter)
        info = np.iinfo(np.int16)
        if info.min <= min(ends) and max(ends) <= info.max:
            out = raw.astype(np.int32)
            out *= int(slope)
            out += int(inter)
            return out.astype(np.int16)
    out_f = raw.astype(np.float32)
    out_f *= np.float32(slope)
    out_f += np.float32(inter)
    return out_f

"""Image2DReaderOp and :func:`read_image2d`: one 2-D image (DICOM or PNG) -> float32 ``[H, W]``.

For X-ray style inputs: a DX/CR/Secondary Capture DICOM file (pydicom; RescaleSlope/Intercept
applied, MONOCHROME1 inverted so that brighter is always higher) or a PNG (Pillow; colour is
converted to grey). The folder is searched non-recursively; it must hold exactly one image that
matches ``pattern``, so a job never classifies a file it was not meant to.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs
from clara_rt.arrays import to_device

__all__ = ["Image2DReaderOp", "find_image", "read_image2d"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DICOM_TAGS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID",
               "PatientID", "Modality")


class Image2DReaderOp(Operator):
    """Read the one 2-D image of a folder (or a file) as float32 ``[H, W]`` and a meta dict.

    Ports:
        in ``folder``: path -- a folder holding one image, or the image file itself.
        out ``image``: float32 ``("Y", "X")``.
        out ``meta``: object -- ``{"path", "format", "shape", "spacing"}`` plus, for DICOM, the
            UIDs, PatientID and Modality. ``spacing`` is ``[row, column]`` mm or ``None``.

    Args:
        name: Operator name in its pipeline.
        pattern: Glob the file name must match (``"*.png"``, ``"*.dcm"``); default: any file
            that is a PNG or a DICOM file.
        device: ``"cpu"`` or ``"cuda"`` (the image is copied to the GPU once, with CuPy); a
            pipeline's ``device`` sets it.
    """

    def __init__(self, name: str | None = None, /, *, pattern: str | None = None,
                 device: str = "cpu") -> None:
        super().__init__(name)
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.pattern, self.device = pattern, device

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``folder`` in, ``image`` + ``meta`` out."""
        spec.input("folder", kind="path", description="folder holding one 2-D image")
        spec.output("image", dtype="float32", shape=("Y", "X"), device=self.device)
        spec.output("meta", kind="object", description="source file and geometry")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Find the image and read it; nothing in the folder is changed."""
        image, meta = read_image2d(find_image(inputs["folder"], self.pattern))
        outputs.emit("image", to_device(image) if self.device == "cuda" else image)
        outputs.emit("meta", meta)


def find_image(where: str | os.PathLike[str], pattern: str | None = None) -> Path:
    """Return the one PNG or DICOM file in folder ``where`` (or ``where`` if it is a file).

    Raises:
        FileNotFoundError: ``where`` does not exist, or no image in it matches.
        ValueError: More than one image matches (they are listed).
    """
    path = Path(where)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and (pattern is None or fnmatch.fnmatch(p.name, pattern))
                   and _format(p) is not None)
    what = f"matching {pattern!r} " if pattern else ""
    if not found:
        raise FileNotFoundError(f"no PNG or DICOM image {what}in {path}")
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:5]) + (", ..." if len(found) > 5 else "")
        raise ValueError(f"{len(found)} images {what}in {path} ({names}); keep one per job or "
                         "choose one with the operator's pattern argument")
    return found[0]


def read_image2d(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a 2-D PNG or DICOM image as float32 ``[H, W]`` and its meta (see the operator).

    Raises:
        ValueError: Not a PNG or DICOM file, or not a single grey 2-D image (colour DICOM,
            several frames).
    """
    source = Path(path)
    fmt = _format(source)
    if fmt == "png":
        image, meta = _read_png(source)
    elif fmt == "dicom":
        image, meta = _read_dicom(source)
    else:
        raise ValueError(f"{source} is neither a PNG nor a DICOM file")
    return image, {"path": str(source), "format": fmt, "shape": list(image.shape), **meta}


def _format(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return None
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head[128:132] == b"DICM":
        return "dicom"
    return None


def _read_png(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image

    with Image.open(path) as img:
        grey = img if img.mode in ("L", "I", "I;16", "I;16B", "F") else img.convert("L")
        image = np.asarray(grey, dtype=np.float32)  # colour or palette: luminance
    return image, {"spacing": None}


def _read_dicom(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1 or frames != 1:
        raise ValueError(f"{path}: expected one grey frame, got {frames} frame(s) of "
                         f"{getattr(ds, 'SamplesPerPixel', 1)} sample(s) per pixel")
    pixels = ds.pixel_array
    image = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        image = image.max() + image.min() - image  # white is low: flip so brighter is higher
    spacing = getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None)
    meta: dict[str, Any] = {"spacing": None if spacing is None else [float(s) for s in spacing]}
    meta.update({tag: str(getattr(ds, tag)) for tag in _DICOM_TAGS if tag in ds})
    return image, meta

"""A tiny ONNX image classifier built at test time (no downloaded weights), and inputs for it.

:func:`centre_classifier` writes ``Flatten -> Gemm -> Softmax`` on a ``[1, 1, 32, 32]`` float32
input with fixed weights: the class-1 score is ``GAIN * (mean of the central 16 x 16 pixels -
mean of the 8-pixel border - MARGIN)``, the class-0 score is 0. An image normalised to [0, 1]
with a bright centre on a dark surround is class 1 ("abnormal"); a dark image with no central
structure is class 0 ("normal"), with a probability well below 1 so that comparisons mean
something.

:func:`write_xray_dicom` / :func:`write_xray_png` write 64 x 64 test images (a Digital X-Ray
DICOM file through pydicom, a 16-bit PNG through Pillow). Run as a script to write a model and
two sample inputs for the chestxray-classify example::

    python -m tests.data.onnx_models .demo/chestxray
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import numpy as np

SIZE = 32
CENTRE = slice(8, 24)
BORDER = 8
GAIN, MARGIN = 10.0, 0.2
LABELS = ("normal", "abnormal")
Kind = Literal["bright", "dark"]


def centre_weights() -> tuple[np.ndarray, np.ndarray]:
    """Return the Gemm weights ``W`` (``[2, SIZE * SIZE]``) and bias ``b`` (``[2]``)."""
    centre = np.zeros((SIZE, SIZE), dtype=np.float32)
    centre[CENTRE, CENTRE] = 1.0
    border = np.ones((SIZE, SIZE), dtype=np.float32)
    border[BORDER:-BORDER, BORDER:-BORDER] = 0.0
    w1 = GAIN * (centre / centre.sum() - border / border.sum())
    weights = np.stack([np.zeros(SIZE * SIZE, dtype=np.float32), w1.reshape(-1)])
    bias = np.array([0.0, -GAIN * MARGIN], dtype=np.float32)
    return weights.astype(np.float32), bias


def centre_classifier(path: str | Path, *, input_name: str = "image") -> Path:
    """Write the classifier as an ONNX file (opset 13, IR 8) and return its path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights, bias = centre_weights()
    graph = helper.make_graph(
        [helper.make_node("Flatten", [input_name], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "centre-classifier",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, len(LABELS)])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="clara-rt tests")
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    onnx.checker.check_model(model)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, target)
    return target


def identity_model(path: str | Path, shape: list[int | str], *,
                   elem_type: int | None = None) -> Path:
    """Write a one-node ``Identity`` model whose input has ``shape`` (for input checks)."""
    import onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if elem_type is None else elem_type
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["out"])], "identity",
        [helper.make_tensor_value_info("image", elem, shape)],
        [helper.make_tensor_value_info("out", elem, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, target)
    return target


def xray_pixels(kind: Kind, *, size: int = 64, seed: int = 0) -> np.ndarray:
    """Return a uint16 test image: a bright disc on a dark surround, or dark noise only."""
    rng = np.random.default_rng(seed)
    image = rng.normal(300, 40, (size, size))
    if kind == "bright":
        y, x = np.indices((size, size)) - (size - 1) / 2
        image[x * x + y * y <= (size / 4) ** 2] += 3000
    return np.clip(image, 0, 4095).astype(np.uint16)


def write_xray_dicom(folder: str | Path, kind: Kind, *, size: int = 64, seed: int = 0) -> Path:
    """Write :func:`xray_pixels` as one Digital X-Ray (for presentation) DICOM file."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    dx = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray Image Storage - For Presentation
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = dx, generate_uid(), "DX"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Demo^Chest", "DEMO0002"
    ds.ImagerPixelSpacing = [0.5, 0.5]
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelData = xray_pixels(kind, size=size, seed=seed).astype("<u2").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = dx
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    target = Path(folder) / f"{kind}.dcm"
    target.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(target, ds, enforce_file_format=True)
    return target


def write_xray_png(folder: str | Path, kind: Kind, *, size: int = 64, seed: int = 0) -> Path:
    """Write :func:`xray_pixels` as a 16-bit grey PNG."""
    from PIL import Image

    target = Path(folder) / f"{kind}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(xray_pixels(kind, size=size, seed=seed)).save(target)
    return target


def main(argv: list[str]) -> int:
    """Write ``model.onnx``, ``bright/bright.dcm`` and ``dark/dark.png`` under ``argv[0]``."""
    if len(argv) != 1:
        print("usage: python -m tests.data.onnx_models OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    print(centre_classifier(out / "model.onnx"))
    print(write_xray_dicom(out / "bright", "bright"))
    print(write_xray_png(out / "dark", "dark"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

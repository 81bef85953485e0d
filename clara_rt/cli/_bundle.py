"""``clara-rt bundle PATH [-o pipeline.yaml]``: a pipeline YAML that runs a MONAI bundle.

The pipeline reads the one NIfTI file of the job's input folder (``--input dicom``: a DICOM
series, and a DICOM SEG is written too), applies what clara-rt honours
of the bundle's ``inference.json`` (:mod:`clara_rt.backends.monai_bundle`): a
``ScaleIntensityRanged`` to [0, 1] as a :class:`WindowOp`, the ``SlidingWindowInferer`` as the
:class:`InferenceOp`'s sliding window (the torch backend, batched by ``sw_batch_size``), the
channel argmax (``AsDiscreted(argmax=True)``, or whenever the network has several output
channels) -- and writes the result as ``<output>.nii.gz`` in the source geometry. Transforms it
does not run are listed in the YAML's header comment. The bundle is referenced by its absolute
path.

Exit status: 0 written; 2 not a bundle, or a bundle this command cannot wire (the message says
why: several inputs, a non-3-D input, no window size).
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from clara_rt.backends.monai_bundle import Bundle, load_bundle
from clara_rt.errors import BackendError

__all__ = ["add", "bundle_pipeline"]

EXIT_OK, EXIT_USAGE = 0, 2


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``bundle``."""
    p = verbs.add_parser(
        "bundle", help="write a pipeline YAML that runs a MONAI bundle (TorchScript) in-process",
        description="Read a MONAI bundle (configs/metadata.json + models/model.ts) and write a "
                    "Clara pipeline YAML: NIfTI in, the bundle's scaling and sliding window, "
                    "argmax, NIfTI out. Arbitrary MONAI transform chains are not run; those "
                    "left out are listed in the YAML's header.")
    p.add_argument("path", type=Path, metavar="PATH", help="the bundle folder")
    p.add_argument("-o", "--output", type=Path, metavar="pipeline.yaml",
                   help="where to write the YAML (default: stdout)")
    p.add_argument("--roi", type=int, nargs="+", metavar="N",
                   help="sliding-window size (default: inference.json's roi_size, else the "
                        "input's spatial_shape)")
    p.add_argument("--device", metavar="DEV", help="torch device: cpu, cuda, cuda:1 (default: "
                   "cuda when torch sees one)")
    p.add_argument("--input", choices=("nifti", "dicom"), default="nifti", dest="input_format",
                   help="what the job's input folder holds: one NIfTI file (default), or a "
                        "DICOM series (then a DICOM SEG referencing it is written too)")
    p.set_defaults(func=_bundle)


def bundle_pipeline(bundle: Bundle, *, roi: list[int] | None = None,
                    device: str | None = None, input_format: str = "nifti") -> str:
    """Return the pipeline YAML text that runs ``bundle`` (module docstring).

    ``input_format="dicom"`` reads a DICOM series instead of a NIfTI file and also writes the
    label map as a DICOM SEG (segments named from the output's ``channel_def``).

    Raises:
        ValueError: The bundle has not exactly one 3-D image input, or no window size is known.
    """
    import yaml

    if len(bundle.inputs) != 1 or len(bundle.inputs[0].spatial_shape) != 3:
        shapes = ", ".join(f"{i.name} {list(i.spatial_shape)}" for i in bundle.inputs)
        raise ValueError(f"bundle '{bundle.name}' ({bundle.root}): clara-rt bundle wires one 3-D "
                         f"image input; this one has {shapes}")
    image, pred = bundle.inputs[0], bundle.outputs[0]
    settings = bundle.inference
    window = tuple(roi) if roi else settings.roi_size or (
        image.spatial_shape if all(s > 0 for s in image.spatial_shape) else None)
    if window is None or len(window) != 3:
        raise ValueError(f"bundle '{bundle.name}' ({bundle.root}): no 3-D window size (no "
                         "SlidingWindowInferer roi_size in inference.json and a free "
                         "spatial_shape); pass --roi D H W")
    operators = [_reader(input_format, image.modality)]
    source = ("reader", "volume")
    if settings.scale_range is not None:
        operators.append(_window(*settings.scale_range))
        source = ("scale", "windowed")
    operators.append(_infer(bundle, source, window, device))
    source = ("infer", pred.name)
    if settings.argmax or pred.num_channels != 1:
        operators.append(_argmax(pred.name))
        source = ("argmax", "labels")
    operators.append(_writer(source))
    if input_format == "dicom":
        if source[0] != "argmax":
            raise ValueError(f"bundle '{bundle.name}': a DICOM SEG needs a label map, but the "
                             f"output '{pred.name}' is one channel with no "
                             "AsDiscreted(argmax=True); use --input nifti")
        operators.append(_seg_writer(bundle, source))
    text = yaml.safe_dump({"api-version": "0.5.0", "name": _name(bundle.name),
                           "operators": operators}, sort_keys=False, width=100)
    return _header(bundle, window, input_format) + text


# --- private ------------------------------------------------------------------------------


def _bundle(args: argparse.Namespace) -> int:
    try:
        text = bundle_pipeline(load_bundle(args.path), roi=args.roi, device=args.device,
                               input_format=args.input_format)
    except (BackendError, ValueError) as exc:
        print(f"clara-rt bundle: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"clara-rt: wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _header(bundle: Bundle, window: tuple[int, ...], input_format: str) -> str:
    s = bundle.inference
    honoured = [f"SlidingWindowInferer roi {list(window)}, overlap {s.overlap}, "
                f"sw_batch_size {s.sw_batch_size}, mode {s.mode}"]
    if s.scale_range is not None:
        honoured.append(f"ScaleIntensityRanged [{s.scale_range[0]:g}, {s.scale_range[1]:g}] "
                        "-> [0, 1], clipped")
    if s.argmax:
        honoured.append("AsDiscreted(argmax=True)")
    lines = [f"Pipeline for the MONAI bundle '{bundle.name}' {bundle.version}".rstrip(),
             f"({bundle.root.resolve()}), written by `clara-rt bundle`.",
             _io_line(input_format),
             "Honoured from inference.json: " + "; ".join(honoured) + ".",
             "clara-rt does not run MONAI transform chains; not applied here: "
             + (", ".join(s.ignored) or "nothing else was found") + "."]
    wrapped = (part for line in lines for part in textwrap.wrap(line, 96))
    return "".join(f"# {part}\n" for part in wrapped)


def _io_line(input_format: str) -> str:
    if input_format == "dicom":
        return ("Input: one DICOM series in the job's input folder, as a [slice, row, column] "
                "volume; output: the label map as NIfTI (writer) and as a DICOM SEG (seg).")
    return ("Input: one NIfTI file in the job's input folder, taken in its stored array order; "
            "output: the label map as NIfTI (writer's path).")


def _reader(input_format: str, modality: str) -> dict[str, Any]:
    if input_format == "dicom":
        clara: dict[str, Any] = {"operator":
                                 "clara_rt.operators.io.dicom_series:DicomSeriesLoaderOp"}
        if modality:
            clara["args"] = {"modality": modality}
        what, image = "the DICOM series", "clara-rt/dicom-reader"
    else:
        clara = {"operator": "clara_rt.operators.io.nifti:NiftiReaderOp"}
        what, image = "the NIfTI file", "clara-rt/nifti-reader"
    return {"name": "reader", "description": f"Read {what} of the job's input folder.",
            "container": {"image": image, "tag": "0.1"}, "clara-rt": clara,
            "input": [{"path": "/input"}],
            "output": [{"name": "volume", "type": "array"}, {"name": "meta"}]}


def _window(a_min: float, a_max: float) -> dict[str, Any]:
    return {"name": "scale", "description": f"ScaleIntensityRanged: [{a_min:g}, {a_max:g}] -> "
                                            "[0, 1], clipped.",
            "container": {"image": "clara-rt/window", "tag": "0.1"},
            "clara-rt": {"operator": "clara_rt.operators.preprocess.window:WindowOp",
                         "args": {"level": (a_min + a_max) / 2, "width": a_max - a_min}},
            "input": [{"from": "reader", "name": "volume", "type": "array"}],
            "output": [{"name": "windowed", "type": "array", "element-type": "float32"}]}


def _infer(bundle: Bundle, source: tuple[str, str], window: tuple[int, ...],
           device: str | None) -> dict[str, Any]:
    s = bundle.inference
    args: dict[str, Any] = {
        "model": str(bundle.root.resolve()),
        "sliding_window": {"roi": list(window), "overlap": s.overlap, "blend": s.mode,
                           "batch_size": s.sw_batch_size}}
    if device:
        args["backend_args"] = {"device": device}
    pred = bundle.outputs[0].name
    return {"name": "infer", "description": "The bundle's TorchScript model, in-process "
                                            "(PyTorch), window by window.",
            "container": {"image": "clara-rt/torch-infer", "tag": "0.1"},
            "clara-rt": {"operator": "clara_rt.operators.inference.infer:InferenceOp",
                         "args": args, "ports": {source[1]: bundle.inputs[0].name}},
            "input": [{"from": source[0], "name": source[1], "type": "array"}],
            "output": [{"name": pred, "type": "array"}]}


def _argmax(pred: str) -> dict[str, Any]:
    return {"name": "argmax", "description": "Channel argmax: the label map.",
            "container": {"image": "clara-rt/argmax", "tag": "0.1"},
            "clara-rt": {"operator": "clara_rt.operators.inference.argmax:ArgmaxOp",
                         "ports": {pred: "scores"}},
            "input": [{"from": "infer", "name": pred, "type": "array"}],
            "output": [{"name": "labels", "type": "array", "element-type": "uint8"}]}


def _writer(source: tuple[str, str]) -> dict[str, Any]:
    return {"name": "writer", "description": "The result as NIfTI, in the source geometry.",
            "container": {"image": "clara-rt/nifti-writer", "tag": "0.1"},
            "clara-rt": {"operator": "clara_rt.operators.io.nifti:NiftiWriterOp",
                         "args": {"filename": "seg.nii.gz"}, "ports": {source[1]: "volume"}},
            "input": [{"from": source[0], "name": source[1]},
                      {"from": "reader", "name": "meta"}],
            "output": [{"name": "path"}]}


def _seg_writer(bundle: Bundle, source: tuple[str, str]) -> dict[str, Any]:
    labels = {k: v for k, v in bundle.outputs[0].channel_def if k >= 1}
    args: dict[str, Any] = {"series_description": f"{bundle.name} (clara-rt)"[:64],
                            "algorithm_name": bundle.name[:64]}
    if labels:
        args["labels"] = labels
    if bundle.version:
        args["algorithm_version"] = bundle.version
    return {"name": "seg", "description": "The label map as a DICOM SEG referencing the series.",
            "container": {"image": "clara-rt/dicom-seg-writer", "tag": "0.1"},
            "clara-rt": {"operator": "clara_rt.operators.output.dicom_seg:DicomSegWriterOp",
                         "args": args, "ports": {source[1]: "mask"}},
            "input": [{"from": source[0], "name": source[1]},
                      {"from": "reader", "name": "meta"}],
            "output": [{"name": "seg"}]}


def _name(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "bundle"

"""Names of the segments in a job's label maps, for the viewer's legend.

A label map result (``nifti-writer/path.nii.gz``) only holds numbers; the names live in the
DICOM SEG the pipeline wrote (``SegmentSequence``: ``SegmentNumber`` -> ``SegmentLabel``). A SEG
names the labels of a label map when both were written from the same operator output: in
ct-lung-seg, ``seg-writer`` and ``nifti-writer`` both take ``largest.mask``, so label 1 of
``nifti-writer/path.nii.gz`` is ``Lung``, while ``lung-seg/body.npy`` (another output) gets no
name. Outputs of operators without inputs of their own (the series loader, whose ``meta`` feeds
every writer) do not count as a common source.

Results follow the server's layout ``<operator>/<port>[...]``; the wiring comes from the
pipeline's definition. Pure functions of files in and a mapping out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["SEG_SOP_CLASS", "segment_names"]

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
"""SOP Class UID of DICOM Segmentation Storage."""
_MAX_SEG_FILE = 512 << 20
_Source = tuple[str, str]  # (operator, output name)

log = logging.getLogger("clara_rt.server")


def segment_names(definition: Any, output: Path, results: Iterable[tuple[str, int]],
                  label_maps: Iterable[str]) -> dict[str, dict[int, str]]:
    """Return ``label map result -> {label value: segment name}`` where a SEG names them.

    Args:
        definition: The job's :class:`~clara_rt.definition.PipelineDefinition` (``None``: the
            pipeline is gone and nothing is named).
        output: The job's output folder.
        results: ``(relative path, size)`` of each result file.
        label_maps: The results the viewer shows as label maps.
    """
    if definition is None:
        return {}
    segs = {rel: names for rel, size in results
            if rel.lower().endswith(".dcm") and size <= _MAX_SEG_FILE
            and (names := _seg_segments(output / rel))}
    if not segs:
        return {}
    inputs = _inputs(definition)
    named: dict[str, dict[int, str]] = {}
    for rel in label_maps:
        op, port = _op_port(rel)
        mine = {(op, port), *inputs.get(op, set())}
        for seg_rel, names in segs.items():
            if mine & inputs.get(_op_port(seg_rel)[0], set()):
                named[rel] = names
                break
    return named


def _seg_segments(path: Path) -> dict[int, str]:
    """``SegmentNumber -> SegmentLabel`` of a DICOM SEG file (empty when it is not one)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        log.debug("viewer: %s is not a readable DICOM file: %s", path, exc)
        return {}
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        return {}
    names: dict[int, str] = {}
    for item in ds.get("SegmentSequence", []):
        number, label = item.get("SegmentNumber"), item.get("SegmentLabel")
        if number is not None and label:
            names[int(number)] = str(label)
    return names


def _inputs(definition: Any) -> dict[str, set[_Source]]:
    """Operator -> the outputs it takes, leaving out those of operators without inputs."""
    roots = {op.name for op in definition.operators
             if not any(entry.from_ for entry in op.inputs)}
    return {op.name: {(entry.from_, entry.name or "") for entry in op.inputs
                      if entry.from_ and entry.from_ not in roots}
            for op in definition.operators}


def _op_port(rel: str) -> tuple[str, str]:
    """``lung-seg/body.npy`` -> ``("lung-seg", "body")``."""
    op, _, rest = rel.partition("/")
    return op, rest.split("/", 1)[0].split(".", 1)[0]

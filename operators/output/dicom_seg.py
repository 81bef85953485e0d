"""Write a label map as a DICOM Segmentation that references its source CT/MR series.

Segments: one per label, numbered ``1..N`` in ascending label order over the labels named in
``labels`` together with those present in the mask (DICOM needs consecutive segment numbers, so
a map with labels ``{1, 3}`` gives segments 1 and 2; ``SegmentLabel`` carries the name). A named
label absent from the mask is still written, as a segment with no frames ("looked, found nothing").

Empty mask (no label present at all): by default (``on_empty="write"``) a valid SEG is written
whose frames are all empty, with the named segments (or one ``"Segment 1"`` if none are named),
so that a "no finding" result still reaches PACS; ``on_empty="error"`` raises instead.

Source images: the headers of ``meta.files`` (each file read once, without pixel data; the SEG
needs only the geometry and identifying tags; missing Type 2 patient/study attributes are filled
with empty values on the in-memory copy, as DICOM permits). A volume read from multi-frame files
(Enhanced CT/MR) names each slice's frame in ``meta.source["FrameNumbers"]``: each SEG frame
then references its source frame (ReferencedSOPInstanceUID + ReferencedFrameNumber) and takes
that frame's position from the source's functional groups (:mod:`._seg_sources`). The dataset
is built with pydicom by :mod:`._seg_dataset` (the modules highdicom writes, read back by
highdicom in the tests and checked with dciodvfy): highdicom costs a cold process about 0.5 s
(its import and, at the first SEG, its standard tables).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clara_rt import Context, Inputs, Operator, OperatorSpec, Outputs, __version__
from clara_rt.arrays import to_host

if TYPE_CHECKING:
    import pydicom
    from pydicom.sr.coding import Code

    from clara_rt.operators.output._seg_sources import SourceFrame
    from clara_rt.operators.volume import VolumeMeta

__all__ = ["DicomSegWriterOp"]

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
ON_EMPTY = ("write", "error")
# Segmentation Property Type context groups (CID 7151 members) -> their category (CID 7150).
_TYPE_GROUPS = (("cid7166", "Tissue"), ("cid7159", "MorphologicallyAbnormalStructure"),
                ("cid7157", "PhysicalObject"), ("cid7192", "AnatomicalStructure"))


class DicomSegWriterOp(Operator):
    """Write a label map ``mask[k, j, i]`` as a BINARY DICOM SEG beside its source series.

    Inputs: ``mask`` (integer or bool labels ``0..N``, NumPy or CuPy: copied to the host once),
    ``meta`` (:class:`~clara_rt.operators.volume.VolumeMeta` with ``files`` in slice order).
    Output: ``seg``, the path of the file written to
    ``context.workspace / <operator name> / output_name``. The file appears whole or not at all
    (written to a temporary name, then renamed).

    Args:
        name: Operator name in its pipeline.
        labels: Segment name per label value, e.g. ``{1: "Lung"}``; unnamed labels present in the
            mask are called ``"Segment <label>"``. A name that is a SNOMED CT concept of the DICOM
            segmentation type groups (``"Lung"``, ``"Liver"``, ``"Bone tissue"``, ``"Neoplasm"``)
            gets that code and its category; any other name gets Tissue/Tissue.
        label_codes: ``{label: (category, type)}`` codes (``pydicom.sr.coding.Code`` or
            ``highdicom.sr.CodedConcept``) overriding the lookup by name.
        series_description: SeriesDescription of the SEG series.
        series_number: SeriesNumber of the SEG series.
        algorithm_name: AlgorithmName in the AlgorithmIdentificationSequence (type AUTOMATIC).
        algorithm_version: AlgorithmVersion; defaults to the clara-rt version.
        manufacturer: Manufacturer (and ManufacturerModelName) of the SEG.
        output_name: File name inside the operator's workspace folder.
        on_empty: ``"write"`` (an all-empty SEG) or ``"error"`` when no label is present.
        **params: Further operator parameters (``thread_safe``, ``max_concurrency``).
    """

    preload = ("pydicom", "pydicom.sr.codedict")  # imported at the first job; Operator.preload

    def __init__(self, name: str | None = None, /, *, labels: Mapping[int, str] | None = None,
                 label_codes: Mapping[int, tuple[Any, Any]] | None = None,
                 series_description: str = "clara-rt segmentation", series_number: int = 900,
                 algorithm_name: str = "clara-rt", algorithm_version: str = __version__,
                 manufacturer: str = "clara-rt", output_name: str = "seg.dcm",
                 on_empty: str = "write", **params: Any) -> None:
        super().__init__(name, **params)
        if on_empty not in ON_EMPTY:
            raise ValueError(f"operator '{self.name}': on_empty must be one of "
                             f"{', '.join(ON_EMPTY)}, got {on_empty!r}")
        if not output_name or Path(output_name).name != output_name:
            raise ValueError(f"operator '{self.name}': output_name must be a plain file name, "
                             f"got {output_name!r}")
        self.labels = {int(k): str(v) for k, v in (labels or {}).items()}
        if any(k < 1 for k in self.labels):
            raise ValueError(f"operator '{self.name}': label values must be >= 1 (0 is "
                             f"background), got {sorted(self.labels)}")
        self.label_codes = dict(label_codes or {})
        self.series_description, self.series_number = series_description, series_number
        self.algorithm_name, self.algorithm_version = algorithm_name, algorithm_version
        self.manufacturer, self.output_name, self.on_empty = manufacturer, output_name, on_empty

    def setup(self, spec: OperatorSpec) -> None:
        """Declare ``mask`` and ``meta`` in, ``seg`` (a file path) out."""
        spec.input("mask", shape=(-1, -1, -1), description="label map [k, j, i], 0 = background")
        spec.input("meta", kind="object", description="VolumeMeta of the source series")
        spec.output("seg", kind="path", format="dicom", description="the DICOM SEG file")

    def compute(self, inputs: Inputs, outputs: Outputs, context: Context) -> None:
        """Build the SEG from the mask and the source headers, and write it atomically."""
        path = _workspace_dir(context, self.name) / self.output_name
        mask = _host_labels(inputs["mask"], self.name)
        meta: VolumeMeta = inputs["meta"]
        # pydicom loads at the first job, so that a server holding this pipeline idles small
        from clara_rt.operators.output._seg_sources import read_source_frames

        sources = read_source_frames(meta, mask.shape, self.name)
        present = present_labels(mask)
        if not present and self.on_empty == "error":
            raise ValueError(f"operator '{self.name}': the mask is empty (no label present) and "
                             "on_empty='error'")
        numbered = sorted(set(self.labels) | set(present)) or [1]
        if numbered != list(range(1, len(numbered) + 1)):  # renumber to segments 1..N
            lut = np.zeros(int(mask.max()) + 1, np.uint8 if len(numbered) < 256 else np.uint16)
            lut[present] = [numbered.index(v) + 1 for v in present]
            mask = lut[mask]
        seg = self._segmentation(sources, mask, numbered, empty=not present)
        save_atomic(seg, path)
        outputs["seg"] = path

    def _segmentation(self, sources: list[SourceFrame], frames: np.ndarray,
                      numbered: list[int], *, empty: bool) -> pydicom.Dataset:
        # pydicom (and its codes) load at the first job, so that a server holding this
        # pipeline idles small; the dataset is built without highdicom (see _seg_dataset).
        from clara_rt.operators.output._seg_dataset import segmentation_dataset

        segments = []
        for label in numbered:
            name = self.labels.get(label, f"Segment {label}")
            category, prop_type = self.label_codes.get(label) or segment_codes(name)
            segments.append((name, category, prop_type))
        return segmentation_dataset(
            sources, frames, segments, empty=empty,
            algorithm=(self.algorithm_name, self.algorithm_version),
            series=(self.series_description, self.series_number),
            manufacturer=self.manufacturer, software_versions=f"clara-rt {__version__}")


def present_labels(mask: np.ndarray) -> list[int]:
    """Return the non-zero labels in ``mask``, ascending.

    One comparison pass per label up to the maximum when there are few (much faster than the
    sort behind ``np.unique`` on a CT-sized volume), ``np.unique`` otherwise.
    """
    top = int(mask.max()) if mask.size else 0
    if top <= 32:
        return [label for label in range(1, top + 1) if (mask == label).any()]
    return [int(v) for v in np.unique(mask) if v != 0]


def segment_codes(name: str) -> tuple[Code, Code]:
    """Return ``(category, type)`` codes for a segment name.

    The name is looked up (as CamelCase: ``"bone tissue"`` -> ``BoneTissue``) in the DICOM
    segmentation property type groups: tissue (CID 7166), abnormal structure (CID 7159),
    physical object (CID 7157), anatomical structure (CID 7192). Unknown names get the generic
    Tissue/Tissue pair.
    """
    from pydicom.sr.codedict import codes

    key = "".join(word[:1].upper() + word[1:] for word in name.replace("-", " ").split())
    for group, category in _TYPE_GROUPS:
        cid = getattr(codes, group)
        if key in cid.dir():
            return getattr(codes.cid7150, category), getattr(cid, key)
    return codes.cid7150.Tissue, codes.cid7166.Tissue


def save_atomic(seg: pydicom.Dataset, path: Path) -> None:
    """Write ``seg`` to ``path`` through a temporary file in the same folder, then rename.

    A failure leaves no file at ``path`` (and no temporary file behind).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            seg.save_as(fh, enforce_file_format=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _host_labels(mask: Any, operator: str) -> np.ndarray:
    """Return the mask as a host ``uint8``/``uint16`` array (one device-to-host copy for CuPy)."""
    host = np.asarray(to_host(mask))
    if host.dtype == np.bool_:
        return host.view(np.uint8)
    if not np.issubdtype(host.dtype, np.integer):
        raise ValueError(f"operator '{operator}': mask must hold integer or bool labels, got "
                         f"dtype {host.dtype}")
    if host.size and (host.min() < 0 or host.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"operator '{operator}': mask labels must be in 0..65535, got "
                         f"{host.min()}..{host.max()}")
    return host


def _workspace_dir(context: Context, operator: str) -> Path:
    if context.workspace is None:
        raise ValueError(f"operator '{operator}' writes files and needs a job workspace: "
                         "submit the job with Runtime.submit(..., workspace=DIR)")
    return Path(context.workspace) / operator

"""What the console's viewer shows for a job: an image volume and the segmentations over it.

* **Image**: the job's input DICOM series (each payload folder in turn, loaded with
  :func:`clara_rt.operators.io.load_series`), else a NIfTI file of its input, else a result
  that is a 3-D volume of real numbers (NIfTI or ``.npy``).
* **Segmentations**: results holding integer labels (an integer dtype, or real numbers that
  are whole, non-negative and take at most 256 values) of the image's shape, NIfTI first
  (``nifti-writer/path.nii.gz``) then ``.npy`` (``lung-seg/body.npy``), each in path order.

The image's direction cosines (for orientation marks) and its patient and study tags come with
it; segment names are filled in by the caller (:mod:`.segments`).

Loaded volumes are kept in a small LRU cache (:class:`VolumeCache`), so moving the viewer's
slider only cuts a slice. The cache key holds when the job stopped, so a job that finishes after
its input was first viewed is loaded again with its results. Thread-safe: several requests for
a job that is not loaded yet wait for one load.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clara_rt.errors import ClaraRTError
from clara_rt.server.console.render import auto_window

__all__ = ["PATIENT_TAGS", "JobVolumes", "NoVolume", "VolumeCache", "load_job_volumes"]

log = logging.getLogger("clara_rt.server")

_NIFTI = (".nii", ".nii.gz")
_MAX_LABELS = 8
_MAX_FILE = 2 << 30  # results larger than this are not read for the viewer
_MAX_VOXELS = 1 << 28  # NIfTI volumes declaring more are not read (1 GiB as float32)
PATIENT_TAGS = ("PatientName", "PatientID", "StudyDate", "StudyDescription", "SeriesDescription")
"""Tags of the image's source shown on the viewer's patient line (when the image has them)."""


class NoVolume(LookupError):
    """The job has nothing the viewer can show (the message says what was looked at)."""


@dataclass
class JobVolumes:
    """A job's image (``[k, j, i]``), its geometry and the label volumes found for it.

    ``direction`` holds the LPS unit vectors of ``i``, ``j``, ``k`` as columns (``None``: not
    known, e.g. a ``.npy`` image); ``patient`` the :data:`PATIENT_TAGS` the source has; ``names``
    maps a label volume to ``{label value: segment name}`` where known.
    """

    image: np.ndarray
    spacing: tuple[float, float, float]
    head_up: bool
    source: str
    modality: str | None
    auto: tuple[float, float]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    direction: np.ndarray | None = None
    patient: dict[str, str] = field(default_factory=dict)
    names: dict[str, dict[int, str]] = field(default_factory=dict)
    _values: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes + sum(a.nbytes for a in self.labels.values()))

    def label_values(self, name: str) -> list[int]:
        """The non-zero labels present in segmentation ``name`` (computed once)."""
        if name not in self._values:
            labels = self.labels[name]
            if labels.dtype.kind in "bu" and labels.dtype.itemsize <= 2:
                found = np.flatnonzero(np.bincount(labels.reshape(-1).astype(np.intp)))
            else:
                found = np.unique(labels)
            self._values[name] = [int(v) for v in found if v]
        return self._values[name]


class VolumeCache:
    """LRU of :class:`JobVolumes` (and of :class:`NoVolume` answers) by key."""

    def __init__(self, max_entries: int = 4, max_bytes: int = 1 << 30) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, Hashable], JobVolumes | NoVolume] = OrderedDict()
        self._gates: dict[tuple[str, Hashable], threading.Lock] = {}

    def get(self, key: tuple[str, Hashable], load: Callable[[], JobVolumes]) -> JobVolumes:
        """The entry for ``key`` (``(job id, version)``), loaded once by ``load()``.

        Raises:
            NoVolume: What ``load`` raised for this key (remembered like a value).
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            gate = self._gates.setdefault(key, threading.Lock()) if entry is None else None
        if gate is not None:
            with gate:
                with self._lock:
                    entry = self._entries.get(key)
                if entry is None:
                    entry = self._load(key, load)
        if isinstance(entry, NoVolume):
            raise NoVolume(str(entry))
        assert entry is not None
        return entry

    def _load(self, key: tuple[str, Hashable], load: Callable[[], JobVolumes]
              ) -> JobVolumes | NoVolume:
        try:
            entry: JobVolumes | NoVolume = load()
        except NoVolume as exc:
            entry = exc
        except BaseException:
            with self._lock:
                self._gates.pop(key, None)
            raise
        with self._lock:
            for old in [k for k in self._entries if k[0] == key[0] and k != key]:
                del self._entries[old]
            self._entries[key] = entry
            self._gates.pop(key, None)
            while len(self._entries) > 1 and (
                    len(self._entries) > self._max_entries or self._bytes() > self._max_bytes):
                self._entries.popitem(last=False)
        return entry

    def _bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values() if isinstance(e, JobVolumes))


def load_job_volumes(payload_dirs: list[Path], output: Path,
                     results: list[tuple[str, int]]) -> JobVolumes:
    """Find and load a job's image and segmentations (see the module docstring).

    Args:
        payload_dirs: The job's payload folders.
        output: Its output folder; ``results`` are relative to it with their sizes.
        results: ``(relative path, size)`` of each result file.

    Raises:
        NoVolume: No image volume in the input or the results.
    """
    volumes = _input_image(payload_dirs)
    image_result = None
    if volumes is None:
        image_result, volumes = _result_image(output, results)
    if volumes is None:
        raise NoVolume("nothing to view: the job's input holds no DICOM series or NIfTI "
                       "volume, and none of its results is a 3-D image")
    for rel in _label_candidates(results, image_result):
        labels = _read_labels(output / rel, volumes.image.shape)
        if labels is not None:
            volumes.labels[rel] = labels
            if len(volumes.labels) >= _MAX_LABELS:
                break
    return volumes


# --- image ------------------------------------------------------------------------------------


def _input_image(payload_dirs: list[Path]) -> JobVolumes | None:
    for folder in payload_dirs:
        if not folder.is_dir():
            continue
        try:
            image, meta = _load_series(folder)
        except (ClaraRTError, OSError, ValueError) as exc:
            log.debug("viewer: %s is not a DICOM series: %s", folder, exc)
        else:
            return _volumes(image, meta, "input DICOM series")
        for path in sorted(p for p in folder.rglob("*") if _is_nifti(p.name)):
            found = _read_image(path, f"input {path.relative_to(folder).as_posix()}")
            if found is not None:
                return found
    return None


def _load_series(folder: Path) -> tuple[np.ndarray, Any]:
    """:func:`load_series`, but a series whose headers declare more than ``_MAX_VOXELS`` is not
    decoded: compressed or deflated pixel data may unpack to any size (issue 16.17)."""
    from clara_rt.operators.io import dicom_series as series

    with series.reader_pool() as pool:
        stack, warnings = series.scan_series(folder, pool)
        first = stack.headers[0]
        voxels = len(stack.headers) * int(first.get("Rows", 0)) * int(first.get("Columns", 0))
        if voxels > _MAX_VOXELS:
            raise NoVolume(f"the input DICOM series declares {voxels} voxels, more than the "
                           f"viewer loads ({_MAX_VOXELS})")
        volume = series.read_volume(stack, pool)
    return volume, series.series_meta(stack, warnings)


def _result_image(output: Path, results: list[tuple[str, int]]
                  ) -> tuple[str | None, JobVolumes | None]:
    for rel, size in _ordered(results):
        if size > _MAX_FILE:
            continue
        found = _read_image(output / rel, f"result {rel}")
        if found is not None and not _looks_like_labels(found.image):
            return rel, found
    return None, None


def _read_image(path: Path, source: str) -> JobVolumes | None:
    try:
        if _is_nifti(path.name):
            voxels = _declared_voxels(path)
            if voxels > _MAX_VOXELS:  # a small .nii.gz may unpack to any size (issue 16.17)
                raise NoVolume(f"the {source} declares {voxels} voxels, more than the viewer "
                               f"loads ({_MAX_VOXELS})")
            image, meta = _io().read_nifti(path)
            return _volumes(image, meta, source)
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        log.debug("viewer: cannot read %s: %s", path, exc)
        return None
    if array.ndim != 3 or array.dtype.kind not in "biuf" or 0 in array.shape:
        return None
    return _volumes(array, None, source)


def _volumes(image: np.ndarray, meta: Any, source: str) -> JobVolumes:
    image = np.asarray(image)
    if image.ndim != 3:
        raise NoVolume(f"the {source} is not a 3-D volume (shape {image.shape})")
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    head_up, modality, direction = True, None, None
    patient: dict[str, str] = {}
    if meta is not None:
        dk, dj, di = (float(s) for s in meta.spacing)
        spacing = (dk, dj, di)
        direction = np.asarray(meta.direction, dtype=float)
        head_up = float(direction[2, 2]) >= 0.0
        modality = meta.source.get("Modality")
        patient = {tag: str(meta.source[tag]) for tag in PATIENT_TAGS
                   if meta.source.get(tag) not in (None, "")}
    return JobVolumes(image, spacing, head_up, source,
                      None if modality is None else str(modality), auto_window(image),
                      direction=direction, patient=patient)


# --- labels -----------------------------------------------------------------------------------


def _label_candidates(results: list[tuple[str, int]], image_result: str | None) -> list[str]:
    return [rel for rel, size in _ordered(results) if rel != image_result and size <= _MAX_FILE]


def _read_labels(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        if _is_nifti(path.name):
            import nibabel

            header_shape = tuple(int(n) for n in nibabel.load(path).shape)
            while len(header_shape) > 3 and header_shape[-1] == 1:
                header_shape = header_shape[:-1]
            if header_shape[::-1] != tuple(shape):
                return None
            array, _ = _io().read_nifti(path)
        else:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            if tuple(mapped.shape) != tuple(shape):
                return None
            array = np.array(mapped)
    except (OSError, ValueError, EOFError) as exc:
        log.debug("viewer: cannot read %s: %s", path, exc)
        return None
    labels: np.ndarray = np.asarray(array)
    if tuple(labels.shape) != tuple(shape) or not _looks_like_labels(labels):
        return None
    return labels if labels.dtype.kind in "biu" else labels.astype(np.int32)


def _declared_voxels(path: Path) -> int:
    """Voxels a NIfTI-1 or NIfTI-2 header declares (0 when it is not one: the reader says why),
    read from the first bytes only."""
    opener: Callable[..., Any] = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(540)
    for order in "<>":
        if len(head) >= 348 and struct.unpack_from(order + "i", head, 0)[0] == 348:
            dims: tuple[int, ...] = struct.unpack_from(order + "8h", head, 40)
            break
        if len(head) >= 540 and struct.unpack_from(order + "i", head, 0)[0] == 540:
            dims = struct.unpack_from(order + "8q", head, 16)
            break
    else:
        return 0
    if not 0 < dims[0] <= 7:
        return 0
    return math.prod(max(int(d), 1) for d in dims[1:dims[0] + 1])


def _looks_like_labels(array: np.ndarray) -> bool:
    """Integer dtype, or whole non-negative numbers with few distinct values."""
    if array.dtype.kind in "biu":
        return True
    if array.dtype.kind != "f":
        return False
    step = max(1, round((array.size / 1_000_000) ** (1 / 3)))
    for sample in (array[::step, ::step, ::step], array):
        if not np.all(np.isfinite(sample)) or np.any(sample < 0):
            return False
        if np.any(sample != np.round(sample)) or np.unique(sample).size > 256:
            return False
    return True


# --- helpers ----------------------------------------------------------------------------------


def _ordered(results: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """NIfTI results first, then ``.npy``, each in path order; other files left out."""
    nifti = sorted((r for r in results if _is_nifti(r[0])), key=lambda r: r[0])
    npy = sorted((r for r in results if r[0].endswith(".npy")), key=lambda r: r[0])
    return nifti + npy


def _is_nifti(name: str) -> bool:
    return name.lower().endswith(_NIFTI)


def _io() -> Any:
    from clara_rt.operators import io  # on first use: the console starts without it

    return io
